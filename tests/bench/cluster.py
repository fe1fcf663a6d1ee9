"""Cluster throughput benchmark: one single-node broker, then three brokers with RF=3, on this
machine, measured with `sediment bench` in the same run, plus what the cluster asked of etcd.

For each: 1 KiB records, acks=all, then the same again paced at half the measured rate for
produce latency. The cluster's topic has replicas 1,2,3 on every partition (broker 1 leads all,
the conservative case: one broker takes every produce, all three disks are this one disk).
Reports etcd's gRPC requests per second during the cluster run and the size of its database.

    .venv/bin/python tests/bench/cluster.py [--records 200000] [--partitions 3]
    (SEDIMENT_BIN picks the broker binary; use a release build)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from clusterkit import Cluster, Etcd  # noqa: E402
from conftest import Broker, _http_get, sediment_binary  # noqa: E402


def bench(bootstrap: str, args, extra: list[str]) -> str:
    cmd = [str(sediment_binary()), "bench", "-b", bootstrap, "--records", str(args.records),
           "--record-size", "1024", "--partitions", str(args.partitions), "--acks", "all",
           "--latency-at-half", "--no-consume", *extra]
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"bench failed:\n{out.stdout}\n{out.stderr}")
    print(out.stdout, flush=True)
    return out.stdout


def etcd_metric(etcd: Etcd, name: str) -> float:
    _, body = _http_get(etcd.endpoint + "/metrics", timeout=5)
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def rate_of(out: str, label: str) -> float:
    m = re.search(rf"^{re.escape(label)}: .*?([0-9.]+) MiB/s", out, re.M)
    if not m:
        raise SystemExit(f"no '{label}' rate in:\n{out}")
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--keep", action="store_true",
                    help="keep the brokers' data and logs (else deleted at the end)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sediment-cluster-bench-"))

    single = Broker(sediment_binary(), work / "single", name="single")
    single.start()
    try:
        single_out = bench(single.bootstrap, args, [])
    finally:
        single.stop()

    etcd = Etcd(work).start()
    c = Cluster(work / "cluster", etcd, 3)
    try:
        c.start()
        before = etcd_metric(etcd, "grpc_server_handled_total")
        t0 = time.monotonic()
        cluster_out = bench(c.brokers[1].bootstrap, args, ["--replicas", "1,2,3"])
        secs = time.monotonic() - t0
        after = etcd_metric(etcd, "grpc_server_handled_total")
        db = etcd_metric(etcd, "etcd_mvcc_db_total_size_in_use_in_bytes")
        s, r = rate_of(single_out, "produce"), rate_of(cluster_out, "produce")
        print(f"single node produce {s:.1f} MiB/s; 3 brokers RF=3 acks=all {r:.1f} MiB/s = "
              f"{100 * r / s:.0f}% of single node")
        print(f"etcd during the cluster bench: {after - before:.0f} gRPC requests in {secs:.1f} s "
              f"= {(after - before) / secs:.1f}/s; database in use {db / 1024:.0f} KiB")
    finally:
        c.close()
        etcd.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
