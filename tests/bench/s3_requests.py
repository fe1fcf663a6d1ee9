"""Object-store requests per GiB ingested, counted from the S3 server's own request log.

Starts LocalStack (localstack/start.sh, on its own port) and one broker archiving to it at
default settings, produces --gib GiB of 1 KiB records with `sediment bench`, waits until
everything is archived, and counts what LocalStack logged: PutObject, CreateMultipartUpload,
UploadPart, CompleteMultipartUpload (the writes), and then the GETs of one catch-up read of
the whole topic from offset 0, by a broker that keeps no WAL copy (`--wal-retain-bytes 0`, so
the read is served from the archive) with an empty read cache. Prints the figures and the
monthly request cost they imply at 100 MiB/s with S3 Standard's list prices.

    SEDIMENT_BIN=target/release/sediment .venv/bin/python tests/bench/s3_requests.py [--gib 1]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from conftest import Broker, _http_get, _pick_free_ports, sediment_binary  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
REQUEST = re.compile(r"AWS s3\.([A-Za-z]+) => (\d+)")
WRITES = ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")
# us-east-1 S3 Standard list prices (2026): PUT/COPY/POST/LIST per 1,000, GET per 1,000.
PUT_PRICE, GET_PRICE = 0.005, 0.0004


def counts(log: Path, since: int) -> collections.Counter:
    text = log.read_bytes()[since:].decode("utf-8", "replace")
    return collections.Counter(m.group(1) for m in REQUEST.finditer(text))


def metric(b: Broker, name: str) -> float:
    _, body = _http_get(b.http_base + "/metrics", timeout=5)
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise SystemExit(f"{name} not in /metrics")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0)
    args = ap.parse_args()
    port = _pick_free_ports(1)[0]
    env = {**os.environ, "LOCALSTACK_PORT": str(port)}
    endpoint = subprocess.run(["bash", str(REPO / "localstack/start.sh"), "bench"], env=env,
                              capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    log = REPO / ".localstack" / f"localstack-{port}.log"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true", AWS_REGION="us-east-1",
                      AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    work = Path(tempfile.mkdtemp(prefix="sediment-s3-bench-"))
    records = int(args.gib * 1024 * 1024)  # 1 KiB each
    prefix = f"run-{int(time.time())}"
    try:
        b = Broker(sediment_binary(), work / "b", extra_args=["--object-store", f"s3://bench/{prefix}"])
        b.start()
        start = log.stat().st_size
        subprocess.run([str(sediment_binary()), "bench", "-b", b.bootstrap, "--records", str(records),
                        "--record-size", "1024", "--partitions", "3", "--acks", "all", "--no-consume",
                        "--topic", "bench-t"],
                       check=True, capture_output=True, timeout=1800)
        ingested = metric(b, "sediment_produced_bytes_total")
        # Default segment.ms is 60 s: the last, partial segments go within a minute.
        deadline = time.monotonic() + 180
        while metric(b, "sediment_upload_lag_bytes") > 0:
            if time.monotonic() > deadline:
                raise SystemExit("the archive did not catch up within 180 s")
            time.sleep(1)
        time.sleep(2)
        writes = counts(log, start)
        segments = metric(b, "sediment_segments_uploaded_total")
        b.stop()

        # One catch-up read from offset 0, served from the archive: the WAL keeps nothing
        # once archived, and the read cache starts empty.
        b.options += ["--wal-retain-bytes", "0"]
        shutil.rmtree(b.data_dir / "cache", ignore_errors=True)
        b.start()
        time.sleep(3)  # the WAL release after start
        before = log.stat().st_size
        subprocess.run(["kcat", "-b", b.bootstrap, "-C", "-t", "bench-t", "-e", "-q", "-o", "beginning",
                        "-f", ""], capture_output=True, timeout=1800)
        topics = subprocess.run([str(sediment_binary()), "topics", "-b", b.bootstrap, "list"],
                                capture_output=True, text=True).stdout
        reads = counts(log, before)
        b.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    gib = ingested / 2**30
    puts = sum(writes[k] for k in WRITES)
    print(f"ingested {ingested / 2**20:.0f} MiB of record batches; {segments:.0f} segments uploaded")
    print("write requests: " + ", ".join(f"{k} {writes[k]}" for k in WRITES) + f" (other: "
          f"{dict((k, v) for k, v in writes.items() if k not in WRITES)})")
    print(f"PUT-class requests per GiB ingested: {puts / gib:.1f}")
    per_month_gib = 100 / 1024 * 86400 * 30
    cost = puts / gib * per_month_gib / 1000 * PUT_PRICE
    print(f"at 100 MiB/s ({per_month_gib:,.0f} GiB a month): {puts / gib * per_month_gib:,.0f} PUTs, "
          f"${cost:,.2f} a month at ${PUT_PRICE}/1000")
    print(f"topics: {topics.strip()}")
    print(f"catch-up read requests: {dict(reads)}")


if __name__ == "__main__":
    main()
