"""Consumer-group members for the integration tests, and a ledger of what they did.

A `Member` is one consumer of a group, driven by confluent-kafka or kafka-python,
running in a thread of the test process. `ChildMember` runs the same loop in a
child process (so that the test can SIGKILL it); the child writes its events
as JSON lines on stdout and a reader thread in the test feeds them into the
same `Ledger`.

Every member works the same way, so that "each record exactly once per group"
is something the test can check:
  * auto-commit is off; after processing each batch the member commits the
    next offsets of that batch synchronously, before it polls again (and so
    before the client can take part in a rebalance);
  * on revocation (confluent on_revoke, kafka-python ConsumerRebalanceListener)
    it commits whatever it processed and did not commit yet (normally nothing);
  * a batch is recorded in the ledger only after its commit returned, with
    the commit's error if it failed.

Events carry time.monotonic() of the process that saw them. CLOCK_MONOTONIC is
one clock for the whole machine, so events from child processes and threads
can be put in one order afterwards (used by the overlap check).

Run as a script, this module is the child member:
    python groupkit.py member '<json config>'
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
POLL_S = 0.2
JOIN_THREAD_S = 30.0


# ---------------------------------------------------------------------------
# the ledger


@dataclass(frozen=True)
class Delivery:
    member: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    at: float
    commit_error: str | None


@dataclass
class Event:
    at: float
    member: str
    kind: str            # assigned, revoked, lost, gone, batch, commit-failed, error
    partitions: tuple = ()
    detail: str = ""


class Ledger:
    """Everything the members of one group reported, shared between threads."""

    def __init__(self, topic: str):
        self.topic = topic
        self.lock = threading.Lock()
        self.deliveries: list[Delivery] = []
        self.events: list[Event] = []
        self.assignment: dict[str, frozenset[int]] = {}
        self.live: set[str] = set()
        self.errors: list[str] = []
        self.commit_failures: list[str] = []

    # ------------------------------------------------------------ reporting
    def _event(self, ev: Event) -> None:
        self.events.append(ev)

    def started(self, member: str) -> None:
        with self.lock:
            self.live.add(member)
            self.assignment[member] = frozenset()
            self._event(Event(time.monotonic(), member, "started"))

    def assigned(self, member: str, partitions, at: float | None = None) -> None:
        with self.lock:
            parts = frozenset(partitions)
            self.assignment[member] = parts
            self._event(Event(at or time.monotonic(), member, "assigned", tuple(sorted(parts))))

    def revoked(self, member: str, partitions, at: float | None = None, kind: str = "revoked") -> None:
        with self.lock:
            parts = frozenset(partitions)
            self.assignment[member] = self.assignment.get(member, frozenset()) - parts
            self._event(Event(at or time.monotonic(), member, kind, tuple(sorted(parts))))

    def gone(self, member: str, at: float | None = None, why: str = "") -> None:
        """The member stopped consuming (closed, or killed): it owns nothing any more."""
        with self.lock:
            self.live.discard(member)
            self.assignment[member] = frozenset()
            self._event(Event(at or time.monotonic(), member, "gone", (), why))

    def batch(self, member: str, records, commit_error: str | None, at: float | None = None) -> None:
        """`records`: (partition, offset, key, value) processed and then committed."""
        with self.lock:
            now = at or time.monotonic()
            for p, o, k, v in records:
                self.deliveries.append(Delivery(member, p, o, k, v, now, commit_error))
            self._event(Event(now, member, "batch", tuple(sorted({r[0] for r in records})),
                              f"{len(records)} records"))
            if commit_error is not None:
                self.commit_failures.append(f"{member}: {commit_error}")
                self._event(Event(now, member, "commit-failed", (), commit_error))

    def error(self, member: str, text: str) -> None:
        with self.lock:
            self.errors.append(f"{member}: {text}")
            self._event(Event(time.monotonic(), member, "error", (), text))

    # -------------------------------------------------------------- queries
    def delivered(self) -> set[tuple[int, int]]:
        with self.lock:
            return {(d.partition, d.offset) for d in self.deliveries}

    def delivered_by(self, member: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.member == member]

    def snapshot(self) -> dict[str, frozenset[int]]:
        with self.lock:
            return {m: self.assignment.get(m, frozenset()) for m in self.live}

    def stable_assignment(self, members, partitions) -> dict[str, frozenset[int]] | None:
        """The assignment if exactly `members` are live and split `partitions` without overlap."""
        members, partitions = set(members), set(partitions)
        with self.lock:
            if self.live != members:
                return None
            snap = {m: self.assignment.get(m, frozenset()) for m in members}
        union: set[int] = set()
        for parts in snap.values():
            if (not parts and len(members) <= len(partitions)) or union & parts:
                return None
            union |= parts
        return snap if union == partitions else None

    def wait_stable(self, members, partitions, timeout: float) -> tuple[dict[str, frozenset[int]], float]:
        """Wait until `members` split `partitions`; returns (assignment, monotonic time seen)."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self.stable_assignment(members, partitions)
            if snap is not None:
                return snap, time.monotonic()
            if self.errors:
                raise AssertionError(f"member errors while waiting for a stable group: {self.errors}")
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"group did not settle within {timeout:.0f}s: wanted members {sorted(members)} "
                    f"to split partitions {sorted(partitions)}; live {sorted(self.live)}, "
                    f"assignments {self.snapshot()}\nrecent events:\n{self.describe_events(30)}")
            time.sleep(0.05)

    def wait_delivered(self, expected: set[tuple[int, int]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            got = self.delivered()
            if expected <= got:
                return
            if self.errors:
                raise AssertionError(f"member errors while consuming: {self.errors}")
            if time.monotonic() >= deadline:
                missing = sorted(expected - got)
                raise AssertionError(
                    f"{len(missing)} of {len(expected)} records not consumed within {timeout:.0f}s "
                    f"(first: {missing[:10]}); assignments {self.snapshot()}\n"
                    f"recent events:\n{self.describe_events(30)}")
            time.sleep(0.05)

    def describe_events(self, last: int = 40) -> str:
        with self.lock:
            evs = sorted(self.events, key=lambda e: e.at)[-last:]
        t0 = evs[0].at if evs else 0.0
        return "\n".join(f"  +{e.at - t0:7.3f}s {e.member:>10} {e.kind:<13} {list(e.partitions)} {e.detail}"
                         for e in evs)

    # --------------------------------------------------------------- checks
    def check_exactly_once(self, expected: set[tuple[int, int]]) -> None:
        """Every expected (partition, offset) delivered once, nothing else, no failed commit."""
        with self.lock:
            deliveries = list(self.deliveries)
            failures = list(self.commit_failures)
            errors = list(self.errors)
        assert not errors, f"member errors: {errors}"
        assert not failures, (
            f"{len(failures)} synchronous commits failed (each is a batch that may be "
            f"delivered again): {failures[:5]}")
        count = Counter((d.partition, d.offset) for d in deliveries)
        dups = sorted(po for po, n in count.items() if n > 1)
        if dups:
            who = defaultdict(list)
            for d in deliveries:
                if (d.partition, d.offset) in dups[:5]:
                    who[(d.partition, d.offset)].append(d.member)
            raise AssertionError(
                f"{len(dups)} records consumed more than once by the group although every "
                f"batch was committed before the next poll; first: {dict(who)}\n"
                f"events:\n{self.describe_events(60)}")
        missing = sorted(expected - set(count))
        assert not missing, f"{len(missing)} records never consumed; first: {missing[:10]}"
        extra = sorted(set(count) - expected)
        assert not extra, f"{len(extra)} records consumed that were not expected: {extra[:10]}"

    def check_no_overlap(self) -> None:
        """Replay the assignment events in time order: no partition is ever owned by two
        live members at once (eager protocol: a member gives up its partitions before
        it rejoins, so the new owner can only get them afterwards)."""
        with self.lock:
            evs = sorted(self.events, key=lambda e: e.at)
        owned: dict[str, frozenset[int]] = {}
        for e in evs:
            if e.kind == "assigned":
                for other, parts in owned.items():
                    clash = parts & set(e.partitions)
                    if other != e.member and clash:
                        raise AssertionError(
                            f"{e.member} was assigned {sorted(clash)} while {other} still owned them\n"
                            f"events:\n{self.describe_events(60)}")
                owned[e.member] = frozenset(e.partitions)
            elif e.kind in ("revoked", "lost"):
                owned[e.member] = owned.get(e.member, frozenset()) - set(e.partitions)
            elif e.kind == "gone":
                owned.pop(e.member, None)


def assert_balanced(assignment: dict[str, frozenset[int]], partitions) -> None:
    """Disjoint, complete, and as even as the number of members allows."""
    sizes = sorted(len(p) for p in assignment.values())
    union = set().union(*assignment.values()) if assignment else set()
    assert union == set(partitions), f"assignment {assignment} does not cover {sorted(partitions)}"
    assert sum(sizes) == len(set(partitions)), f"overlapping assignment {assignment}"
    assert sizes[-1] - sizes[0] <= 1, f"unbalanced assignment {assignment}"


# ---------------------------------------------------------------------------
# the member loop, for either client library


class _Sink:
    """Where a member reports: a Ledger (threads) or stdout as JSON lines (child)."""

    def __init__(self, ledger: Ledger | None):
        self.ledger = ledger
        self.out_lock = threading.Lock()

    def _emit(self, obj: dict) -> None:
        with self.out_lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    def assigned(self, name, parts):
        if self.ledger:
            self.ledger.assigned(name, parts)
        else:
            self._emit({"ev": "assigned", "at": time.monotonic(), "partitions": sorted(parts)})

    def revoked(self, name, parts, kind="revoked"):
        if self.ledger:
            self.ledger.revoked(name, parts, kind=kind)
        else:
            self._emit({"ev": kind, "at": time.monotonic(), "partitions": sorted(parts)})

    def batch(self, name, records, commit_error):
        if self.ledger:
            self.ledger.batch(name, records, commit_error)
        else:
            self._emit({"ev": "batch", "at": time.monotonic(), "commit_error": commit_error,
                        "records": [[p, o, _hex(k), _hex(v)] for p, o, k, v in records]})

    def error(self, name, text):
        if self.ledger:
            self.ledger.error(name, text)
        else:
            self._emit({"ev": "error", "at": time.monotonic(), "text": text})


def _hex(b):
    return None if b is None else b.hex()


def _unhex(s):
    return None if s is None else bytes.fromhex(s)


class MemberLoop:
    """One consumer in a group: subscribe, poll, process, commit, until told to stop."""

    def __init__(self, name: str, client: str, bootstrap: str, topic: str, group: str,
                 sink: _Sink, conf: dict | None = None, commit_metadata: str | None = None):
        assert client in ("confluent", "kafka-python"), client
        self.name, self.client, self.bootstrap = name, client, bootstrap
        self.topic, self.group, self.sink = topic, group, sink
        self.conf = dict(conf or {})
        self.commit_metadata = commit_metadata
        self.stop_event = threading.Event()
        self.pending: dict[int, int] = {}   # processed, not yet committed: partition -> next offset
        self.consumer = None

    # ------------------------------------------------------------- confluent
    def _confluent(self):
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        conf = {
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group,
            "client.id": self.name,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 250,
        }
        conf.update(self.conf)
        c = Consumer(conf)
        self.consumer = c

        def commit(offsets: dict[int, int]) -> str | None:
            if not offsets:
                return None
            tps = [TopicPartition(self.topic, p, o, self.commit_metadata) if self.commit_metadata
                   else TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())]
            try:
                res = c.commit(offsets=tps, asynchronous=False)
            except KafkaException as e:
                return f"commit {offsets}: {e}"
            bad = [f"{tp.partition}: {tp.error}" for tp in (res or []) if tp.error is not None]
            return f"commit {offsets}: {bad}" if bad else None

        def on_assign(consumer, partitions):
            self.sink.assigned(self.name, [tp.partition for tp in partitions])

        def on_revoke(consumer, partitions):
            mine = {tp.partition for tp in partitions}
            todo = {p: o for p, o in self.pending.items() if p in mine}
            if todo:
                err = commit(todo)
                if err:
                    self.sink.error(self.name, f"commit in on_revoke failed: {err}")
            for p in mine:
                self.pending.pop(p, None)
            self.sink.revoked(self.name, mine)

        def on_lost(consumer, partitions):
            self.sink.revoked(self.name, [tp.partition for tp in partitions], kind="lost")

        c.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
        try:
            while not self.stop_event.is_set():
                msgs = c.consume(num_messages=500, timeout=POLL_S)
                records = []
                for m in msgs:
                    if m.error() is not None:
                        self.sink.error(self.name, f"consume error: {m.error()}")
                        continue
                    records.append((m.partition(), m.offset(), m.key(), m.value()))
                self._process(records, commit)
            self.sink.revoked(self.name, self._owned_confluent(c))
        finally:
            c.close()

    @staticmethod
    def _owned_confluent(c):
        try:
            return [tp.partition for tp in c.assignment()]
        except Exception:  # noqa: BLE001 - only for the report
            return []

    # ---------------------------------------------------------- kafka-python
    def _kafka_python(self):
        from kafka import ConsumerRebalanceListener, KafkaConsumer
        from kafka import TopicPartition as KTP
        from kafka.structs import OffsetAndMetadata

        conf = dict(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            client_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10000,
            heartbeat_interval_ms=250,
            request_timeout_ms=30000,
            max_poll_records=500,
        )
        conf.update(self.conf)
        c = KafkaConsumer(**conf)
        self.consumer = c
        loop = self

        def commit(offsets: dict[int, int]) -> str | None:
            if not offsets:
                return None
            meta = self.commit_metadata or ""
            try:
                c.commit({KTP(self.topic, p): OffsetAndMetadata(o, meta, -1) for p, o in offsets.items()})
            except Exception as e:  # noqa: BLE001 - reported as a failed commit
                return f"commit {offsets}: {type(e).__name__}: {e}"
            return None

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                mine = {tp.partition for tp in revoked}
                todo = {p: o for p, o in loop.pending.items() if p in mine}
                if todo:
                    err = commit(todo)
                    if err:
                        loop.sink.error(loop.name, f"commit in on_partitions_revoked failed: {err}")
                for p in mine:
                    loop.pending.pop(p, None)
                loop.sink.revoked(loop.name, mine)

            def on_partitions_assigned(self, assigned):
                loop.sink.assigned(loop.name, [tp.partition for tp in assigned])

            def on_partitions_lost(self, lost):
                loop.sink.revoked(loop.name, [tp.partition for tp in lost], kind="lost")

        c.subscribe([self.topic], listener=Listener())
        try:
            while not self.stop_event.is_set():
                batches = c.poll(timeout_ms=int(POLL_S * 1000), max_records=500)
                records = []
                for tp, recs in batches.items():
                    for r in recs:
                        records.append((tp.partition, r.offset, r.key, r.value))
                self._process(records, commit)
            self.sink.revoked(self.name, [tp.partition for tp in c.assignment()])
        finally:
            c.close(autocommit=False)

    # ---------------------------------------------------------------- common
    def _process(self, records, commit) -> None:
        if not records:
            return
        for p, o, _, _ in records:
            self.pending[p] = max(self.pending.get(p, 0), o + 1)
        err = commit(dict(self.pending))
        self.pending.clear()
        self.sink.batch(self.name, records, err)

    def run(self) -> None:
        try:
            if self.client == "confluent":
                self._confluent()
            else:
                self._kafka_python()
        except Exception as e:  # noqa: BLE001 - reported to the test
            self.sink.error(self.name, f"{type(e).__name__}: {e}")


class Member:
    """A group member in a thread of the test process."""

    def __init__(self, name: str, client: str, bootstrap: str, topic: str, group: str,
                 ledger: Ledger, conf: dict | None = None, commit_metadata: str | None = None):
        self.name = name
        self.ledger = ledger
        self.loop = MemberLoop(name, client, bootstrap, topic, group, _Sink(ledger), conf, commit_metadata)
        self.thread = threading.Thread(target=self._run, name=f"member-{name}", daemon=True)
        self.started_at: float | None = None

    def _run(self):
        try:
            self.loop.run()
        finally:
            self.ledger.gone(self.name, why="closed")

    def start(self) -> "Member":
        self.ledger.started(self.name)
        self.started_at = time.monotonic()
        self.thread.start()
        return self

    def stop(self, timeout: float = JOIN_THREAD_S) -> None:
        """Stop polling and close() the consumer (a clean LeaveGroup)."""
        self.loop.stop_event.set()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"member {self.name} did not close within {timeout:.0f}s")


class ChildMember:
    """A group member in a child process, reporting to `ledger` through its stdout."""

    def __init__(self, name: str, client: str, bootstrap: str, topic: str, group: str,
                 ledger: Ledger, conf: dict | None = None):
        self.name, self.ledger = name, ledger
        self.spec = {"name": name, "client": client, "bootstrap": bootstrap, "topic": topic,
                     "group": group, "conf": conf or {}}
        self.proc: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None
        self.stderr_path: Path | None = None
        self.killed_at: float | None = None

    def start(self, workdir: Path) -> "ChildMember":
        self.ledger.started(self.name)
        self.stderr_path = Path(workdir) / f"member-{self.name}.stderr"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "groupkit.py"), "member", json.dumps(self.spec)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, cwd=HERE,
                start_new_session=True)
        self.reader = threading.Thread(target=self._read, name=f"reader-{self.name}", daemon=True)
        self.reader.start()
        return self

    def _read(self):
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                self.ledger.error(self.name, f"bad line from child: {line[:200]!r}")
                continue
            kind, at = ev["ev"], ev["at"]
            if kind == "assigned":
                self.ledger.assigned(self.name, ev["partitions"], at=at)
            elif kind in ("revoked", "lost"):
                self.ledger.revoked(self.name, ev["partitions"], at=at, kind=kind)
            elif kind == "batch":
                recs = [(p, o, _unhex(k), _unhex(v)) for p, o, k, v in ev["records"]]
                self.ledger.batch(self.name, recs, ev["commit_error"], at=at)
            elif kind == "error":
                self.ledger.error(self.name, ev["text"])

    def kill9(self) -> float:
        """SIGKILL the child: it cannot leave the group. Returns the monotonic kill time."""
        assert self.proc is not None
        self.killed_at = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.ledger.gone(self.name, at=self.killed_at, why="SIGKILL")
        if self.reader:
            self.reader.join(5)
        return self.killed_at

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-3000:] if self.stderr_path else ""
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def stop_all(members) -> None:
    """Stop every member (threads: clean close; children: kill), collecting failures."""
    problems = []
    for m in members:
        try:
            if isinstance(m, ChildMember):
                m.close()
            else:
                m.stop()
        except Exception as e:  # noqa: BLE001 - reported together
            problems.append(str(e))
    if problems:
        if sys.exc_info()[0] is not None:
            # called from a `finally` while a failure propagates: report, do not mask it
            print(f"while stopping members: {'; '.join(problems)}", file=sys.stderr)
            return
        raise AssertionError("; ".join(problems))


# ---------------------------------------------------------------------------
# producing records to known partitions


def produce_spread(bootstrap: str, topic: str, partitions, per_partition: int, tag: str,
                   **producer_conf) -> set[tuple[int, int]]:
    """Produce `per_partition` records to each partition; returns their (partition, offset)."""
    from kafkautil import confluent_producer, produce_confluent

    messages = [{"key": f"{tag}-{p}-{i}".encode(), "value": f"{tag}:{p}:{i}".encode(), "partition": p}
                for i in range(per_partition) for p in partitions]
    d = produce_confluent(confluent_producer(bootstrap, **producer_conf), topic, messages)
    bad = [x for x in d if x.error is not None]
    assert not bad, f"{len(bad)} deliveries failed, first: {bad[:3]}"
    return {(x.partition, x.offset) for x in d}


def committed_offsets(bootstrap: str, group: str, topic: str, partitions) -> dict[int, int]:
    """{partition: committed offset} through OffsetFetch (confluent committed()); a
    partition with nothing committed reads as -1001 (OFFSET_INVALID).

    Only offsets: confluent-kafka 2.16.1 reads a TopicPartition's metadata as a
    NUL-terminated C string past its length, so `.metadata` can come back with
    bytes of some earlier string appended (or fail to decode). Tests read metadata
    with rawkafka.committed() or kafka-python instead."""
    from confluent_kafka import TopicPartition
    from kafkautil import OP_TIMEOUT_S, confluent_consumer

    c = confluent_consumer(bootstrap, **{"group.id": group})
    try:
        res = c.committed([TopicPartition(topic, p) for p in partitions], timeout=OP_TIMEOUT_S)
    finally:
        c.close()
    bad = [(tp.partition, tp.error) for tp in res if tp.error is not None]
    assert not bad, f"OffsetFetch errors: {bad}"
    return {tp.partition: tp.offset for tp in res}


# ---------------------------------------------------------------------------
# the child process


def _child_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    loop = MemberLoop(spec["name"], spec["client"], spec["bootstrap"], spec["topic"], spec["group"],
                      _Sink(None), spec.get("conf"))
    signal.signal(signal.SIGTERM, lambda *_: loop.stop_event.set())
    loop.run()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "member":
        sys.path.insert(0, str(HERE))
        sys.exit(_child_main(sys.argv[2]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
