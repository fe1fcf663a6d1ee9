"""Client-side helpers shared by the integration tests.

Both client libraries are driven without consumer groups: the broker has no
group coordinator yet, so every consumer here assigns partitions by hand and
starts from explicit offsets, and nothing is ever committed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# librdkafka refuses to build a consumer without group.id, even one that only
# uses assign(); this id is never used for a join or a commit.
DUMMY_GROUP = "sediment-it-unused-group"
OP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Rec:
    """One record read back from the broker."""
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None
    headers: tuple | None = None


@dataclass
class Delivery:
    """Outcome of producing one message (index = position in the input list)."""
    index: int
    error: object | None
    partition: int | None
    offset: int | None


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll `predicate()` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def to_bytes(v) -> bytes | None:
    if v is None or isinstance(v, bytes):
        return v
    return str(v).encode()


# ---------------------------------------------------------------- confluent


def confluent_admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "client.id": "sediment-it-admin"})


def confluent_producer(bootstrap: str, **overrides) -> Producer:
    conf = {
        "bootstrap.servers": bootstrap,
        "client.id": "sediment-it-producer",
        "enable.idempotence": False,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 30000,
    }
    conf.update(overrides)
    return Producer(conf)


def confluent_consumer(bootstrap: str, **overrides) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        "client.id": "sediment-it-consumer",
        "group.id": DUMMY_GROUP,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": False,
    }
    conf.update(overrides)
    return Consumer(conf)


def topic_partition_counts(admin: AdminClient, timeout: float = 10.0) -> dict[str, int]:
    """{topic: number of partitions} from a Metadata request for all topics."""
    md = admin.list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def wait_for_topic(bootstrap: str, topic: str, partitions: int, timeout: float = OP_TIMEOUT_S):
    """Wait until metadata shows `topic` with `partitions` partitions, each led by broker 0."""
    admin = confluent_admin(bootstrap)

    def ready():
        md = admin.list_topics(timeout=5)
        t = md.topics.get(topic)
        if t is None or t.error is not None or len(t.partitions) != partitions:
            return None
        if any(p.leader != 0 for p in t.partitions.values()):
            return None
        return t

    return wait_until(ready, timeout, what=f"topic {topic} with {partitions} partitions led by broker 0")


def create_topic(bootstrap: str, topic: str, partitions: int = 1, config: dict | None = None,
                 timeout: float = OP_TIMEOUT_S) -> None:
    """Create a topic with confluent-kafka's AdminClient and wait until metadata shows it."""
    admin = confluent_admin(bootstrap)
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=timeout)
    futures[topic].result(timeout=timeout)
    wait_for_topic(bootstrap, topic, partitions, timeout)


def kafka_error_of(exc: BaseException) -> KafkaError | None:
    """The KafkaError inside a KafkaException (as raised by admin futures)."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def produce_confluent(producer: Producer, topic: str, messages: list[dict],
                      flush_timeout: float = OP_TIMEOUT_S) -> list[Delivery]:
    """Produce `messages` (dicts with key/value and optional partition/headers/timestamp).

    Returns one Delivery per message, in input order. Fails if any delivery
    report is still missing after flush.
    """
    results: list[Delivery | None] = [None] * len(messages)

    def make_cb(i):
        def cb(err, msg):
            if err is not None:
                results[i] = Delivery(i, err, msg.partition(), None)
            else:
                results[i] = Delivery(i, None, msg.partition(), msg.offset())
        return cb

    deadline = time.monotonic() + flush_timeout
    for i, m in enumerate(messages):
        kwargs = {"value": m.get("value"), "key": m.get("key"), "on_delivery": make_cb(i)}
        for field in ("partition", "headers", "timestamp"):
            if m.get(field) is not None:
                kwargs[field] = m[field]
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                if time.monotonic() >= deadline:
                    raise AssertionError("producer queue stayed full; broker not accepting?")
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(flush_timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after flush({flush_timeout})"
    missing = [i for i, r in enumerate(results) if r is None]
    assert not missing, f"no delivery report for {len(missing)} messages (first: {missing[:5]})"
    return results  # type: ignore[return-value]


def watermarks_confluent(bootstrap: str, topic: str, partitions: Iterable[int],
                         timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    c = confluent_consumer(bootstrap)
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
                for p in partitions}
    finally:
        c.close()


def read_confluent(bootstrap: str, topic: str, partitions: Iterable[int],
                   start: int = 0, ends: dict[int, int] | None = None,
                   timeout: float = OP_TIMEOUT_S, consumer_conf: dict | None = None) -> dict[int, list[Rec]]:
    """Read each partition from `start` up to its end offset (default: its high watermark).

    Returns {partition: [Rec, ...]} in the order the consumer delivered them.
    Fails on any consumer error or if the end is not reached within `timeout`.
    """
    partitions = list(partitions)
    c = confluent_consumer(bootstrap, **(consumer_conf or {}))
    try:
        if ends is None:
            ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                    for p in partitions}
        out: dict[int, list[Rec]] = {p: [] for p in partitions}
        todo = {p for p in partitions if ends[p] > start}
        if todo:
            c.assign([TopicPartition(topic, p, start) for p in sorted(todo)])
        next_offset = {p: start for p in partitions}
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"read_confluent({topic}): timed out after {timeout:.0f}s; "
                    f"next offsets {next_offset}, wanted ends {ends}")
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() is not None:
                    raise AssertionError(f"consumer error on {topic}/{m.partition()}: {m.error()}")
                p = m.partition()
                ts_type, ts = m.timestamp()
                out[p].append(Rec(p, m.offset(), m.key(), m.value(), ts,
                                  tuple(m.headers()) if m.headers() is not None else None))
                next_offset[p] = m.offset() + 1
                if next_offset[p] >= ends[p]:
                    todo.discard(p)
        return out
    finally:
        c.close()


# ------------------------------------------------------------- kafka-python


def kp_producer(bootstrap: str, **overrides):
    from kafka import KafkaProducer
    conf = dict(
        bootstrap_servers=bootstrap,
        client_id="sediment-it-kp-producer",
        enable_idempotence=False,
        acks="all",
        linger_ms=5,
        request_timeout_ms=15000,
        max_block_ms=15000,
    )
    conf.update(overrides)
    return KafkaProducer(**conf)


def kp_consumer(bootstrap: str, **overrides):
    from kafka import KafkaConsumer
    conf = dict(
        bootstrap_servers=bootstrap,
        client_id="sediment-it-kp-consumer",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=15000,
    )
    conf.update(overrides)
    return KafkaConsumer(**conf)


def produce_kp(producer, topic: str, messages: list[dict],
               flush_timeout: float = OP_TIMEOUT_S) -> list[Delivery]:
    """kafka-python counterpart of produce_confluent."""
    futures = []
    for m in messages:
        futures.append(producer.send(
            topic, value=m.get("value"), key=m.get("key"), partition=m.get("partition"),
            headers=m.get("headers"), timestamp_ms=m.get("timestamp")))
    producer.flush(timeout=flush_timeout)
    results = []
    for i, f in enumerate(futures):
        try:
            md = f.get(timeout=flush_timeout)
            results.append(Delivery(i, None, md.partition, md.offset))
        except Exception as e:  # the test inspects the error
            results.append(Delivery(i, e, None, None))
    return results


def read_kp(bootstrap: str, topic: str, partitions: Iterable[int], start: int = 0,
            ends: dict[int, int] | None = None, timeout: float = OP_TIMEOUT_S,
            consumer_conf: dict | None = None) -> dict[int, list[Rec]]:
    """kafka-python counterpart of read_confluent."""
    from kafka import TopicPartition as KTP
    partitions = list(partitions)
    c = kp_consumer(bootstrap, **(consumer_conf or {}))
    try:
        tps = {p: KTP(topic, p) for p in partitions}
        c.assign(list(tps.values()))
        if ends is None:
            end_map = c.end_offsets(list(tps.values()), timeout_ms=10000)
            ends = {p: end_map[tps[p]] for p in partitions}
        for tp in tps.values():
            c.seek(tp, start)
        out: dict[int, list[Rec]] = {p: [] for p in partitions}
        todo = {p for p in partitions if ends[p] > start}
        c.pause(*[tps[p] for p in partitions if p not in todo])
        next_offset = {p: start for p in partitions}
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"read_kp({topic}): timed out after {timeout:.0f}s; "
                    f"next offsets {next_offset}, wanted ends {ends}")
            batches = c.poll(timeout_ms=500, max_records=1000)
            for tp, recs in batches.items():
                for r in recs:
                    headers = tuple((k, v) for k, v in r.headers) if r.headers else None
                    out[tp.partition].append(Rec(tp.partition, r.offset, r.key, r.value,
                                                 r.timestamp, headers))
                    next_offset[tp.partition] = r.offset + 1
                if next_offset[tp.partition] >= ends[tp.partition]:
                    todo.discard(tp.partition)
                    c.pause(tp)
        return out
    finally:
        c.close(autocommit=False)


# ------------------------------------------------------------------ checks


def assert_dense(records: dict[int, list[Rec]], start: int = 0) -> None:
    """Each partition's offsets are exactly start, start+1, ... with no gap or repeat."""
    for p, recs in records.items():
        offsets = [r.offset for r in recs]
        expected = list(range(start, start + len(recs)))
        if offsets != expected:
            bad = next(i for i, (a, b) in enumerate(zip(offsets, expected)) if a != b) \
                if len(offsets) == len(expected) else min(len(offsets), len(expected))
            raise AssertionError(
                f"partition {p}: offsets not dense from {start}; first mismatch at index {bad}: "
                f"got {offsets[max(0, bad - 3):bad + 3]} expected {expected[max(0, bad - 3):bad + 3]}")


def by_key(records: dict[int, list[Rec]]) -> dict[bytes, list[Rec]]:
    out: dict[bytes, list[Rec]] = defaultdict(list)
    for recs in records.values():
        for r in recs:
            out[r.key].append(r)
    return out
