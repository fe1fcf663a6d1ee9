"""Topic configs through real clients: what the broker cannot honour is refused (never stored
and silently ignored), and what it accepts changes behaviour: message.timestamp.type and
min.insync.replicas."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, KafkaError,
                             TopicPartition)
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from kafkautil import (OP_TIMEOUT_S, confluent_admin, confluent_consumer, confluent_producer,
                       create_topic, kafka_error_of, kp_consumer, kp_producer, read_confluent,
                       watermarks_confluent)

OLD_TS = 1000            # a producer timestamp far in the past (1970-01-01T00:00:01Z)
N = 20
UNSUPPORTED = [("cleanup.policy", "compact"), ("cleanup.policy", "delete,compact"),
               ("compression.type", "gzip")]


def described(admin, topic: str) -> dict:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res], request_timeout=OP_TIMEOUT_S)[res].result(timeout=OP_TIMEOUT_S)


def produce_with_timestamp(bootstrap: str, topic: str, ts: int, **conf):
    """N records with producer timestamp `ts`; returns [(err, offset, (ts_type, ts))] in order."""
    p = confluent_producer(bootstrap, **conf)
    out = []
    for i in range(N):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=0, timestamp=ts,
                  on_delivery=lambda err, msg: out.append((err, msg.offset(), msg.timestamp())))
    assert p.flush(OP_TIMEOUT_S) == 0, "records left undelivered"
    return out


def consume_timestamps_confluent(bootstrap: str, topic: str) -> list[tuple[int, int, int]]:
    """(offset, timestamp type, timestamp) of partition 0 from offset 0 to its end."""
    end = watermarks_confluent(bootstrap, topic, [0])[0][1]
    c = confluent_consumer(bootstrap)
    out = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + OP_TIMEOUT_S
        while len(out) < end and time.monotonic() < deadline:
            for m in c.consume(num_messages=100, timeout=0.5):
                assert m.error() is None, f"consumer error: {m.error()}"
                ts_type, ts = m.timestamp()
                out.append((m.offset(), ts_type, ts))
    finally:
        c.close()
    assert [o for o, _, _ in out] == list(range(end)), f"read {len(out)} of {end} records"
    return out


def consume_timestamps_kp(bootstrap: str, topic: str) -> list[tuple[int, int, int]]:
    """kafka-python: (offset, timestamp_type, timestamp) of partition 0 from offset 0 to its end."""
    from kafka import TopicPartition as KTP
    tp = KTP(topic, 0)
    c = kp_consumer(bootstrap)
    out = []
    try:
        c.assign([tp])
        end = c.end_offsets([tp], timeout_ms=10000)[tp]
        c.seek(tp, 0)
        deadline = time.monotonic() + OP_TIMEOUT_S
        while len(out) < end and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                out.extend((r.offset, r.timestamp_type, r.timestamp) for r in recs)
    finally:
        c.close(autocommit=False)
    assert [o for o, _, _ in out] == list(range(end)), f"read {len(out)} of {end} records"
    return out


# ------------------------------------------------------------------ refused configs


@pytest.mark.parametrize("key,value", UNSUPPORTED, ids=[f"{k}={v}" for k, v in UNSUPPORTED])
def test_create_topic_with_unsupported_config_fails(broker, topic_name, key, value):
    admin = confluent_admin(broker.bootstrap)
    fut = admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1,
                                        config={key: value})], request_timeout=OP_TIMEOUT_S)
    with pytest.raises(Exception) as info:
        fut[topic_name].result(timeout=OP_TIMEOUT_S)
    err = kafka_error_of(info.value)
    assert err is not None, f"not a KafkaError: {info.value!r}"
    assert err.code() == KafkaError.INVALID_CONFIG, f"{key}={value}: {err}"
    assert "not supported" in err.str(), f"the error does not say why: {err.str()!r}"
    md = admin.list_topics(timeout=10)
    assert topic_name not in md.topics or md.topics[topic_name].error is not None, \
        "the topic was created anyway"


def test_supported_values_of_the_same_configs_are_accepted(broker, topic_name):
    """The control for the test above: the values the broker does honour are accepted."""
    create_topic(broker.bootstrap, topic_name, config={"cleanup.policy": "delete",
                                                       "compression.type": "producer"})
    cfg = described(confluent_admin(broker.bootstrap), topic_name)
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["compression.type"].value == "producer"


@pytest.mark.parametrize("key,value", UNSUPPORTED, ids=[f"{k}={v}" for k, v in UNSUPPORTED])
def test_alter_topic_to_unsupported_config_fails(broker, topic_name, key, value):
    create_topic(broker.bootstrap, topic_name)
    admin = confluent_admin(broker.bootstrap)
    before = described(admin, topic_name)[key].value
    res = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(Exception) as info:
        admin.incremental_alter_configs([res], request_timeout=OP_TIMEOUT_S)[res].result(
            timeout=OP_TIMEOUT_S)
    err = kafka_error_of(info.value)
    assert err is not None, f"not a KafkaError: {info.value!r}"
    assert err.code() == KafkaError.INVALID_CONFIG, f"{key}={value}: {err}"
    assert "not supported" in err.str(), f"the error does not say why: {err.str()!r}"
    after = described(admin, topic_name)[key].value
    assert after == before, f"{key} changed from {before!r} to {after!r} though the alter failed"


# ------------------------------------------------------------- message.timestamp.type


def test_log_append_time_topic_stamps_records_with_broker_time(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, config={"message.timestamp.type": "LogAppendTime"})
    before_ms = int(time.time() * 1000)
    reports = produce_with_timestamp(broker.bootstrap, topic_name, OLD_TS)
    after_ms = int(time.time() * 1000)
    assert all(err is None for err, _, _ in reports), [err for err, _, _ in reports if err][:3]

    def near_now(ts: int) -> bool:
        return before_ms - 60_000 <= ts <= after_ms + 60_000

    # The produce response carries the append time: librdkafka puts it in the delivery report.
    for err, off, (ts_type, ts) in reports:
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME and near_now(ts), \
            f"delivery report of offset {off}: timestamp ({ts_type}, {ts}), wanted LogAppendTime near {after_ms}"

    got = consume_timestamps_confluent(broker.bootstrap, topic_name)
    assert len(got) == N
    for off, ts_type, ts in got:
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME, \
            f"offset {off}: timestamp type {ts_type}, wanted TIMESTAMP_LOG_APPEND_TIME ({TIMESTAMP_LOG_APPEND_TIME})"
        assert ts != OLD_TS and near_now(ts), \
            f"offset {off}: timestamp {ts} is not the broker's time (produced with {OLD_TS}, now {after_ms})"

    kp = consume_timestamps_kp(broker.bootstrap, topic_name)
    assert len(kp) == N
    for off, ts_type, ts in kp:
        assert ts_type == 1, f"kafka-python, offset {off}: timestamp_type {ts_type}, wanted 1 (LogAppendTime)"
        assert near_now(ts), f"kafka-python, offset {off}: timestamp {ts}, not near {after_ms}"
    assert [ts for _, _, ts in kp] == [ts for _, _, ts in got], "the two clients read other timestamps"


def test_create_time_topic_keeps_the_producer_timestamp(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, config={"message.timestamp.type": "CreateTime"})
    reports = produce_with_timestamp(broker.bootstrap, topic_name, OLD_TS)
    assert all(err is None for err, _, _ in reports), [err for err, _, _ in reports if err][:3]
    got = consume_timestamps_confluent(broker.bootstrap, topic_name)
    assert [(t, ts) for _, t, ts in got] == [(TIMESTAMP_CREATE_TIME, OLD_TS)] * N, got[:3]
    kp = consume_timestamps_kp(broker.bootstrap, topic_name)
    assert [(t, ts) for _, t, ts in kp] == [(0, OLD_TS)] * N, kp[:3]


# --------------------------------------------------------------- min.insync.replicas


def test_min_insync_replicas_above_one_refuses_acks_all(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, config={"min.insync.replicas": "2"})
    assert described(confluent_admin(broker.bootstrap), topic_name)["min.insync.replicas"].value == "2"

    # acks=all: one broker is one in-sync replica, fewer than 2. No retries: the broker's answer.
    refused = produce_with_timestamp(broker.bootstrap, topic_name, OLD_TS, acks="all", retries=0)
    codes = {err.code() if err else None for err, _, _ in refused}
    assert codes == {KafkaError.NOT_ENOUGH_REPLICAS}, \
        f"acks=all on min.insync.replicas=2: {[str(e) for e, _, _ in refused[:3]]}"

    kp = kp_producer(broker.bootstrap, acks="all", retries=0)
    try:
        fut = kp.send(topic_name, key=b"kp", value=b"kp", partition=0)
        with pytest.raises(Exception) as info:
            fut.get(timeout=OP_TIMEOUT_S)
    finally:
        kp.close(timeout=10)
    from kafka.errors import NotEnoughReplicasError
    assert isinstance(info.value, NotEnoughReplicasError), f"kafka-python acks=all: {info.value!r}"

    # acks=1 needs only the leader: accepted, and the refused records were never written.
    accepted = produce_with_timestamp(broker.bootstrap, topic_name, OLD_TS, acks="1")
    assert [(err, off) for err, off, _ in accepted] == [(None, i) for i in range(N)], accepted[:3]
    records = read_confluent(broker.bootstrap, topic_name, [0])[0]
    assert [(r.offset, r.key) for r in records] == [(i, f"k{i}".encode()) for i in range(N)]
