#!/usr/bin/env python3
"""How long a 3-member confluent-kafka consumer group takes to settle.

Benchmark, not a test: run it against a running broker and read the numbers.

    .venv/bin/python tests/bench/group_settle.py --bootstrap 127.0.0.1:9092 --rounds 5

Each round creates a 6-partition topic and a fresh group, starts three consumers
`--stagger` seconds apart (heartbeat.interval.ms=100, session.timeout.ms=6000, so the
clients' own settings allow a fast rebalance), and measures from the moment the last
consumer called subscribe() until every member holds a non-empty assignment that together
covers all six partitions exactly once.
"""

import argparse
import statistics
import threading
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 6


def one_round(bootstrap: str, stagger: float, timeout: float) -> float:
    topic = f"settle-{uuid.uuid4().hex[:8]}"
    group = f"settle-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(10)
    lock = threading.Lock()
    assignments: dict[int, set[int]] = {}
    last_subscribe = [0.0]
    settled = threading.Event()
    settled_at = [0.0]
    stop = threading.Event()

    def check() -> None:
        parts = [p for ps in assignments.values() for p in ps]
        if (len(assignments) == 3 and all(assignments.values())
                and sorted(parts) == list(range(PARTITIONS)) and not settled.is_set()):
            settled_at[0] = time.monotonic()
            settled.set()

    def member(i: int) -> None:
        def on_assign(consumer, tps):
            with lock:
                assignments[i] = {tp.partition for tp in tps}
                check()

        def on_revoke(consumer, tps):
            with lock:
                assignments[i] = set()

        c = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group,
            "heartbeat.interval.ms": 100, "session.timeout.ms": 6000,
            "enable.auto.commit": False,
        })
        time.sleep(i * stagger)
        c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        with lock:
            last_subscribe[0] = max(last_subscribe[0], time.monotonic())
        while not stop.is_set():
            c.poll(0.05)
        c.close()

    threads = [threading.Thread(target=member, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    ok = settled.wait(timeout)
    stop.set()
    for t in threads:
        t.join(30)
    if not ok:
        raise SystemExit(f"group did not settle within {timeout} s")
    return settled_at[0] - last_subscribe[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--stagger", type=float, default=0.5)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    times = []
    for r in range(args.rounds):
        t = one_round(args.bootstrap, args.stagger, args.timeout)
        times.append(t)
        print(f"round {r + 1}: settled {t * 1000:.0f} ms after the last member subscribed", flush=True)
    print(f"settle time over {len(times)} rounds: median {statistics.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
