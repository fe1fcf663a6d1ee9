"""Idempotent producers: confluent-kafka and kafka-python, a connection cut between the
broker's answer and the client, and the producer state checked over raw requests."""

from __future__ import annotations

from collections import Counter

import pytest

import rawkafka as rk
from faultproxy import PRODUCE, CutProxy
from kafkautil import (
    assert_dense,
    confluent_producer,
    create_topic,
    kp_producer,
    produce_confluent,
    produce_kp,
    read_confluent,
    watermarks_confluent,
)

CLIENTS = ["confluent", "kafka-python"]
PARTITIONS = [0, 1, 2]


def idempotent_producer(client: str, bootstrap: str, **extra):
    if client == "confluent":
        conf = {"enable.idempotence": True, "acks": "all", "linger.ms": 5,
                "retry.backoff.ms": 50, "message.timeout.ms": 30000}
        conf.update(extra)
        return confluent_producer(bootstrap, **conf)
    conf = dict(enable_idempotence=True, acks="all", linger_ms=5, retry_backoff_ms=50,
                request_timeout_ms=10000, delivery_timeout_ms=30000, max_in_flight_requests_per_connection=5)
    conf.update(extra)
    return kp_producer(bootstrap, **conf)


def produce_with(client: str, producer, topic: str, messages: list[dict]):
    if client == "confluent":
        return produce_confluent(producer, topic, messages)
    return produce_kp(producer, topic, messages)


def close_producer(client: str, producer) -> None:
    if client == "kafka-python":
        producer.close(timeout=10)


def messages_for(tag: str, n: int, partitions=PARTITIONS) -> list[dict]:
    """Keyed records with explicit partitions; value = '<tag>-<i>' so order is checkable."""
    return [{"key": f"k{i % 10}".encode(), "value": f"{tag}-{i:05d}".encode(),
             "partition": partitions[i % len(partitions)]} for i in range(n)]


def check_exactly_once_in_order(bootstrap: str, topic: str, deliveries, messages: list[dict],
                                partitions=PARTITIONS) -> None:
    """Every message acknowledged once, stored once, at its acknowledged offset, in send order."""
    errors = [d for d in deliveries if d.error is not None]
    assert not errors, f"{len(errors)} deliveries failed, first: {errors[:3]}"
    no_offset = [d for d in deliveries if d.offset is None or d.offset < 0]
    assert not no_offset, (
        f"{len(no_offset)} messages acknowledged without an offset (a retried batch that the "
        f"broker already has must be answered with its original offsets), first: {no_offset[:3]}")
    acked = Counter((d.partition, d.offset) for d in deliveries)
    twice = [po for po, n in acked.items() if n > 1]
    assert not twice, f"two messages acknowledged at the same offset: {twice[:5]}"

    records = read_confluent(bootstrap, topic, partitions)
    assert_dense(records)
    stored = Counter(r.value for recs in records.values() for r in recs)
    dups = sorted(v for v, n in stored.items() if n > 1)
    assert not dups, f"{len(dups)} records stored more than once, first: {dups[:5]}"
    want = Counter(m["value"] for m in messages)
    missing = sorted(set(want) - set(stored))
    assert not missing, f"{len(missing)} records missing, first: {missing[:5]}"
    extra = sorted(set(stored) - set(want))
    assert not extra, f"unexpected records stored: {extra[:5]}"
    for p in partitions:
        got = [r.value for r in records[p]]
        sent = [m["value"] for m in messages if m["partition"] == p]
        assert got == sent, f"partition {p}: stored order differs from send order"
    for d in deliveries:
        assert records[d.partition][d.offset].value == messages[d.index]["value"], (
            f"acknowledged {messages[d.index]['value']} at {d.partition}/{d.offset}, "
            f"found {records[d.partition][d.offset].value}")


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_idempotent_producer_writes_each_record_once_in_order(broker, topic_name, client):
    create_topic(broker.bootstrap, topic_name, partitions=len(PARTITIONS))
    messages = messages_for("idem", 3000)
    producer = idempotent_producer(client, broker.bootstrap)
    try:
        # several produce calls, so that the producer state carries over between requests
        deliveries = []
        for start in range(0, len(messages), 1000):
            chunk = messages[start:start + 1000]
            for d in produce_with(client, producer, topic_name, chunk):
                d.index += start
                deliveries.append(d)
    finally:
        close_producer(client, producer)
    check_exactly_once_in_order(broker.bootstrap, topic_name, deliveries, messages)


def start_behind_proxy(broker_factory):
    """A broker that advertises a CutProxy in front of it: every client connection
    after bootstrap goes through the proxy."""
    proxy = CutProxy()
    b = broker_factory(start=False, advertised_addr=proxy.address)
    proxy.start(b.port)
    b.start()
    return b, proxy


CUTS = 3


@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", CLIENTS)
def test_idempotent_retries_after_lost_answers_store_each_record_once(broker_factory, topic_name, client):
    b, proxy = start_behind_proxy(broker_factory)
    try:
        create_topic(b.bootstrap, topic_name, partitions=len(PARTITIONS))
        producer = idempotent_producer(client, proxy.address)
        messages = messages_for("cut", 900)
        deliveries = []
        try:
            # Three rounds; in each, the broker's answer to the first produce request is
            # lost with its connection, and the client must send the same batch again.
            for round_no in range(CUTS):
                chunk = messages[round_no * 300:(round_no + 1) * 300]
                proxy.cut(1, PRODUCE)
                for d in produce_with(client, producer, topic_name, chunk):
                    d.index += round_no * 300
                    deliveries.append(d)
                assert proxy.pending_cuts(PRODUCE) == 0, (
                    f"round {round_no}: no produce answer went through the proxy "
                    f"(requests seen: {dict(proxy.requests)})")
        finally:
            close_producer(client, producer)
        print(f"{client}: {proxy.cuts[PRODUCE]} produce answers lost, {proxy.connections} connections, "
              f"{proxy.requests[PRODUCE]} produce requests")
        assert proxy.cuts[PRODUCE] == CUTS
        assert proxy.requests[PRODUCE] > CUTS, "no produce request was sent again after a cut"
        check_exactly_once_in_order(b.bootstrap, topic_name, deliveries, messages)
    finally:
        proxy.close()


@pytest.mark.timeout(120)
def test_lost_answers_do_duplicate_without_idempotence(broker_factory, topic_name):
    """The control for the test above: the same cuts with a plain (non-idempotent)
    producer that retries store a batch twice, so the cuts do reach the broker."""
    b, proxy = start_behind_proxy(broker_factory)
    try:
        create_topic(b.bootstrap, topic_name, partitions=1)
        producer = confluent_producer(proxy.address, **{
            "enable.idempotence": False, "acks": "all", "retries": 5, "retry.backoff.ms": 50,
            "max.in.flight.requests.per.connection": 1})
        messages = [{"key": None, "value": f"plain-{i}".encode(), "partition": 0} for i in range(100)]
        proxy.cut(1, PRODUCE)
        d = produce_confluent(producer, topic_name, messages)
        assert all(x.error is None for x in d), [x for x in d if x.error][:3]
        assert proxy.cuts[PRODUCE] == 1
        stored = Counter(r.value for r in read_confluent(b.bootstrap, topic_name, [0])[0])
        assert any(n > 1 for n in stored.values()), (
            "a retried batch whose answer was lost was stored once by a non-idempotent "
            "producer: the cut did not happen after the broker appended it")
    finally:
        proxy.close()


# ---------------------------------------------------------------- raw requests


def test_producer_state_over_raw_requests(broker, topic_name):
    """InitProducerId, duplicates answered with the original offsets, sequence gaps,
    and a stale producer epoch, one request at a time."""
    create_topic(broker.bootstrap, topic_name, partitions=1)
    with rk.RawConn(broker.bootstrap) as c:
        r1 = c.call(rk.init_producer_id(), 4)
        r2 = c.call(rk.init_producer_id(), 4)
        assert (r1.error_code, r2.error_code) == (0, 0), (r1, r2)
        assert r1.producer_id >= 0 and r1.producer_epoch == 0, r1
        assert r2.producer_id >= 0 and r2.producer_id != r1.producer_id, (
            f"two InitProducerId without a transactional id gave the same producer id {r1.producer_id}")
        pid = r1.producer_id

        def send(epoch, seq, values, batch=None):
            batch = batch or rk.idempotent_batch(pid, epoch, seq, values)
            return rk.produce_result(c.call(rk.produce(topic_name, 0, batch), 9)), batch

        (res, b0) = send(0, 0, [b"a0", b"a1", b"a2"])
        assert res == (0, 0), res
        (res, b3) = send(0, 3, [b"b3", b"b4"])
        assert res == (0, 3), res
        # A retry of either of the last batches: answered with the original offsets, not stored again.
        assert send(0, 0, None, b0)[0] == (0, 0), "duplicate of batch seq 0 not answered with offset 0"
        assert send(0, 3, None, b3)[0] == (0, 3), "duplicate of batch seq 3 not answered with offset 3"
        # A gap in the sequence.
        code, _ = send(0, 10, [b"gap"])[0]
        assert code == rk.OUT_OF_ORDER_SEQUENCE_NUMBER, f"sequence 10 after 4: error {code}, expected 45"
        # The expected sequence is still 5.
        assert send(0, 5, [b"c5"])[0] == (0, 5)
        # The producer bumps its epoch (as clients do after an unknown outcome, KIP-360):
        # a new epoch starts at sequence 0.
        code, _ = send(1, 3, [b"bad-new-epoch"])[0]
        assert code == rk.OUT_OF_ORDER_SEQUENCE_NUMBER, (
            f"a new epoch starting at sequence 3: error {code}, expected 45")
        assert send(1, 0, [b"d6"])[0] == (0, 6)
        # The old epoch is fenced.
        code, _ = send(0, 6, [b"stale"])[0]
        assert code == rk.INVALID_PRODUCER_EPOCH, f"a write with a stale epoch: error {code}, expected 47"
        # Another producer id has its own sequence.
        b_other = rk.idempotent_batch(r2.producer_id, 0, 0, [b"e7"])
        assert rk.produce_result(c.call(rk.produce(topic_name, 0, b_other), 9)) == (0, 7)

    values = [r.value for r in read_confluent(broker.bootstrap, topic_name, [0])[0]]
    assert values == [b"a0", b"a1", b"a2", b"b3", b"b4", b"c5", b"d6", b"e7"], values
    assert watermarks_confluent(broker.bootstrap, topic_name, [0]) == {0: (0, 8)}
