"""Failover benchmark: how long acknowledged produce stops when a partition leader dies.

Starts its own etcd and three brokers (tests/integration/clusterkit.py) on this machine,
creates a topic with one partition and three replicas, and keeps an acks=all idempotent
producer (confluent-kafka) sending a record every 5 ms. Ten times it SIGKILLs the leader,
then ten times it SIGTERMs it; each time it measures from the signal to the first
acknowledgement of a record produced after it, then restarts the broker and waits for the
full ISR. Prints each gap and the median of each kind.

    .venv/bin/python tests/bench/failover.py [--rounds 10] [--session-timeout-ms 3000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from confluent_kafka.admin import NewTopic  # noqa: E402

from clusterkit import Cluster, Etcd  # noqa: E402
from kafkautil import confluent_admin, confluent_producer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--session-timeout-ms", type=int, default=3000)
    ap.add_argument("--signals", default="SIGKILL,SIGTERM", help="which rounds to run, in order")
    ap.add_argument("--keep", action="store_true",
                    help="keep the brokers' data and logs (else deleted at the end)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sediment-failover-"))
    if args.keep:
        print(f"brokers' logs under {work}", flush=True)
    etcd = Etcd(work).start()
    c = Cluster(work, etcd, 3, ["--broker-session-timeout-ms", str(args.session_timeout_ms)])
    try:
        c.start()
        topic = "failover"
        admin = confluent_admin(c.bootstrap)
        admin.create_topics([NewTopic(topic, 1, 3)])[topic].result(20)
        acks: list[tuple[float, float]] = []  # (sent at, acknowledged at)
        lock = threading.Lock()
        stop = threading.Event()

        def run():
            p = confluent_producer(c.bootstrap, **{"enable.idempotence": True, "linger.ms": 0,
                                                   "message.timeout.ms": 120000})
            while not stop.is_set():
                sent = time.monotonic()

                def cb(err, msg, sent=sent):
                    if err is None:
                        with lock:
                            acks.append((sent, time.monotonic()))
                p.produce(topic, value=b"x" * 100, on_delivery=cb)
                p.poll(0.005)
            p.flush(60)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        results = {}
        for kind in args.signals.split(","):
            gaps = []
            for r in range(args.rounds):
                c.wait_isr(topic, 0, {1, 2, 3}, timeout=60)
                time.sleep(1.0)
                leader = c.wait_leader(topic)
                at = time.monotonic()
                if kind == "SIGKILL":
                    c.brokers[leader].kill9()
                else:
                    c.brokers[leader].stop()
                deadline = at + 60
                gap = None
                while time.monotonic() < deadline and gap is None:
                    with lock:
                        after = [a for s, a in acks if s > at]
                    if after:
                        gap = min(after) - at
                    time.sleep(0.01)
                if gap is None:
                    raise SystemExit(f"{kind} round {r}: no acknowledgement within 60 s")
                gaps.append(gap)
                print(f"{kind} round {r + 1} (broker {leader}): acknowledged produce resumed "
                      f"after {gap:.3f} s", flush=True)
                c.brokers[leader].start()
            results[kind] = gaps
        stop.set()
        t.join(60)
        for kind, gaps in results.items():
            print(f"{kind}: median {statistics.median(gaps):.3f} s, max {max(gaps):.3f} s "
                  f"over {len(gaps)} rounds (session timeout {args.session_timeout_ms} ms)")
    finally:
        c.close()
        etcd.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
