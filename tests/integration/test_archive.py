"""The broker archives what it acknowledged as Parquet segments that DuckDB reads directly."""

from __future__ import annotations

import time

import duckdb

from kafkautil import confluent_producer, create_topic, produce_confluent


def _archived(con, glob: str) -> list[tuple]:
    try:
        return con.sql(f"""SELECT partition, "offset", key, value
                           FROM read_parquet('{glob}', hive_partitioning = true)""").fetchall()
    except duckdb.IOException:
        return []  # no file yet


def test_duckdb_reads_every_acknowledged_record_from_the_archive(broker_factory, topic_name):
    b = broker_factory(extra_args=["--segment-ms", "200", "--segment-bytes", "20000"])
    create_topic(b.bootstrap, topic_name, partitions=3)
    glob = f"{b.data_dir}/objects/topics/{topic_name}/**/*.parquet"
    con = duckdb.connect()
    expected: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    # Two rounds, each waited for, so every partition gets more than one segment.
    for round_ in range(2):
        messages = [{"key": f"k{i % 17}".encode(), "value": f"value-{round_}-{i}".encode()}
                    for i in range(300)]
        delivered = produce_confluent(confluent_producer(b.bootstrap), topic_name, messages)
        assert all(d.error is None for d in delivered)
        expected.update({(d.partition, d.offset): (messages[d.index]["key"], messages[d.index]["value"])
                         for d in delivered})
        deadline = time.monotonic() + 60
        rows = _archived(con, glob)
        while len(rows) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.3)
            rows = _archived(con, glob)
        got = {(int(p), o): (bytes(k), bytes(v)) for p, o, k, v in rows}
        assert len(rows) == len(got), "a record appears twice in the archive"
        assert got == expected

    per_partition = con.sql(f"""SELECT partition, count(*), min("offset"), max("offset")
                                FROM read_parquet('{glob}', hive_partitioning = true)
                                GROUP BY ALL ORDER BY partition""").fetchall()
    assert len(per_partition) == 3
    for p, n, lo, hi in per_partition:
        assert (lo, hi) == (0, n - 1), (p, n, lo, hi)
    files = [f for (f,) in con.sql(f"SELECT file FROM glob('{glob}')").fetchall()]
    assert len(files) >= 6, files
    assert all(f"/topics/{topic_name}/partition=" in f and f.endswith(".parquet") for f in files)
