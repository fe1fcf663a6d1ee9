"""Produce and read back with confluent-kafka (librdkafka) and kafka-python."""

from __future__ import annotations

import shutil
import time
from collections import Counter

import duckdb
import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import ConfigResource, OffsetSpec, ResourceType

from kafkautil import (
    OP_TIMEOUT_S,
    by_key,
    confluent_admin,
    confluent_consumer,
    confluent_producer,
    create_topic,
    kp_consumer,
    kp_producer,
    produce_confluent,
    produce_kp,
    read_confluent,
    read_kp,
    assert_dense,
    topic_partition_counts,
    wait_for_topic,
    wait_until,
    watermarks_confluent,
)

CLIENTS = ["confluent", "kafka-python"]


def produce(client: str, bootstrap: str, topic: str, messages: list[dict], acks="all", **conf):
    if client == "confluent":
        producer = confluent_producer(bootstrap, acks=str(acks), **conf)
        return produce_confluent(producer, topic, messages)
    producer = kp_producer(bootstrap, acks=acks, **conf)
    try:
        return produce_kp(producer, topic, messages)
    finally:
        producer.close(timeout=10)


def read(client: str, bootstrap: str, topic: str, partitions, **kw):
    if client == "confluent":
        return read_confluent(bootstrap, topic, partitions, **kw)
    return read_kp(bootstrap, topic, partitions, **kw)


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("acks", [0, 1, "all"], ids=["acks0", "acks1", "acksall"])
@pytest.mark.parametrize("client", CLIENTS)
def test_keyed_produce_and_read_back(broker, topic_name, client, acks):
    partitions = [0, 1, 2]
    create_topic(broker.bootstrap, topic_name, partitions=3)
    messages = [{"key": f"k{i % 30}".encode(), "value": f"value-{i:04d}".encode()} for i in range(300)]

    deliveries = produce(client, broker.bootstrap, topic_name, messages, acks=acks)
    errors = [d for d in deliveries if d.error is not None]
    assert not errors, f"{len(errors)} failed deliveries, first: {errors[:3]}"
    if acks != 0:
        bad = [d for d in deliveries if d.offset is None or d.offset < 0 or d.partition not in partitions]
        assert not bad, f"deliveries without a valid partition/offset: {bad[:5]}"
        acked = Counter((d.partition, d.offset) for d in deliveries)
        dup = [po for po, n in acked.items() if n > 1]
        assert not dup, f"same (partition, offset) acknowledged twice: {dup[:5]}"
    else:
        # acks=0: nothing is acknowledged; wait until the broker has appended everything.
        wait_until(lambda: sum(h for _, h in watermarks_confluent(
            broker.bootstrap, topic_name, partitions).values()) >= 300,
            OP_TIMEOUT_S, what="300 records to be appended (acks=0)")

    records = read(client, broker.bootstrap, topic_name, partitions)
    assert_dense(records)
    allrecs = [r for recs in records.values() for r in recs]
    assert len(allrecs) == 300, f"read {len(allrecs)} records, produced 300"
    assert sorted(r.value for r in allrecs) == sorted(m["value"] for m in messages), \
        "values read back differ from values produced"
    key_of_value = {m["value"]: m["key"] for m in messages}
    assert all(key_of_value[r.value] == r.key for r in allrecs), "a record came back with another key"

    for key, recs in by_key(records).items():
        assert len({r.partition for r in recs}) == 1, f"key {key} spread over partitions {sorted({r.partition for r in recs})}"
        got = [r.value for r in sorted(recs, key=lambda r: r.offset)]
        want = [m["value"] for m in messages if m["key"] == key]
        assert got == want, f"key {key}: order not preserved: {got[:6]}... vs {want[:6]}..."

    if acks != 0:
        for d in deliveries:
            r = records[d.partition][d.offset]
            assert r.value == messages[d.index]["value"], (
                f"acknowledged {messages[d.index]['value']} at {d.partition}/{d.offset}, "
                f"found {r.value} there")

    hw = watermarks_confluent(broker.bootstrap, topic_name, partitions)
    assert hw == {p: (0, len(records[p])) for p in partitions}, hw


@pytest.mark.parametrize("reader", CLIENTS)
def test_headers_round_trip(broker, topic_name, reader):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    header_sets = [
        [("trace-id", b"abc123"), ("empty", b""), ("more", b"first"), ("other", b"second")],
        [("binary", bytes(range(256)))],
        [("utf8-\u00e9", "\u2603".encode())],
        [],
    ]
    messages = [{"key": f"k{i}".encode(), "value": f"v{i}".encode(), "headers": h or None}
                for i, h in enumerate(header_sets)]
    d = produce_confluent(confluent_producer(broker.bootstrap), topic_name, messages)
    assert all(x.error is None for x in d), d
    recs = read(reader, broker.bootstrap, topic_name, [0])[0]
    assert [r.value for r in recs] == [m["value"] for m in messages]
    for r, h in zip(recs, header_sets):
        assert list(r.headers or ()) == h, f"offset {r.offset}: headers {r.headers} != {h}"


def test_a_header_key_repeated_in_one_record_is_kept_through_the_wal_and_the_archive(broker_factory, topic_name):
    """Kafka keeps a header key given twice (headers are a list): every value comes back, in
    order, from the write-ahead log and, after the WAL is gone, rebuilt from the Parquet
    archive, where DuckDB sees them too."""
    b = broker_factory(extra_args=["--segment-ms", "200"])
    create_topic(b.bootstrap, topic_name, partitions=1)
    headers = [("dup_key", b"first"), ("other", None), ("dup_key", b"second"), ("dup_key", b"")]
    messages = [{"key": b"a", "value": f"v{i}".encode(), "headers": headers} for i in range(4)]
    p = confluent_producer(b.bootstrap, **{"compression.type": "zstd"})
    d = produce_confluent(p, topic_name, messages)
    assert all(x.error is None for x in d), d
    want = [(h, None if v is None else v) for h, v in headers]

    def check(where):
        recs = read_confluent(b.bootstrap, topic_name, [0])[0]
        assert [r.value for r in recs] == [m["value"] for m in messages], where
        for r in recs:
            got = [(k, None if v is None else bytes(v)) for k, v in (r.headers or [])]
            assert got == want, f"{where}: offset {r.offset}: {got}"

    check("from the WAL")
    glob = f"{b.data_dir}/objects/topics/{topic_name}/**/*.parquet"
    deadline = time.monotonic() + 30
    rows = []
    while time.monotonic() < deadline:
        try:
            rows = duckdb.sql(f"SELECT headers FROM read_parquet('{glob}')").fetchall()
        except duckdb.IOException:
            rows = []
        if len(rows) == 4:
            break
        time.sleep(0.3)
    assert len(rows) == 4, rows
    assert [(h["key"], h["value"]) for h in rows[0][0]] == want
    # Without its WAL the broker serves the partition from the archive alone.
    b.stop()
    shutil.rmtree(b.data_dir / "wal")
    b.start()
    check("rebuilt from the archive")


COMPRESSION_CASES = [("confluent", c) for c in ("gzip", "snappy", "lz4", "zstd")] + [("kafka-python", "gzip")]


@pytest.mark.parametrize("producer_client,codec", COMPRESSION_CASES,
                         ids=[f"{p}-{c}" for p, c in COMPRESSION_CASES])
def test_compressed_batches_read_back_intact(broker, topic_name, producer_client, codec):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    filler = "the quick brown fox jumps over the lazy dog " * 10
    messages = [{"key": f"k{i % 5}".encode(), "value": f"{i:05d} {filler}".encode(),
                 "partition": 0} for i in range(500)]
    if producer_client == "confluent":
        conf = {"compression.type": codec, "linger.ms": 50}
    else:
        conf = {"compression_type": codec, "linger_ms": 50}
    d = produce(producer_client, broker.bootstrap, topic_name, messages, **conf)
    assert all(x.error is None for x in d), [x for x in d if x.error][:3]
    assert sorted(x.offset for x in d) == list(range(500))
    readers = ["confluent"] + (["kafka-python"] if codec == "gzip" else [])
    for reader in readers:
        recs = read(reader, broker.bootstrap, topic_name, [0])[0]
        assert [r.offset for r in recs] == list(range(500)), reader
        assert [(r.key, r.value) for r in recs] == [(m["key"], m["value"]) for m in messages], reader
    # Reading from the middle of a compressed batch starts at the requested offset.
    recs = read_confluent(broker.bootstrap, topic_name, [0], start=250)[0]
    assert recs and recs[0].offset == 250 and recs[0].value == messages[250]["value"]
    assert [r.offset for r in recs] == list(range(250, 500))


@pytest.mark.parametrize("client", CLIENTS)
def test_message_larger_than_topic_max_is_rejected(broker, topic_name, client):
    create_topic(broker.bootstrap, topic_name, partitions=1, config={"max.message.bytes": "10000"})
    big = [{"key": b"big", "value": b"x" * 20000, "partition": 0}]
    d = produce(client, broker.bootstrap, topic_name, big)[0]
    assert d.error is not None, f"20000-byte message accepted by a topic with max.message.bytes=10000: {d}"
    if client == "confluent":
        assert d.error.code() == KafkaError.MSG_SIZE_TOO_LARGE, d.error
    else:
        from kafka.errors import MessageSizeTooLargeError
        assert isinstance(d.error, MessageSizeTooLargeError), repr(d.error)

    # The broker keeps serving, and the rejected message used no offset.
    assert broker.health() == 200
    small = [{"key": b"small", "value": b"y" * 5000, "partition": 0}]
    d = produce(client, broker.bootstrap, topic_name, small)[0]
    assert d.error is None and d.offset == 0, d
    recs = read(client, broker.bootstrap, topic_name, [0])[0]
    assert [(r.offset, r.value) for r in recs] == [(0, b"y" * 5000)]


def test_broker_message_max_bytes_is_topic_default(broker_factory, topic_name):
    b = broker_factory(message_max_bytes=8000)
    create_topic(b.bootstrap, topic_name, partitions=1)
    admin = confluent_admin(b.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic_name)
    configs = admin.describe_configs([res], request_timeout=OP_TIMEOUT_S)[res].result(timeout=OP_TIMEOUT_S)
    assert configs["max.message.bytes"].value == "8000", configs["max.message.bytes"]
    d = produce("confluent", b.bootstrap, topic_name, [{"key": b"k", "value": b"z" * 16000, "partition": 0}])[0]
    assert d.error is not None and d.error.code() == KafkaError.MSG_SIZE_TOO_LARGE, d


@pytest.mark.parametrize("client", CLIENTS)
def test_auto_create_on_produce(broker, topic_name, client):
    assert topic_name not in topic_partition_counts(confluent_admin(broker.bootstrap))
    d = produce(client, broker.bootstrap, topic_name, [{"key": b"k", "value": b"first"}])[0]
    assert d.error is None and d.partition == 0 and d.offset == 0, d
    wait_for_topic(broker.bootstrap, topic_name, 1)  # default --num-partitions 1
    recs = read(client, broker.bootstrap, topic_name, [0])[0]
    assert [(r.offset, r.key, r.value) for r in recs] == [(0, b"k", b"first")]


def test_auto_create_uses_num_partitions(broker_factory, topic_name):
    b = broker_factory(num_partitions=4)
    d = produce("confluent", b.bootstrap, topic_name, [{"key": b"k", "value": b"v"}])[0]
    assert d.error is None, d
    wait_for_topic(b.bootstrap, topic_name, 4)


# ---------------------------------------------------------------- ListOffsets

N_TS = 20


@pytest.mark.parametrize("client", ["confluent", "confluent-admin", "kafka-python"])
def test_list_offsets(broker, topic_name, client):
    create_topic(broker.bootstrap, topic_name, partitions=2)
    base = (int(time.time()) - 3600) * 1000  # an hour ago, whole second
    messages = [{"key": f"k{i}".encode(), "value": f"v{i}".encode(), "partition": 0,
                 "timestamp": base + i * 1000} for i in range(N_TS)]
    producer_client = "kafka-python" if client == "kafka-python" else "confluent"
    d = produce(producer_client, broker.bootstrap, topic_name, messages)
    assert all(x.error is None for x in d) and [x.offset for x in d] == list(range(N_TS)), d

    recs = read(producer_client, broker.bootstrap, topic_name, [0])[0]
    assert [r.timestamp for r in recs] == [m["timestamp"] for m in messages], "CreateTime not preserved"

    # timestamp query -> expected first offset with timestamp >= query (None: no such record)
    queries = {
        base + 7500: 8,
        base + 7000: 7,
        base - 5000: 0,
        base: 0,
        base + (N_TS - 1) * 1000: N_TS - 1,
        base + N_TS * 1000 + 1: None,
    }

    if client == "confluent":
        c = confluent_consumer(broker.bootstrap)
        try:
            for p, (lo, hi) in {0: (0, N_TS), 1: (0, 0)}.items():
                assert c.get_watermark_offsets(TopicPartition(topic_name, p), timeout=10, cached=False) == (lo, hi)
            for ts, want in queries.items():
                got = c.offsets_for_times([TopicPartition(topic_name, 0, ts)], timeout=10)[0]
                assert got.error is None, got.error
                assert got.offset == (-1 if want is None else want), f"offsets_for_times({ts - base:+d}ms): {got}"
        finally:
            c.close()

    elif client == "confluent-admin":
        admin = confluent_admin(broker.bootstrap)

        def one(p, spec):
            tp = TopicPartition(topic_name, p)
            return admin.list_offsets({tp: spec}, request_timeout=OP_TIMEOUT_S)[tp].result(timeout=OP_TIMEOUT_S)

        assert one(0, OffsetSpec.earliest()).offset == 0
        assert one(0, OffsetSpec.latest()).offset == N_TS
        assert one(1, OffsetSpec.earliest()).offset == 0
        assert one(1, OffsetSpec.latest()).offset == 0
        for ts, want in queries.items():
            got = one(0, OffsetSpec.for_timestamp(ts))
            assert got.offset == (-1 if want is None else want), f"for_timestamp({ts - base:+d}ms): offset {got.offset}"
            if want is not None:
                assert got.timestamp == messages[want]["timestamp"], got.timestamp

    else:
        from kafka import TopicPartition as KTP
        tp0, tp1 = KTP(topic_name, 0), KTP(topic_name, 1)
        c = kp_consumer(broker.bootstrap)
        try:
            c.assign([tp0, tp1])
            assert c.beginning_offsets([tp0, tp1], timeout_ms=10000) == {tp0: 0, tp1: 0}
            assert c.end_offsets([tp0, tp1], timeout_ms=10000) == {tp0: N_TS, tp1: 0}
            for ts, want in queries.items():
                got = c.offsets_for_times({tp0: ts}, timeout_ms=10000)[tp0]
                if want is None:
                    assert got is None, f"offsets_for_times({ts - base:+d}ms): {got}"
                else:
                    assert got is not None and got.offset == want, f"offsets_for_times({ts - base:+d}ms): {got}"
                    assert got.timestamp == messages[want]["timestamp"], got
        finally:
            c.close(autocommit=False)


# ---------------------------------------------------------------- Fetch behaviour

SMALL_FETCH = {
    # 64 KiB per partition per fetch, and a long wait that must only apply when no data is ready
    "confluent": {"max.partition.fetch.bytes": 65536, "fetch.wait.max.ms": 5000},
    "kafka-python": {"max_partition_fetch_bytes": 65536, "fetch_max_wait_ms": 5000},
}


@pytest.mark.parametrize("client", CLIENTS)
def test_fetch_does_not_wait_when_data_is_ready(broker, topic_name, client):
    """~40 fetches of 64 KiB: a broker that waits fetch.wait.max.ms (5 s) although
    data is ready needs minutes; one that answers at once needs about a second."""
    create_topic(broker.bootstrap, topic_name, partitions=1)
    messages = [{"key": None, "value": (f"{i:06d}" + "z" * 2042).encode(), "partition": 0} for i in range(1280)]
    # 16 KiB batches, so that each 64 KiB fetch returns a few of them (~40 fetches in all).
    d = produce("confluent", broker.bootstrap, topic_name, messages, **{"batch.size": 16384})
    assert all(x.error is None for x in d)
    t0 = time.monotonic()
    try:
        recs = read(client, broker.bootstrap, topic_name, [0], timeout=40,
                    consumer_conf=SMALL_FETCH[client])[0]
    except AssertionError as e:
        raise AssertionError(f"{e}\n(does Fetch wait fetch.wait.max.ms although data is ready?)") from None
    elapsed = time.monotonic() - t0
    assert [r.value for r in recs] == [m["value"] for m in messages]
    assert elapsed < 20, f"reading 2.5 MiB in 64 KiB fetches took {elapsed:.1f}s: does Fetch wait although data is ready?"


@pytest.mark.parametrize("client", CLIENTS)
def test_fetch_returns_a_batch_larger_than_partition_max_bytes(broker, topic_name, client):
    """As in Kafka (KIP-74), the first batch is returned even if it exceeds the fetch limits."""
    create_topic(broker.bootstrap, topic_name, partitions=1)
    big = bytes(range(256)) * 1200  # 300 KiB, incompressible enough
    messages = [{"key": b"big", "value": big, "partition": 0}, {"key": b"small", "value": b"s", "partition": 0}]
    d = produce("confluent", broker.bootstrap, topic_name, messages, **{"linger.ms": 0})
    assert [(x.error, x.offset) for x in d] == [(None, 0), (None, 1)], d
    recs = read(client, broker.bootstrap, topic_name, [0], consumer_conf=SMALL_FETCH[client])[0]
    assert [(r.offset, r.key, len(r.value)) for r in recs] == [(0, b"big", len(big)), (1, b"small", 1)]
    assert recs[0].value == big
