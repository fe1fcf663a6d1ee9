"""Durability: kill -9 loses nothing acknowledged; SIGTERM shuts down cleanly."""

from __future__ import annotations

import time

import pytest

from kafkautil import (
    assert_dense,
    confluent_producer,
    create_topic,
    produce_confluent,
    read_confluent,
    watermarks_confluent,
)

PARTITIONS = [0, 1, 2]
KILL_AFTER_ACKED = 3000      # kill -9 once this many records are acknowledged
PRODUCE_AFTER_KILL_S = 1.0   # keep producing this long after the kill
PRODUCE_PHASE_LIMIT_S = 90   # bound on reaching KILL_AFTER_ACKED


def _check_acked_present(records, acked):
    """Every acknowledged (partition, offset, key, value) is there, at that offset."""
    assert_dense(records)
    lost, moved = [], []
    for p, off, key, value in acked:
        recs = records[p]
        if off >= len(recs):
            lost.append((p, off, value))
        elif (recs[off].key, recs[off].value) != (key, value):
            moved.append((p, off, value, recs[off].value))
    assert not lost, (f"{len(lost)} acknowledged records missing after restart "
                      f"(partition sizes {[len(records[p]) for p in PARTITIONS]}); first: {lost[:5]}")
    assert not moved, f"{len(moved)} acknowledged offsets hold other records; first: {moved[:5]}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("acks", ["all", "1"], ids=["acksall", "acks1"])
def test_kill9_loses_nothing_acknowledged(broker, topic_name, acks):
    create_topic(broker.bootstrap, topic_name, partitions=len(PARTITIONS))
    acked: list[tuple[int, int, bytes, bytes]] = []
    failed: list[tuple[bytes, object]] = []
    st = {"produced": 0, "killed_at": None, "acked_at_kill": 0, "failed_at_kill": 0, "in_flight_at_kill": 0}

    def on_delivery(err, msg):
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
        else:
            failed.append((msg.value(), err))
        # Kill from inside the stream of acknowledgements, so that produce requests
        # are in flight (sent, not yet acknowledged) at the moment of the kill.
        if st["killed_at"] is None and len(acked) >= KILL_AFTER_ACKED:
            st["in_flight_at_kill"] = st["produced"] - len(acked) - len(failed)
            st["acked_at_kill"], st["failed_at_kill"] = len(acked), len(failed)
            broker.kill9()
            st["killed_at"] = time.monotonic()

    producer = confluent_producer(broker.bootstrap, **{
        "acks": acks,
        "linger.ms": 2,
        "message.timeout.ms": 5000,
        "retry.backoff.ms": 100,
        "queue.buffering.max.messages": 5000,
    })
    start = time.monotonic()
    i = 0
    while True:
        now = time.monotonic()
        if st["killed_at"] is None:
            if now - start > PRODUCE_PHASE_LIMIT_S:
                pytest.fail(f"only {len(acked)} records acknowledged after {PRODUCE_PHASE_LIMIT_S}s "
                            f"({len(failed)} failed, first errors: {failed[:3]})")
        elif now - st["killed_at"] >= PRODUCE_AFTER_KILL_S:
            break
        try:
            producer.produce(topic_name, key=f"k{i % 50}".encode(), value=f"m{i:07d}".encode(),
                             on_delivery=on_delivery)
            i += 1
            st["produced"] = i
        except BufferError:
            producer.poll(0.01)
        producer.poll(0)

    # Stop the producer: whatever is still queued fails after message.timeout.ms.
    remaining = producer.flush(20)
    assert remaining == 0, f"{remaining} messages neither delivered nor failed 20 s after the kill"
    print(f"produced {i}; acknowledged {len(acked)} ({st['acked_at_kill']} when killed); "
          f"failed {len(failed)}; unacknowledged (queued or in flight) at the kill: {st['in_flight_at_kill']}")
    assert st["failed_at_kill"] == 0, f"deliveries failed before the kill: {failed[:3]}"
    assert st["in_flight_at_kill"] > 0, "nothing was outstanding at the kill: the test did not test much"

    # No two acknowledgements for the same offset.
    positions = [(p, off) for p, off, _, _ in acked]
    assert len(set(positions)) == len(positions), "an offset was acknowledged twice"

    broker.start()
    records = read_confluent(broker.bootstrap, topic_name, PARTITIONS, timeout=60)
    _check_acked_present(records, acked)

    # After recovery, new records go after everything recovered: no offset reuse.
    hw_before = {p: len(records[p]) for p in PARTITIONS}
    more = [{"key": b"after", "value": f"after-{p}".encode(), "partition": p} for p in PARTITIONS]
    d = produce_confluent(confluent_producer(broker.bootstrap, acks=acks), topic_name, more)
    assert [(x.error, x.partition, x.offset) for x in d] == \
        [(None, p, hw_before[p]) for p in PARTITIONS], d


@pytest.mark.timeout(180)
def test_sigterm_then_restart_keeps_everything(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=len(PARTITIONS))
    messages = [{"key": f"k{i % 17}".encode(), "value": f"before-{i}".encode()} for i in range(600)]
    d = produce_confluent(confluent_producer(broker.bootstrap), topic_name, messages)
    assert all(x.error is None for x in d), [x for x in d if x.error][:3]
    before = read_confluent(broker.bootstrap, topic_name, PARTITIONS)
    assert sum(len(v) for v in before.values()) == 600

    code = broker.stop()
    assert code == 0, f"broker exited with {code} on SIGTERM"
    broker.start()

    after = read_confluent(broker.bootstrap, topic_name, PARTITIONS)
    assert_dense(after)
    assert after == before, "records differ after a clean restart"
    assert watermarks_confluent(broker.bootstrap, topic_name, PARTITIONS) == \
        {p: (0, len(before[p])) for p in PARTITIONS}

    more = [{"key": f"k{i % 17}".encode(), "value": f"after-{i}".encode()} for i in range(300)]
    d2 = produce_confluent(confluent_producer(broker.bootstrap), topic_name, more)
    assert all(x.error is None for x in d2), [x for x in d2 if x.error][:3]
    for p in PARTITIONS:
        offs = sorted(x.offset for x in d2 if x.partition == p)
        assert offs == list(range(len(before[p]), len(before[p]) + len(offs))), \
            f"partition {p}: new offsets {offs[:5]}... do not follow {len(before[p])}"

    final = read_confluent(broker.bootstrap, topic_name, PARTITIONS)
    assert_dense(final)
    assert sum(len(v) for v in final.values()) == 900
    for p in PARTITIONS:
        assert final[p][:len(before[p])] == before[p]

    # A second clean stop also exits 0.
    assert broker.stop() == 0


@pytest.mark.timeout(120)
def test_kill9_idle_broker_restarts(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    d = produce_confluent(confluent_producer(broker.bootstrap), topic_name,
                          [{"key": b"k", "value": f"v{i}".encode()} for i in range(10)])
    assert all(x.error is None for x in d)
    for _ in range(2):  # twice: recovery must itself leave a recoverable state
        broker.kill9()
        broker.start()
        recs = read_confluent(broker.bootstrap, topic_name, [0])[0]
        assert [(r.offset, r.value) for r in recs] == [(i, f"v{i}".encode()) for i in range(10)]
