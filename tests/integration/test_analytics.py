"""Analytic engines read the broker's Parquet archive directly: DuckDB from the S3 server
(LocalStack) through its httpfs extension, Spark from the local-filesystem object store.

Every record is produced with a distinct key, a distinct binary value and a chosen CreateTime,
and the delivery reports say where each one landed; the engines must give back exactly those
(partition, offset, key, value, timestamp) rows.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from conftest import set_aws_env
from kafkautil import confluent_producer, create_topic, produce_confluent

PARTITIONS = 3
ARCHIVE_TIMEOUT_S = 60.0

# (partition, offset) -> (key, value, timestamp in ms)
Expected = dict[tuple[int, int], tuple[bytes, bytes, int]]


# ------------------------------------------------------------------ helpers


def _produce(bootstrap: str, topic: str, numbers: range, t0_ms: int) -> Expected:
    """Produce record i for every i in `numbers` (key partitioner spreads them) and return
    where each one landed according to its delivery report."""
    messages = [{"key": f"key-{i:06d}".encode(),
                 # binary on purpose: the archive must keep every byte, zeros included
                 "value": f"value-{i:06d}:".encode() + hashlib.sha256(str(i).encode()).digest()
                          + b"\x00\xff",
                 "timestamp": t0_ms + i}
                for i in numbers]
    delivered = produce_confluent(confluent_producer(bootstrap), topic, messages)
    errors = [d for d in delivered if d.error is not None]
    assert not errors, f"{len(errors)} records were not acknowledged, first: {errors[0]}"
    out: Expected = {}
    for d in delivered:
        m = messages[d.index]
        assert (d.partition, d.offset) not in out, f"two records acknowledged at {d.partition}/{d.offset}"
        out[(d.partition, d.offset)] = (m["key"], m["value"], m["timestamp"])
    return out


def _duckdb_count(con: duckdb.DuckDBPyConnection, glob: str) -> int:
    """Rows in the files that match `glob`; 0 while there is no file yet."""
    try:
        return con.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()[0]
    except duckdb.IOException:  # "No files found that match the pattern"
        return 0


def _wait_archived(count, want: int, timeout: float = ARCHIVE_TIMEOUT_S) -> None:
    """Poll `count()` until the archive holds `want` records."""
    deadline = time.monotonic() + timeout
    while True:
        n = count()
        if n >= want:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"the archive holds {n} of the {want} acknowledged records "
                                 f"after {timeout:.0f}s")
        time.sleep(0.3)


def _assert_same_records(got: list[tuple], expected: Expected, what: str) -> None:
    """`got` holds (partition, offset, key, value, timestamp_ms) rows; they must be exactly
    the expected records, each once."""
    want = {(p, o, k, v, ts) for (p, o), (k, v, ts) in expected.items()}
    dupes = [r for r, n in Counter(got).items() if n > 1]
    missing = sorted(want - set(got))
    extra = sorted(set(got) - want)
    assert not (dupes or missing or extra), (
        f"{what}: {len(got)} rows for {len(want)} produced records; "
        f"{len(missing)} missing (first {missing[:3]}), {len(extra)} unexpected (first {extra[:3]}), "
        f"{len(dupes)} repeated (first {dupes[:3]})")


def _per_partition(expected: Expected) -> dict[int, int]:
    counts = Counter(p for p, _ in expected)
    # Distinct keys over 3 partitions: every partition must have records, or the test is weak.
    assert sorted(counts) == list(range(PARTITIONS)), counts
    return dict(counts)


# ------------------------------------------------------------ DuckDB over S3


def _httpfs_extension() -> Path:
    """The httpfs extension file shipped by the duckdb-extension-httpfs wheel, for the
    installed DuckDB version (DuckDB cannot download extensions here)."""
    import duckdb_extension_httpfs
    path = (Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}"
            / "httpfs.duckdb_extension")
    assert path.is_file(), (f"no httpfs extension for DuckDB {duckdb.__version__} at {path}: "
                            f"pin duckdb-extension-httpfs to the same version as duckdb")
    return path


def _duckdb_on_s3(endpoint: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false")
    con.execute(f"LOAD '{_httpfs_extension()}'")
    host = re.sub(r"^https?://", "", endpoint).rstrip("/")
    con.execute(f"""CREATE SECRET localstack (TYPE s3, KEY_ID 'test', SECRET 'test',
                    REGION 'us-east-1', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)""")
    return con


@pytest.mark.timeout(600)  # the first LocalStack start installs it
def test_duckdb_reads_every_record_from_the_s3_archive(localstack, broker_factory, topic_name,
                                                        monkeypatch):
    endpoint, bucket = localstack
    set_aws_env(monkeypatch, endpoint)
    b = broker_factory(extra_args=["--object-store", f"s3://{bucket}/archive", "--segment-ms", "200"])
    create_topic(b.bootstrap, topic_name, partitions=PARTITIONS)
    con = _duckdb_on_s3(endpoint)
    topic_url = f"s3://{bucket}/archive/topics/{topic_name}"
    glob = f"{topic_url}/**/*.parquet"

    # Two rounds, each waited for, so that every partition is spread over several segments.
    t0_ms = int(time.time() * 1000) - 60_000
    expected: Expected = {}
    for lo, hi in ((0, 1500), (1500, 3000)):
        expected.update(_produce(b.bootstrap, topic_name, range(lo, hi), t0_ms))
        _wait_archived(lambda: _duckdb_count(con, glob), len(expected))
    counts = _per_partition(expected)

    rows = con.sql(f"""SELECT partition, "offset", key, value, epoch_ms(timestamp)
                       FROM read_parquet('{glob}', hive_partitioning = true)""").fetchall()
    _assert_same_records([(int(p), o, bytes(k), bytes(v), ts) for p, o, k, v, ts in rows],
                         expected, "DuckDB over S3")

    summary = con.sql(f"""SELECT partition, count(*), min("offset"), max("offset")
                          FROM read_parquet('{glob}', hive_partitioning = true)
                          GROUP BY ALL ORDER BY partition""").fetchall()
    assert summary == [(p, counts[p], 0, counts[p] - 1) for p in range(PARTITIONS)]

    # Filters on "offset" (alone and with the Hive partition column) give exactly the matching records.
    p = max(counts, key=counts.get)
    lo, hi = counts[p] // 3, 2 * counts[p] // 3
    got = con.sql(f"""SELECT "offset", key, value
                      FROM read_parquet('{glob}', hive_partitioning = true)
                      WHERE partition = {p} AND "offset" BETWEEN {lo} AND {hi}
                      ORDER BY "offset" """).fetchall()
    assert [(o, bytes(k), bytes(v)) for o, k, v in got] == \
        [(o, expected[(p, o)][0], expected[(p, o)][1]) for o in range(lo, hi + 1)]
    cut = min(counts.values()) // 2
    got = con.sql(f"""SELECT partition, "offset" FROM read_parquet('{glob}', hive_partitioning = true)
                      WHERE "offset" >= {cut}""").fetchall()
    assert sorted((int(q), o) for q, o in got) == sorted(k for k in expected if k[1] >= cut)

    # The objects are where the format says, and each file's metadata matches its name.
    files = [f for (f,) in con.sql(f"SELECT file FROM glob('{glob}') ORDER BY file").fetchall()]
    name = re.compile(re.escape(topic_url) + r"/partition=(\d+)/(\d{20})-(\d+)\.parquet")
    parsed = {}
    for f in files:
        m = name.fullmatch(f)
        assert m, f"unexpected object {f}"
        parsed[f] = (int(m[1]), int(m[2]))
    meta: dict[str, dict[str, str]] = {}
    for f, k, v in con.sql(f"""SELECT file_name, decode(key), decode(value)
                              FROM parquet_kv_metadata('{glob}')""").fetchall():
        meta.setdefault(f, {})[k] = v
    for p in range(PARTITIONS):
        segments = sorted((base, f) for f, (q, base) in parsed.items() if q == p)
        assert len(segments) >= 2, f"partition {p}: expected a segment per round, got {segments}"
        next_base = 0
        for base, f in segments:
            md = meta[f]
            assert (md["sediment.format_version"], md["sediment.topic"], md["sediment.partition"],
                    md["sediment.base_offset"]) == ("1", topic_name, str(p), str(base)), (f, md)
            assert base == next_base, f"partition {p}: a gap or overlap before {f}"
            next_base = int(md["sediment.end_offset"])
        assert next_base == counts[p]


# ---------------------------------------------------------- Spark, local files


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """One local Spark session for the module (a JVM start takes several seconds)."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.fail("Spark needs Java 17+: install openjdk-17-jre-headless (tests/run.sh does)",
                    pytrace=False)
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    work = tmp_path_factory.mktemp("spark")
    with pytest.MonkeyPatch.context() as mp:
        # Read when the JVM starts: bind to loopback only, run workers on this venv's Python.
        mp.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        mp.setenv("PYSPARK_PYTHON", sys.executable)
        mp.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
        session = (SparkSession.builder.master("local[2]").appName("sediment-it")
                   .config("spark.ui.enabled", "false")
                   .config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.sql.shuffle.partitions", "2")
                   .config("spark.sql.session.timeZone", "UTC")
                   .config("spark.local.dir", str(work / "local"))
                   .config("spark.sql.warehouse.dir", str(work / "warehouse"))
                   .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        # The gateway JVM outlives stop(); it exits when its stdin closes.
        gateway = SparkContext._gateway
        proc = getattr(gateway, "proc", None)
        if gateway is not None:
            gateway.shutdown()
            SparkContext._gateway = None
            SparkContext._jvm = None
        if proc is not None:
            proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except Exception:
                proc.kill()
                proc.wait(timeout=10)


def test_spark_reads_the_local_archive_with_the_produced_counts(spark, broker_factory, topic_name):
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType, IntegerType, LongType, TimestampType

    b = broker_factory(extra_args=["--segment-ms", "200"])
    create_topic(b.bootstrap, topic_name, partitions=PARTITIONS)
    t0_ms = int(time.time() * 1000) - 60_000
    expected = _produce(b.bootstrap, topic_name, range(3000), t0_ms)
    counts = _per_partition(expected)
    # The default object store is file://<data dir>/objects.
    archive = b.data_dir / "objects" / "topics" / topic_name
    con = duckdb.connect()
    _wait_archived(lambda: _duckdb_count(con, f"{archive}/**/*.parquet"), len(expected))

    # pathGlobFilter keeps Spark off anything but finished segments; partition= still becomes a column.
    df = spark.read.option("pathGlobFilter", "*.parquet").parquet(str(archive))
    types = {f.name: f.dataType for f in df.schema.fields}
    assert types["partition"] == IntegerType()
    assert types["offset"] == LongType()
    assert types["key"] == BinaryType() and types["value"] == BinaryType()
    assert types["timestamp"] == TimestampType(), types["timestamp"]  # UTC-adjusted, not _ntz

    got_counts = {r["partition"]: r["count"] for r in df.groupBy("partition").count().collect()}
    assert got_counts == counts

    rows = df.select("partition", "offset", "key", "value",
                     F.unix_millis("timestamp").alias("ts")).collect()
    _assert_same_records([(r.partition, r.offset, bytes(r.key), bytes(r.value), r.ts) for r in rows],
                         expected, "Spark")

    p = max(counts, key=counts.get)
    lo = counts[p] // 2
    got = df.where((F.col("partition") == p) & (F.col("offset") >= lo)).select("offset", "key").collect()
    assert sorted((r.offset, bytes(r.key)) for r in got) == \
        [(o, expected[(p, o)][0]) for o in range(lo, counts[p])]
