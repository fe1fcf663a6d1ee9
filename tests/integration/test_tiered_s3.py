"""Tiered storage on a real S3 server (LocalStack, no Docker), driven by real Kafka clients.

- flow: produce a few MB, wait until the broker has uploaded it as Parquet segments and
  released its WAL files, check the objects in the bucket, then read everything back from
  offset 0 (which now lives only in the bucket) with confluent-kafka and kafka-python;
- a segment larger than the multipart part size goes up as a multipart upload and reads back;
- ListOffsets by timestamp answers from archived segments once the WAL is released;
- retention.ms set with IncrementalAlterConfigs deletes the old segments' objects and moves
  the log start; DeleteRecords moves it by hand; retention.bytes given at CreateTopics keeps
  only the newest segment;
- the S3 settings work from the TOML config file alone, with no AWS_* variables;
- LocalStack is stopped while producing: uploads fail, the WAL fills up to its budget and
  producers get KAFKA_STORAGE_ERROR; once LocalStack is back every acknowledged record is in
  the log exactly once, in order.

The objects are read back with plain HTTP (LocalStack does not check request signatures) and,
for their rows and Parquet metadata, with DuckDB on downloaded copies.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ResourceType)

from conftest import REPO_ROOT, free_port, set_aws_env
from kafkautil import (Rec, assert_dense, confluent_admin, confluent_producer, create_topic,
                       kp_producer, produce_confluent, produce_kp, read_confluent, read_kp,
                       wait_until, watermarks_confluent)

MiB = 1024 * 1024
WAL_SEGMENT_BYTES = 65536
PART_BYTES = 8 * MiB  # --multipart-part-bytes of the multipart test (the default is 128 MiB)
SEGMENT_NAME = re.compile(r"partition=(\d+)/(\d{20})-(\d+)\.parquet")


# ------------------------------------------------------------------ S3 over plain HTTP


def _http(method: str, url: str, data: bytes | None = None, headers: dict | None = None,
          timeout: float = 30.0) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class Bucket:
    """A bucket on the S3 server, read and written with unsigned requests."""

    def __init__(self, endpoint: str, bucket: str, cache_dir: Path):
        self.endpoint, self.bucket = endpoint.rstrip("/"), bucket
        self.cache_dir = cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[tuple[str, str], Path] = {}

    def url(self, key: str) -> str:
        return f"{self.endpoint}/{self.bucket}/{urllib.request.quote(key)}"

    def list(self, prefix: str) -> dict[str, dict]:
        """{key: {"size", "etag"}} of every object under `prefix` (ListObjectsV2, all pages)."""
        out: dict[str, dict] = {}
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, _, body = _http(
                "GET", f"{self.endpoint}/{self.bucket}?{urllib.parse.urlencode(query)}")
            assert status == 200, f"ListObjectsV2 {prefix} answered {status}: {body[:500]!r}"
            root = ET.fromstring(body)
            ns = {"s3": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
            q = (lambda t: f"s3:{t}") if ns else (lambda t: t)
            for c in root.findall(q("Contents"), ns):
                out[c.findtext(q("Key"), namespaces=ns)] = {
                    "size": int(c.findtext(q("Size"), namespaces=ns)),
                    "etag": c.findtext(q("ETag"), namespaces=ns)}
            if root.findtext(q("IsTruncated"), namespaces=ns) != "true":
                return out
            token = root.findtext(q("NextContinuationToken"), namespaces=ns)

    def get(self, key: str) -> bytes:
        status, _, body = _http("GET", self.url(key), timeout=60)
        assert status == 200, f"GET {key} answered {status}: {body[:300]!r}"
        return body

    def put(self, key: str, data: bytes) -> None:
        status, _, body = _http("PUT", self.url(key), data=data, timeout=60)
        assert status == 200, f"PUT {key} answered {status}: {body[:300]!r}"

    def head(self, key: str) -> dict:
        status, headers, _ = _http("HEAD", self.url(key))
        assert status == 200, f"HEAD {key} answered {status}"
        return {k.lower(): v for k, v in headers.items()}

    def local_copy(self, key: str, etag: str) -> Path:
        """The object downloaded once into the cache (objects are never rewritten in place)."""
        if (key, etag) not in self._files:
            path = self.cache_dir / f"{len(self._files):06d}.parquet"
            path.write_bytes(self.get(key))
            self._files[(key, etag)] = path
        return self._files[(key, etag)]


def segments_of(bucket: Bucket, prefix: str, topic: str) -> dict[int, list[tuple[int, str, dict]]]:
    """{partition: [(base offset, key, listing entry), ...] sorted by base} of a topic's
    segment objects; fails on any other object under the topic."""
    root = f"{prefix}/topics/{topic}/"
    out: dict[int, list] = defaultdict(list)
    for key, entry in bucket.list(root).items():
        m = SEGMENT_NAME.fullmatch(key[len(root):])
        assert m, f"unexpected object {key} under {root}"
        out[int(m[1])].append((int(m[2]), key, entry))
    return {p: sorted(v) for p, v in out.items()}


def segment_meta(bucket: Bucket, key: str, entry: dict) -> dict[str, str]:
    """The sediment.* key-value metadata of one segment object."""
    path = bucket.local_copy(key, entry["etag"])
    rows = duckdb.sql(f"SELECT decode(key), decode(value) FROM parquet_kv_metadata('{path}')").fetchall()
    return {k: v for k, v in rows}


def segment_rows(bucket: Bucket, key: str, entry: dict) -> list[tuple]:
    """(offset, key, value, headers) of every row of one segment object, in file order."""
    path = bucket.local_copy(key, entry["etag"])
    rows = duckdb.sql(f"""SELECT "offset", key, value, headers FROM read_parquet('{path}')""").fetchall()
    return [(o, None if k is None else bytes(k), None if v is None else bytes(v),
             tuple((h["key"], None if h["value"] is None else bytes(h["value"])) for h in hs) or None)
            for o, k, v, hs in rows]


def archived_ranges(bucket: Bucket, prefix: str, topic: str) -> dict[int, list[tuple[int, int, str]]]:
    """{partition: [(base, end, key), ...]} from each segment's own metadata."""
    out = {}
    for p, segs in segments_of(bucket, prefix, topic).items():
        ranges = []
        for base, key, entry in segs:
            md = segment_meta(bucket, key, entry)
            assert md.get("sediment.format_version") == "1", (key, md)
            assert (md["sediment.topic"], md["sediment.partition"], md["sediment.base_offset"]) == \
                (topic, str(p), str(base)), (key, md)
            ranges.append((base, int(md["sediment.end_offset"]), key))
        out[p] = ranges
    return out


def archived_end(bucket: Bucket, prefix: str, topic: str) -> dict[int, int]:
    """{partition: end offset of the archive}; fails on a gap or an overlap between segments."""
    out = {}
    for p, ranges in archived_ranges(bucket, prefix, topic).items():
        end = ranges[0][0]
        for base, seg_end, key in ranges:
            assert base == end, f"partition {p}: segment {key} starts at {base}, previous ended at {end}"
            assert seg_end > base, f"empty segment {key}"
            end = seg_end
        out[p] = end
    return out


def wait_archived_to(bucket: Bucket, prefix: str, topic: str, ends: dict[int, int],
                     timeout: float = 60.0) -> None:
    """Wait until every partition's segments hold offsets 0 (or the first segment's base)
    up to `ends[p]`."""
    wait_until(lambda: all(archived_end(bucket, prefix, topic).get(p, -1) >= e for p, e in ends.items()),
               timeout, interval=0.3, what=f"the archive of {topic} to reach {ends}")


# ------------------------------------------------------------------ broker metrics


def metric(b, name: str) -> float:
    for line in b.metrics().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} not in /metrics")


TIERING_METRICS = ("sediment_upload_lag_bytes", "sediment_wal_disk_bytes",
                   "sediment_wal_released_bytes_total", "sediment_segments_uploaded_total",
                   "sediment_upload_errors_total", "sediment_produce_backpressure_total",
                   "sediment_segments_deleted_total")


def wait_metrics(b, cond, timeout: float, what: str) -> dict[str, float]:
    """Poll the tiering metrics until `cond(values)` holds; the failure shows the last values
    and the WAL files."""
    last: dict[str, float] = {}

    def check():
        nonlocal last
        last = {n: metric(b, n) for n in TIERING_METRICS}
        return cond(last)

    try:
        wait_until(check, timeout, interval=0.2, what=what)
    except AssertionError as e:
        files = sorted((f.name, f.stat().st_size) for f in (b.data_dir / "wal").iterdir())
        raise AssertionError(f"{e}\nmetrics: {last}\nWAL files: {files}") from None
    return last


def wal_dir_bytes(b) -> int:
    wal = b.data_dir / "wal"
    assert wal.is_dir(), f"no WAL directory at {wal}"
    return sum(f.stat().st_size for f in wal.iterdir() if f.is_file())


def s3_bucket(localstack, monkeypatch, tmp_path: Path, name: str) -> tuple[str, str, Bucket]:
    """The shared LocalStack's bucket for one test: the AWS variables set for the brokers it
    starts, a fresh key prefix, and a reader of the bucket."""
    endpoint, bucket_name = localstack
    set_aws_env(monkeypatch, endpoint)
    prefix = f"{name}-{uuid.uuid4().hex[:8]}"
    return bucket_name, prefix, Bucket(endpoint, bucket_name, tmp_path / "objects")


def tiered_broker(broker_factory, bucket: str, prefix: str, *args: str):
    # --wal-retain-bytes 0: archived WAL files are deleted at once (by default the broker keeps
    # up to 1 GiB of them for consumers near the tail), so reads below the WAL come from S3.
    return broker_factory(extra_args=["--object-store", f"s3://{bucket}/{prefix}",
                                      "--wal-retain-bytes", "0", *args])


def expected_from(deliveries, messages) -> dict[int, list[tuple]]:
    """{partition: [(partition, offset, key, value, headers), ...] sorted by offset}."""
    errors = [d for d in deliveries if d.error is not None]
    assert not errors, f"{len(errors)} records not acknowledged, first: {errors[0]}"
    out: dict[int, list] = defaultdict(list)
    for d in deliveries:
        m = messages[d.index]
        hs = tuple(m["headers"]) if m.get("headers") else None
        out[d.partition].append((d.partition, d.offset, m["key"], m["value"], hs))
    for p in out:
        out[p].sort(key=lambda r: r[1])
    return dict(out)


def as_tuples(recs: list[Rec]) -> list[tuple]:
    return [(r.partition, r.offset, r.key, r.value, r.headers) for r in recs]


def consume_new_group(bootstrap: str, topic: str, ends: dict[int, int],
                      timeout: float = 60.0) -> dict[int, list[Rec]]:
    """Subscribe with a new group (auto.offset.reset=earliest) and read until every
    partition reaches `ends[p]`."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"tiered-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "enable.partition.eof": False})
    out: dict[int, list[Rec]] = {p: [] for p in ends}
    nxt = {p: None for p in ends}
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        while any(nxt[p] is None or nxt[p] < e for p, e in ends.items() if e > 0):
            assert time.monotonic() < deadline, f"group consumer stuck: next offsets {nxt}, ends {ends}"
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, f"consumer error: {m.error()}"
                p = m.partition()
                out[p].append(Rec(p, m.offset(), m.key(), m.value(), None,
                                  tuple(m.headers()) if m.headers() else None))
                nxt[p] = m.offset() + 1
    finally:
        c.close()
    return out


# ------------------------------------------------------------------ 1. the whole flow


@pytest.mark.timeout(600)  # the module's first LocalStack start may install it
def test_produce_upload_release_wal_and_read_everything_back_from_s3(
        localstack, broker_factory, topic_name, monkeypatch, tmp_path):
    bucket_name, prefix, bucket = s3_bucket(localstack, monkeypatch, tmp_path, "flow")
    b = tiered_broker(broker_factory, bucket_name, prefix, "--segment-ms", "300",
                      "--wal-segment-bytes", str(WAL_SEGMENT_BYTES))
    create_topic(b.bootstrap, topic_name, partitions=3)

    # ~3 MB of keyed records; every third one carries headers, values are mostly random bytes.
    messages = []
    for i in range(6000):
        m = {"key": f"key-{i:05d}".encode(), "value": f"value-{i:05d}:".encode() + os.urandom(500)}
        if i % 3 == 0:
            m["headers"] = [("i", str(i).encode()), ("bin", b"\x00\xff" + bytes([i % 256]))]
        messages.append(m)
    produced_bytes = sum(len(m["key"]) + len(m["value"]) for m in messages)
    # In rounds of ~300 KB, as steady traffic (one burst of everything is
    # test_wal_files_stay_near_wal_segment_bytes_and_are_released_once_archived).
    producer = confluent_producer(b.bootstrap)
    deliveries = []
    for lo in range(0, len(messages), 600):
        for d in produce_confluent(producer, topic_name, messages[lo:lo + 600]):
            d.index += lo
            deliveries.append(d)
    expected = expected_from(deliveries, messages)
    assert sorted(expected) == [0, 1, 2], f"keys did not spread over the partitions: {sorted(expected)}"
    ends = {p: recs[-1][1] + 1 for p, recs in expected.items()}
    for p, recs in expected.items():
        assert [r[1] for r in recs] == list(range(ends[p])), f"partition {p}: acknowledged offsets not dense"

    # Uploaded: the segments cover every acknowledged offset, the broker says no lag, and WAL
    # files were deleted.
    wait_archived_to(bucket, prefix, topic_name, ends)
    wait_metrics(b, lambda m: m["sediment_upload_lag_bytes"] == 0
                 and m["sediment_wal_released_bytes_total"] > 0,
                 30, what="upload lag 0 and WAL bytes released")

    # The objects: Parquet, per partition, named by base offset, together holding exactly the
    # acknowledged records.
    segs = segments_of(bucket, prefix, topic_name)
    assert sorted(segs) == [0, 1, 2], f"segments for partitions {sorted(segs)}"
    assert sum(len(v) for v in segs.values()) == metric(b, "sediment_segments_uploaded_total")
    for p, seg_list in segs.items():
        assert seg_list[0][0] == 0, f"partition {p}: first segment starts at {seg_list[0][0]}"
        first_key, first_entry = seg_list[0][1], seg_list[0][2]
        head = bucket.get(first_key)
        assert head[:4] == b"PAR1" and head[-4:] == b"PAR1", f"{first_key} is not a Parquet file"
        assert len(head) == first_entry["size"]
        rows = [r for _, k, e in seg_list for r in segment_rows(bucket, k, e)]
        assert [(p, *r) for r in rows] == expected[p], f"partition {p}: archived rows differ"

    # The WAL file that held offset 0 is gone: offset 0 is only in the bucket now.
    first_wal = b.data_dir / "wal" / f"{0:020d}.wal"
    assert not first_wal.exists(), f"{first_wal} is still there after everything was archived"

    # Everything back from offset 0, which is only in the bucket now.
    read_before = metric(b, "sediment_archive_read_bytes_total")
    got = consume_new_group(b.bootstrap, topic_name, ends)
    for p in expected:
        assert as_tuples(got[p]) == expected[p], f"partition {p}: the group consumer read other records"
    released = metric(b, "sediment_wal_released_bytes_total")
    archive_read = metric(b, "sediment_archive_read_bytes_total") - read_before
    assert archive_read >= 0.8 * released, \
        f"{archive_read} bytes read from the archive, but {released} WAL bytes were released"
    assert metric(b, "sediment_archive_cache_misses_total") > 0

    # kafka-python too, on one partition from offset 0.
    kp = read_kp(b.bootstrap, topic_name, [1], start=0)
    assert as_tuples(kp[1]) == expected[1], "kafka-python read other records from partition 1"

    # Everything is archived, so the WAL keeps only its active file: much less than what was
    # produced.
    on_disk = wal_dir_bytes(b)
    files = sorted((f.name, f.stat().st_size) for f in (b.data_dir / "wal").iterdir())
    assert on_disk * 4 < produced_bytes, \
        f"the WAL directory holds {on_disk} bytes ({files}) after {produced_bytes} bytes were archived"
    assert metric(b, "sediment_wal_disk_bytes") == on_disk


@pytest.mark.timeout(300)
def test_wal_files_stay_near_wal_segment_bytes_and_are_released_once_archived(
        localstack, broker_factory, topic_name, monkeypatch, tmp_path):
    """A burst of produce requests. --wal-segment-bytes is the size of a WAL file: like a Kafka
    log segment, a file may pass it by at most one record batch. A file far larger than that
    keeps archived data on local disk for as long as it is the active file (never released)."""
    bucket_name, prefix, bucket = s3_bucket(localstack, monkeypatch, tmp_path, "walsize")
    b = tiered_broker(broker_factory, bucket_name, prefix, "--segment-ms", "300",
                      "--wal-segment-bytes", str(WAL_SEGMENT_BYTES))
    create_topic(b.bootstrap, topic_name, partitions=3)
    messages = [{"key": f"key-{i:05d}".encode(), "value": os.urandom(1000)} for i in range(6000)]
    produced_bytes = sum(len(m["key"]) + len(m["value"]) for m in messages)
    BATCH_BYTES = 131072

    # The size of every WAL file while it exists (files live until their batches are archived,
    # at least one --segment-ms: sampling every 10 ms sees each of them).
    seen: dict[str, int] = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for f in (b.data_dir / "wal").iterdir():
                try:
                    seen[f.name] = max(seen.get(f.name, 0), f.stat().st_size)
                except FileNotFoundError:
                    pass
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        deliveries = produce_confluent(
            confluent_producer(b.bootstrap, **{"linger.ms": 20, "batch.size": BATCH_BYTES}),
            topic_name, messages, flush_timeout=60)
        expected = expected_from(deliveries, messages)
        wait_archived_to(bucket, prefix, topic_name, {p: recs[-1][1] + 1 for p, recs in expected.items()})
        wait_metrics(b, lambda m: m["sediment_upload_lag_bytes"] == 0, 30, what="upload lag 0")
        time.sleep(1.0)  # a release after the last upload
    finally:
        stop.set()
        watcher.join()

    # The producer's largest record batch bounds the overshoot of a WAL file past
    # --wal-segment-bytes (plus a little for the batch and entry headers).
    largest = WAL_SEGMENT_BYTES + BATCH_BYTES + 4096
    files = sorted((f.name, f.stat().st_size) for f in (b.data_dir / "wal").iterdir())
    released = metric(b, "sediment_wal_released_bytes_total")
    assert all(size <= largest for size in seen.values()) and sum(s for _, s in files) <= largest, \
        (f"{produced_bytes} bytes produced in one burst with --wal-segment-bytes {WAL_SEGMENT_BYTES}: "
         f"WAL files seen {sorted(seen.items())}; after all was archived and {released:.0f} bytes "
         f"released the WAL directory holds {files}")


@pytest.mark.timeout(120)
def test_at_default_settings_a_segment_is_one_put(localstack, broker_factory, topic_name,
                                                  monkeypatch, tmp_path):
    """A segment below --multipart-part-bytes (128 MiB by default) goes up in one PutObject:
    its ETag is a plain MD5, not a multipart upload's `<md5>-<parts>`."""
    bucket_name, prefix, bucket = s3_bucket(localstack, monkeypatch, tmp_path, "oneput")
    b = tiered_broker(broker_factory, bucket_name, prefix, "--segment-ms", "1000")
    create_topic(b.bootstrap, topic_name, partitions=1)
    messages = [{"key": f"k{i}".encode(), "value": os.urandom(64 * 1024)} for i in range(100)]
    produce_confluent(confluent_producer(b.bootstrap), topic_name, messages, flush_timeout=60)

    def segment():
        segs = segments_of(bucket, prefix, topic_name).get(0, [])
        return segs[0] if segs else None

    _, key, entry = wait_until(segment, 60, interval=0.5, what="a segment")
    assert entry["size"] > 5 * MiB, entry
    etag = bucket.head(key)["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag), f"{key} has ETag {etag}: not a single PUT"


@pytest.mark.timeout(300)
def test_a_segment_larger_than_the_part_size_is_a_multipart_upload_and_reads_back(
        localstack, broker_factory, topic_name, monkeypatch, tmp_path):
    bucket_name, prefix, bucket = s3_bucket(localstack, monkeypatch, tmp_path, "big")
    # One segment is cut once 9 MiB wait (or 4 s after the last one): the 13 MiB burst below
    # gives one of 9-13 MiB.
    b = tiered_broker(broker_factory, bucket_name, prefix, "--segment-bytes", str(9 * MiB),
                      "--segment-ms", "4000", "--wal-segment-bytes", str(MiB),
                      "--multipart-part-bytes", str(PART_BYTES))
    create_topic(b.bootstrap, topic_name, partitions=1)
    producer = confluent_producer(b.bootstrap)

    # 13 MiB of incompressible values: whatever Parquet does, a 9+ MiB segment stays > 8 MiB.
    messages = [{"key": f"k{i:04d}".encode(), "value": os.urandom(64 * 1024)} for i in range(208)]
    deliveries = produce_confluent(producer, topic_name, messages, flush_timeout=60)

    def big_segment():
        segs = segments_of(bucket, prefix, topic_name).get(0, [])
        return next(((k, e) for _, k, e in segs if e["size"] > PART_BYTES), None)

    key, entry = wait_until(big_segment, 60, interval=0.5, what="a segment over 8 MiB")
    etag = bucket.head(key)["etag"]
    m = re.fullmatch(r'"([0-9a-f]{32})-(\d+)"', etag)
    assert m, f"{key} ({entry['size']} bytes) has ETag {etag}, not a multipart upload's"
    parts = int(m[2])
    # Parts of --multipart-part-bytes (S3's smallest part is 5 MiB), all but the last.
    assert 2 <= parts <= math.ceil(entry["size"] / (5 * MiB)), \
        f"{key}: {parts} parts for {entry['size']} bytes"
    status, _, tail = _http("GET", bucket.url(key), headers={"Range": "bytes=-4"})
    assert status == 206 and tail == b"PAR1", (status, tail)

    # More records: the first round fills the active WAL file past --wal-segment-bytes, so the
    # second one starts a new file; once they are archived too (by --segment-ms), every WAL file
    # with the first 208 records is released, and reads of their offsets go to S3.
    first_bytes = sum(len(m["key"]) + len(m["value"]) for m in messages)
    for n in (20, 4):
        more = [{"key": f"m{len(messages) + i}".encode(), "value": os.urandom(64 * 1024)} for i in range(n)]
        got = produce_confluent(producer, topic_name, more)
        for d in got:
            d.index += len(messages)
        deliveries += got
        messages += more
    expected = expected_from(deliveries, messages)
    by_offset = {r[1]: r for r in expected[0]}
    rows = segment_rows(bucket, key, entry)
    assert len(rows) > 128 and all((0, *r) == by_offset[r[0]] for r in rows), \
        "the multipart segment's rows differ from what was produced"
    wait_archived_to(bucket, prefix, topic_name, {0: len(messages)})
    wait_metrics(b, lambda m: m["sediment_wal_released_bytes_total"] >= first_bytes, 30,
                 what="the WAL files with the first 208 records released")

    read_before = metric(b, "sediment_archive_read_bytes_total")
    got = read_confluent(b.bootstrap, topic_name, [0], start=0, timeout=60)
    assert [(r.offset, r.key, hashlib.sha256(r.value).hexdigest()) for r in got[0]] == \
        [(r[1], r[2], hashlib.sha256(r[3]).hexdigest()) for r in expected[0]]
    assert metric(b, "sediment_archive_read_bytes_total") - read_before >= 0.9 * len(rows) * 64 * 1024


# ------------------------------------------------------------------ 2. retention


@pytest.mark.timeout(300)
def test_retention_ms_deletes_old_segments_and_delete_records_moves_the_log_start(
        localstack, broker_factory, topic_name, monkeypatch, tmp_path):
    bucket_name, prefix, bucket = s3_bucket(localstack, monkeypatch, tmp_path, "ret")
    b = tiered_broker(broker_factory, bucket_name, prefix, "--segment-ms", "200",
                      "--wal-segment-bytes", str(WAL_SEGMENT_BYTES), "--retention-check-ms", "200")
    create_topic(b.bootstrap, topic_name, partitions=2)
    producer = confluent_producer(b.bootstrap)

    def produce_round(numbers: range, ts_ms: int, tag: str):
        msgs = [{"key": f"{tag}-{p}-{i}".encode(), "value": f"{tag} record {i} of {p}".encode() * 8,
                 "partition": p, "timestamp": ts_ms + i}
                for p in (0, 1) for i in numbers]
        got = expected_from(produce_confluent(producer, topic_name, msgs), msgs)
        for p in (0, 1):
            assert [r[1] for r in got[p]] == list(numbers), f"partition {p}: offsets {got[p][:3]}..."
        wait_archived_to(bucket, prefix, topic_name, {0: numbers.stop, 1: numbers.stop})
        return got

    now_ms = int(time.time() * 1000)
    old = produce_round(range(0, 300), now_ms - 2 * 3600 * 1000, "old")
    old_keys = {k for segs in segments_of(bucket, prefix, topic_name).values() for _, k, _ in segs}
    # Two rounds of new records, so that each partition has at least two new segments.
    new = produce_round(range(300, 400), now_ms, "new")
    for p, recs in produce_round(range(400, 500), now_ms + 1000, "new2").items():
        new[p] += recs
    ranges = archived_ranges(bucket, prefix, topic_name)
    listing = bucket.list(f"{prefix}/topics/{topic_name}/")
    for p in (0, 1):
        # The waits above make the rounds land in separate segments: the old records' segments
        # hold exactly them.
        old_segs = [k for _, _, k in ranges[p] if k in old_keys]
        assert old_segs and all(end <= 300 for _, end, k in ranges[p] if k in old_keys), ranges[p]
        assert [(p, *r[:3]) for k in old_segs for r in segment_rows(bucket, k, listing[k])] == \
            [r[:4] for r in old[p]], f"partition {p}: the old segments do not hold the old records"
        assert [(bs, e) for bs, e, k in ranges[p] if k not in old_keys][0][0] == 300, ranges[p]
    assert watermarks_confluent(b.bootstrap, topic_name, [0, 1]) == {0: (0, 500), 1: (0, 500)}

    # ListOffsets by timestamp over archived data (record i of a round has timestamp base + i):
    # the WAL file that held offset 0 is gone, so the broker answers from the segment index and
    # the row groups' timestamp statistics.
    first_wal = b.data_dir / "wal" / f"{0:020d}.wal"
    wait_until(lambda: not first_wal.exists(), 30, what=f"{first_wal} released")
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"ts-{uuid.uuid4().hex[:8]}"})
    try:
        for ts, want in [(now_ms - 3 * 3600 * 1000, 0), (now_ms - 2 * 3600 * 1000 + 150, 150),
                         (now_ms - 3600 * 1000, 300), (now_ms + 350, 350), (now_ms + 1410, 410),
                         (now_ms + 1500, -1)]:
            for p in (0, 1):
                (got,) = c.offsets_for_times([TopicPartition(topic_name, p, ts)], timeout=10)
                assert got.error is None and got.offset == want, \
                    f"partition {p}: offsets_for_times({ts - now_ms:+d} ms) = {got}, want {want}"
    finally:
        c.close()
    deleted_before = metric(b, "sediment_segments_deleted_total")

    admin = confluent_admin(b.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(timeout=30)
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic_name)])
    (cfg,) = [f.result(timeout=30) for f in described.values()]
    assert cfg["retention.ms"].value == "3600000"

    def retention_done():
        keys = {k for segs in segments_of(bucket, prefix, topic_name).values() for _, k, _ in segs}
        wm = watermarks_confluent(b.bootstrap, topic_name, [0, 1])
        return (not (keys & old_keys)) and wm == {0: (300, 500), 1: (300, 500)} and (keys, wm)

    keys, _ = wait_until(retention_done, 30, interval=0.3,
                         what="the old segments deleted and the log start at 300")
    assert keys == {k for p in (0, 1) for _, _, k in ranges[p] if k not in old_keys}, \
        "retention deleted segments with new records"
    assert metric(b, "sediment_segments_deleted_total") - deleted_before == len(old_keys)
    got = read_confluent(b.bootstrap, topic_name, [0, 1], start=0,
                         consumer_conf={"auto.offset.reset": "earliest"})
    for p in (0, 1):
        assert as_tuples(got[p]) == new[p], f"partition {p}: after retention read other records"

    # DeleteRecords in the middle of partition 0's second round: the segments wholly below the
    # cut go, the log start is exactly where asked, partition 1 stays.
    cut = 420
    seg_first_new = [k for bs, e, k in ranges[0] if k not in old_keys and e <= cut]
    assert seg_first_new, f"no new segment of partition 0 ends at or below {cut}: {ranges[0]}"
    fut = admin.delete_records([TopicPartition(topic_name, 0, cut)], request_timeout=30)
    (deleted,) = [f.result(timeout=30) for f in fut.values()]
    assert deleted.low_watermark == cut
    assert watermarks_confluent(b.bootstrap, topic_name, [0, 1]) == {0: (cut, 500), 1: (300, 500)}
    keep = keys - set(seg_first_new)
    wait_until(lambda: set(bucket.list(f"{prefix}/topics/{topic_name}/")) == keep,
               30, what=f"exactly the segments ending at or below {cut} deleted ({seg_first_new})")
    got = read_confluent(b.bootstrap, topic_name, [0], start=-2,  # OFFSET_BEGINNING
                         ends={0: 500}, consumer_conf={"auto.offset.reset": "earliest"})
    assert as_tuples(got[0]) == [r for r in new[0] if r[1] >= cut]


@pytest.mark.timeout(300)
def test_retention_bytes_from_create_topics_keeps_only_the_newest_segment(
        localstack, broker_factory, topic_name, monkeypatch, tmp_path):
    bucket_name, prefix, bucket = s3_bucket(localstack, monkeypatch, tmp_path, "retb")
    b = tiered_broker(broker_factory, bucket_name, prefix, "--segment-ms", "200",
                      "--wal-segment-bytes", str(WAL_SEGMENT_BYTES), "--retention-check-ms", "200")
    # retention.bytes=1: as on Kafka, a segment is deleted only while what stays still holds
    # that many bytes, so every segment but the newest goes.
    create_topic(b.bootstrap, topic_name, partitions=1, config={"retention.bytes": "1"})
    admin = confluent_admin(b.bootstrap)
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic_name)])
    (cfg,) = [f.result(timeout=30) for f in described.values()]
    assert cfg["retention.bytes"].value == "1"
    producer = confluent_producer(b.bootstrap)
    deleted_before = metric(b, "sediment_segments_deleted_total")
    produced = []
    for r in range(3):
        msgs = [{"key": f"r{r}-{i}".encode(), "value": f"round {r} record {i}".encode() * 10,
                 "partition": 0} for i in range(200)]
        produced += expected_from(produce_confluent(producer, topic_name, msgs), msgs)[0]
        wait_archived_to(bucket, prefix, topic_name, {0: 200 * (r + 1)})
    assert [r[1] for r in produced] == list(range(600))

    def only_newest_left():
        segs = segments_of(bucket, prefix, topic_name).get(0, [])
        low, high = watermarks_confluent(b.bootstrap, topic_name, [0])[0]
        return len(segs) == 1 and low == segs[0][0] and high == 600 and (segs[0][0], low)

    base, low = wait_until(only_newest_left, 30, interval=0.3,
                           what="every segment but the newest deleted, the log start at its base")
    assert 0 < base < 600
    assert metric(b, "sediment_segments_deleted_total") - deleted_before >= 2
    got = read_confluent(b.bootstrap, topic_name, [0], start=-2,  # OFFSET_BEGINNING
                         ends={0: 600}, consumer_conf={"auto.offset.reset": "earliest"})
    assert as_tuples(got[0]) == produced[low:]


@pytest.mark.timeout(300)
def test_s3_settings_from_the_config_file_alone(localstack, broker_factory, topic_name,
                                                monkeypatch, tmp_path):
    """The object store URL and the S3 keys under their AWS names in the TOML file, with no
    AWS_* variable in the broker's environment: it archives to LocalStack and reads back."""
    endpoint, bucket_name = localstack
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)
    prefix = f"cfg-{uuid.uuid4().hex[:8]}"
    bucket = Bucket(endpoint, bucket_name, tmp_path / "objects")
    config = tmp_path / "sediment.toml"
    config.write_text(
        f'object_store = "s3://{bucket_name}/{prefix}"\n'
        f'aws_endpoint_url = "{endpoint}"\n'
        'aws_region = "us-east-1"\n'
        'aws_access_key_id = "test"\n'
        'aws_secret_access_key = "test"\n'
        'aws_allow_http = true\n'
        'segment_ms = 200\n'
        'wal_retain_bytes = 0\n'
        f'wal_segment_bytes = {WAL_SEGMENT_BYTES}\n')
    b = broker_factory(extra_args=["--config", str(config)])
    create_topic(b.bootstrap, topic_name, partitions=1)
    # ~1.2 MB in four rounds (four flushes), so the WAL rolls past its first file.
    msgs = [{"key": f"k{i}".encode(), "value": f"value {i:04d} ".encode() * 60, "partition": 0}
            for i in range(2000)]
    producer = confluent_producer(b.bootstrap)
    deliveries = []
    for lo in range(0, len(msgs), 500):
        for d in produce_confluent(producer, topic_name, msgs[lo:lo + 500]):
            d.index += lo
            deliveries.append(d)
    expected = expected_from(deliveries, msgs)
    wait_archived_to(bucket, prefix, topic_name, {0: 2000})
    first_wal = b.data_dir / "wal" / f"{0:020d}.wal"
    wait_until(lambda: not first_wal.exists(), 30, what=f"{first_wal} released")
    got = read_confluent(b.bootstrap, topic_name, [0], start=0)
    assert as_tuples(got[0]) == expected[0]


# ------------------------------------------------------------------ 3. S3 outage


class OwnLocalStack:
    """A LocalStack of this test's own, on a fixed port, that can be stopped and started again
    (on the same port, with the same bucket name) with the project's scripts."""

    def __init__(self, bucket: str):
        self.port = free_port()
        self.bucket = bucket
        self.env = {**os.environ, "LOCALSTACK_PORT": str(self.port),
                    "LOCALSTACK_DIR": str(REPO_ROOT / ".localstack")}
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cp = subprocess.run(["bash", str(REPO_ROOT / "localstack" / "start.sh"), self.bucket],
                            env=self.env, capture_output=True, text=True, timeout=600)
        assert cp.returncode == 0, f"localstack did not start:\n{cp.stdout}\n{cp.stderr}"
        assert cp.stdout.strip().splitlines()[-1] == self.endpoint

    def stop(self) -> None:
        subprocess.run(["bash", str(REPO_ROOT / "localstack" / "stop.sh")], env=self.env,
                       timeout=60, check=True)

    def up(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint + "/_localstack/health", timeout=2).close()
            return True
        except OSError:
            return False


@pytest.fixture
def own_localstack():
    ls = OwnLocalStack(f"outage-{uuid.uuid4().hex[:8]}")
    ls.start()
    yield ls
    ls.stop()


@pytest.mark.timeout(600)  # starting LocalStack may install it
def test_s3_outage_gives_producers_backpressure_and_loses_nothing_acknowledged(
        own_localstack, broker_factory, topic_name, monkeypatch, tmp_path):
    from kafka.errors import KafkaStorageError

    t0 = time.monotonic()

    def step(what: str) -> None:  # shown with the output of a failed test
        print(f"{time.monotonic() - t0:6.2f}s {what}", flush=True)

    ls = own_localstack
    set_aws_env(monkeypatch, ls.endpoint)
    prefix = "arch"
    bucket = Bucket(ls.endpoint, ls.bucket, tmp_path / "objects")
    budget = MiB
    b = tiered_broker(broker_factory, ls.bucket, prefix, "--segment-bytes", str(256 * 1024),
                      "--segment-ms", "4000", "--wal-segment-bytes", str(WAL_SEGMENT_BYTES),
                      "--wal-budget-bytes", str(budget))
    create_topic(b.bootstrap, topic_name, partitions=2)
    kp = kp_producer(b.bootstrap, retries=0, acks="all")

    sent: dict[bytes, tuple[int, bytes]] = {}  # key -> (partition, value) of everything sent
    acked: dict[str, list[tuple[int, int, bytes]]] = defaultdict(list)  # producer -> (p, off, key)
    refused: list[bytes] = []      # answered KAFKA_STORAGE_ERROR: must not be in the log
    uncertain: list[bytes] = []    # failed otherwise (e.g. timed out): at most once in the log

    def kp_round(tag: str, n: int, size: int) -> list:
        msgs = [{"key": f"{tag}-{i:05d}".encode(), "value": os.urandom(size), "partition": i % 2}
                for i in range(n)]
        for m in msgs:
            sent[m["key"]] = (m["partition"], m["value"])
        results = produce_kp(kp, topic_name, msgs)
        for d in results:
            key = msgs[d.index]["key"]
            if d.error is None:
                assert d.partition == msgs[d.index]["partition"]
                acked["kafka-python"].append((d.partition, d.offset, key))
            elif isinstance(d.error, KafkaStorageError):
                refused.append(key)
            else:
                uncertain.append(key)
        return results

    # A little while S3 is up (below --segment-bytes). LocalStack keeps objects in memory only
    # and loses them when it stops, so whatever the broker has uploaded by now is saved here
    # and put back after the restart, as a real S3 would have kept it.
    failed = [d for d in kp_round("before", 40, 2048) if d.error is not None]
    assert not failed, f"{len(failed)} records failed with S3 up, first: {failed[0]}"
    time.sleep(1.5)  # let any upload that is due right away finish (the uploader ticks every 1 s)
    uploaded = metric(b, "sediment_segments_uploaded_total")
    saved = {k: bucket.get(k) for k in bucket.list(prefix + "/")}
    step(f"saved {sorted(saved)}; stopping LocalStack")
    ls.stop()
    assert not ls.up()
    time.sleep(1.2)
    assert metric(b, "sediment_segments_uploaded_total") == uploaded, \
        "a segment was uploaded between saving the bucket and stopping LocalStack"

    # S3 is down: keep producing, past --segment-bytes (uploads are tried and fail) and past the
    # WAL budget (produce is refused with the retriable KAFKA_STORAGE_ERROR).
    step("LocalStack stopped; producing")
    produced_during = 0
    for rnd in range(40):
        results = kp_round(f"during{rnd:02d}", 32, 4096)
        produced_during += 32 * 4096
        if sum(isinstance(d.error, KafkaStorageError) for d in results) == len(results):
            break
    else:
        pytest.fail(f"no back-pressure after {produced_during} bytes with S3 down and a WAL budget "
                    f"of {budget}; WAL on disk: {wal_dir_bytes(b)}")
    step(f"back-pressure after {produced_during} bytes: {len(refused)} refused, "
         f"{len(acked['kafka-python'])} acknowledged")
    assert refused, "kafka-python saw no KAFKA_STORAGE_ERROR"
    assert not uncertain, f"{len(uncertain)} records failed with other errors than KAFKA_STORAGE_ERROR"
    assert metric(b, "sediment_produce_backpressure_total") > 0
    # The uploader sets its gauges at the end of each pass over the partitions.
    wait_until(lambda: metric(b, "sediment_upload_errors_total") > 0
               and metric(b, "sediment_upload_lag_bytes") > 256 * 1024
               and metric(b, "sediment_wal_disk_bytes") > budget,
               30, what="failed uploads, upload lag and the WAL over its budget in the metrics")
    acked_during = sum(1 for _, _, k in acked["kafka-python"] if k.startswith(b"during"))
    assert acked_during * 4096 >= budget / 2, f"only {acked_during} records acknowledged before the budget"

    # librdkafka treats the error as retriable: with a short message timeout the records fail...
    short = confluent_producer(b.bootstrap, **{"message.timeout.ms": 3000})
    short_msgs = [{"key": f"short-{i}".encode(), "value": b"s" * 100, "partition": i % 2} for i in range(6)]
    for m in short_msgs:
        sent[m["key"]] = (m["partition"], m["value"])
    short_d = produce_confluent(short, topic_name, short_msgs, flush_timeout=20)
    assert all(d.error is not None for d in short_d), \
        f"records acknowledged while the WAL is over its budget: {[d for d in short_d if d.error is None]}"
    uncertain += [m["key"] for m in short_msgs]
    # ... and with a long one (and idempotence) they wait it out and get through after the outage.
    waiting = confluent_producer(b.bootstrap, **{"message.timeout.ms": 120000, "enable.idempotence": True})
    waiting_msgs = [{"key": f"waiting-{i:03d}".encode(), "value": os.urandom(1000), "partition": i % 2}
                    for i in range(30)]
    waiting_results: list = [None] * len(waiting_msgs)
    for i, m in enumerate(waiting_msgs):
        sent[m["key"]] = (m["partition"], m["value"])
        waiting.produce(topic_name, key=m["key"], value=m["value"], partition=m["partition"],
                        on_delivery=lambda err, msg, i=i: waiting_results.__setitem__(i, (err, msg.partition(), msg.offset())))
    waiting.poll(2.0)
    assert all(r is None for r in waiting_results), f"delivered during the outage: {waiting_results}"
    released_before = metric(b, "sediment_wal_released_bytes_total")

    # S3 comes back (same port, same bucket name, the saved objects put back).
    step("starting LocalStack again")
    ls.start()
    for k, data in saved.items():
        bucket.put(k, data)
    # The waiting producer's records get in as soon as uploads make room in the WAL ...
    assert waiting.flush(60) == 0
    step("waiting producer flushed")
    errs = [r for r in waiting_results if r is None or r[0] is not None]
    assert not errs, f"the waiting producer's records failed: {errs[:3]}"
    acked["confluent-waiting"] = [(p, off, waiting_msgs[i]["key"])
                                  for i, (_, p, off) in enumerate(waiting_results)]
    # ... and the whole backlog is archived, its WAL files released.
    hw = {p: hi for p, (_, hi) in watermarks_confluent(b.bootstrap, topic_name, [0, 1]).items()}
    wait_archived_to(bucket, prefix, topic_name, hw, timeout=60)
    wait_metrics(b, lambda m: m["sediment_upload_lag_bytes"] == 0
                 and m["sediment_wal_released_bytes_total"] > released_before
                 and m["sediment_wal_disk_bytes"] < budget / 2,
                 60, what="upload lag 0 and the WAL released after S3 came back")
    assert wal_dir_bytes(b) < budget / 2
    step("all archived")
    # Producing works again.
    failed = [d for d in kp_round("after", 40, 2048) if d.error is not None]
    assert not failed, f"{len(failed)} records failed after S3 came back, first: {failed[0]}"
    hw = {p: hi for p, (_, hi) in watermarks_confluent(b.bootstrap, topic_name, [0, 1]).items()}

    # From offset 0: every acknowledged record exactly once, at its offset, in order; nothing
    # refused; nothing that was never sent.
    got = read_confluent(b.bootstrap, topic_name, [0, 1], start=0, ends=hw, timeout=60)
    assert_dense(got)
    at = {(r.partition, r.offset): r for recs in got.values() for r in recs}
    counts = Counter(r.key for r in at.values())
    for producer_name, recs in acked.items():
        for p, off, key in recs:
            r = at.get((p, off))
            assert r is not None and r.key == key and r.value == sent[key][1], \
                f"{producer_name}: acknowledged {key!r} at {p}/{off}, the log has {r}"
            assert counts[key] == 1, f"{key!r} is in the log {counts[key]} times"
        for p in (0, 1):
            offs = [off for q, off, _ in recs if q == p]
            assert offs == sorted(offs), f"{producer_name}: partition {p} acknowledged out of order"
    assert not [k for k in refused if counts[k]], "records refused with KAFKA_STORAGE_ERROR are in the log"
    assert not [k for k in uncertain if counts[k] > 1], \
        f"records in the log twice: {[(k, counts[k]) for k in uncertain if counts[k] > 1]}"
    unknown = [r for r in at.values() if r.key not in sent or sent[r.key] != (r.partition, r.value)]
    assert not unknown, f"records in the log that were never sent: {unknown[:3]}"
    assert metric(b, "sediment_archive_read_bytes_total") > 0
    kp.close(timeout=5)
    del short, waiting  # their librdkafka threads stop here, not after the broker
