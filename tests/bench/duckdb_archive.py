"""Times DuckDB queries over a topic's archive: count(*) and a filter on offset.

    .venv/bin/python tests/bench/duckdb_archive.py <archive root> <topic> [--s3-endpoint URL]

<archive root> is the object store root: a directory (the broker's default store is
<data-dir>/objects) or s3://bucket/prefix (then --s3-endpoint, e.g. http://127.0.0.1:4566,
and the httpfs extension from the duckdb-extension-httpfs wheel are used). Each query runs
three times in a fresh connection; every time is printed, the first being the cold one.
"""

from __future__ import annotations

import argparse
import time

import duckdb


def connect(endpoint: str | None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    if endpoint:
        import duckdb_extension_httpfs  # noqa: F401  (the wheel that carries the extension)
        from pathlib import Path
        ext = next(Path(duckdb_extension_httpfs.__file__).parent.rglob("httpfs.duckdb_extension"))
        con.execute("SET autoinstall_known_extensions = false")
        con.execute(f"LOAD '{ext}'")
        host = endpoint.split("://", 1)[1]
        con.execute(f"""CREATE SECRET s3bench (TYPE s3, KEY_ID 'test', SECRET 'test',
            REGION 'us-east-1', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)""")
    return con


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("topic")
    ap.add_argument("--s3-endpoint")
    a = ap.parse_args()
    glob = f"{a.root.rstrip('/')}/topics/{a.topic}/*/*.parquet"
    src = f"read_parquet('{glob}', hive_partitioning = true)"
    con = connect(a.s3_endpoint)
    total = con.sql(f"SELECT count(*) FROM {src}").fetchone()[0]
    files = con.sql(f"SELECT count(*) FROM glob('{glob}')").fetchone()[0]
    print(f"{total} records in {files} segment files under {glob}")
    lo, hi = total // 6, total // 6 + 1000
    queries = {
        "count(*)": f"SELECT count(*) FROM {src}",
        "filter on offset": (f"SELECT count(*), sum(octet_length(value)) FROM {src} "
                             f"WHERE partition = 0 AND \"offset\" BETWEEN {lo} AND {hi - 1}"),
        # No statistics help here: every offset of every row group is read.
        "filter scanning every offset": f"SELECT count(*) FROM {src} WHERE \"offset\" % 7 = 3",
    }
    for name, sql in queries.items():
        times = []
        for _ in range(3):
            c = connect(a.s3_endpoint)
            t0 = time.perf_counter()
            row = c.sql(sql).fetchone()
            times.append(time.perf_counter() - t0)
            c.close()
        print(f"{name}: {row} in " + ", ".join(f"{t * 1000:.0f} ms" for t in times))


if __name__ == "__main__":
    main()
