"""Wiped-broker rejoin benchmark: how long a broker whose data directory was wiped takes to be
back in the ISR, against the time to copy the un-archived tail at the replication rate plus the
session timeout (issue 10's target).

Three brokers, one topic of 3 partitions with replicas 1,2,3 (broker 1 leads), filled with
`sediment bench --replicas 1,2,3` (which also gives the replication rate: acks=all throughput);
then broker 3 is SIGKILLed, its data directory deleted, and it is started again: the clock runs
from the restart to the moment every partition's ISR holds it again.

    SEDIMENT_BIN=target/release/sediment .venv/bin/python tests/bench/rejoin.py [--records 300000]
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
from conftest import sediment_binary  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--keep", action="store_true",
                    help="keep the brokers' data and logs (else deleted at the end)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sediment-rejoin-"))
    etcd = Etcd(work).start()
    c = Cluster(work, etcd, 3)
    try:
        c.start()
        topic = "rejoin"
        out = subprocess.run(
            [str(sediment_binary()), "bench", "-b", c.brokers[1].bootstrap, "--topic", topic,
             "--records", str(args.records), "--record-size", "1024", "--partitions", "3",
             "--acks", "all", "--no-consume", "--replicas", "1,2,3"],
            capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise SystemExit(out.stdout + out.stderr)
        print(out.stdout.strip())
        m = re.search(r"^produce: .*?([0-9.]+) MiB in .*?([0-9.]+) MiB/s", out.stdout, re.M)
        mib, rate = float(m.group(1)), float(m.group(2))
        for p in range(3):
            c.wait_isr(topic, p, {1, 2, 3}, timeout=120)
        # What the wiped broker must copy from the leader: what is not archived yet (the rest it
        # takes from the segment index at start-up).
        lag = 0.0
        for line in c.brokers[1].metrics().splitlines():
            if line.startswith("sediment_upload_lag_bytes "):
                lag = float(line.split()[1]) / (1 << 20)
        victim = c.brokers[3]
        victim.kill9()
        shutil.rmtree(victim.data_dir)
        victim.data_dir.mkdir()
        started = time.monotonic()
        victim.start(timeout=120)
        registered = time.monotonic() - started
        for p in range(3):
            c.wait_isr(topic, p, {1, 2, 3}, timeout=600)
        took = time.monotonic() - started
        copy = lag / rate
        print(f"produced {mib:.1f} MiB; un-archived tail at the kill {lag:.1f} MiB (the leader's "
              f"upload lag); replication rate (acks=all RF=3 produce) {rate:.1f} MiB/s")
        print(f"wiped broker serving after {registered:.2f} s (waits out its old lease), back in "
              f"every ISR after {took:.2f} s; target: copy time {copy:.2f} s + session 3 s = "
              f"{copy + 3:.2f} s")
    finally:
        c.close()
        etcd.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
