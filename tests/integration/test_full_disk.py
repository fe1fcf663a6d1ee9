"""A full disk: the broker refuses produce with a retriable error, keeps serving reads, starts
on a full disk, and resumes writes by itself once space is back, losing nothing acknowledged.

The data directory (WAL, metadata, disk cache) is a small tmpfs mounted for the test; the
object store is a directory on another filesystem, so archiving keeps working while the WAL's
disk is full. Mounting needs root: the module is skipped otherwise.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from kafkautil import assert_dense, confluent_producer, create_topic, read_confluent

if os.geteuid() != 0:
    pytest.skip("the full-disk tests mount a tmpfs, which needs root", allow_module_level=True)

MIB = 1 << 20
PARTITIONS = [0, 1, 2]
VALUE_PAD = 400                 # bytes of padding per value: ~0.5 KB records
RATE = 400                      # records per second produced by the main producer
MESSAGE_TIMEOUT_MS = 5000       # librdkafka gives up on a refused record after this long
RETRIABLE_FAILURES = {KafkaError.KAFKA_STORAGE_ERROR, KafkaError._MSG_TIMED_OUT}


# --------------------------------------------------------------------------- helpers


def _mount_tmpfs(path: Path, size: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, timeout=30)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.fixture(scope="module", autouse=True)
def _tmpfs_mountable():
    """Skip the whole module when this machine does not let us mount a tmpfs."""
    probe = Path(tempfile.mkdtemp(prefix="sediment-tmpfs-probe-"))
    try:
        cp = _mount_tmpfs(probe, "1m")
        if cp.returncode != 0:
            pytest.skip(f"`mount -t tmpfs` failed (exit {cp.returncode}): "
                        f"{(cp.stderr or cp.stdout).strip()}")
        _umount(probe)
    finally:
        try:
            probe.rmdir()
        except OSError:
            pass


def _tmpfs_broker(broker_factory, request, tmp_path: Path, size: str):
    """A broker (not started) whose --data-dir is a fresh tmpfs of `size`.

    The object store is <tmp_path>/objects, on the test's temporary directory, not on the
    tmpfs. The finalizer kills the broker before unmounting.
    """
    objects = tmp_path / "objects"
    objects.mkdir()
    b = broker_factory(start=False, extra_args=[
        "--object-store", f"file://{objects}", "--segment-ms", "2000"])
    # broker_factory passes --data-dir <workdir>/data: the tmpfs is mounted right there.
    cp = _mount_tmpfs(b.data_dir, size)
    if cp.returncode != 0:
        pytest.skip(f"`mount -t tmpfs -o size={size}` failed: {(cp.stderr or cp.stdout).strip()}")

    def cleanup():
        b.close()
        _umount(b.data_dir)

    request.addfinalizer(cleanup)
    assert os.stat(b.data_dir).st_dev != os.stat(objects).st_dev, \
        "the object store must not be on the tmpfs"
    b.objects_dir = objects
    return b


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill_disk(path: Path) -> int:
    """Append to `path` until its filesystem is full (ENOSPC); returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (b"\0" * MIB, b"\0" * 4096):
            while True:
                try:
                    written += os.write(fd, chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


def fill_leaving(path: Path, filler: Path, leave: int) -> None:
    """Grow or shrink `filler` so that `leave` bytes (give or take a page) stay free."""
    have = filler.stat().st_size if filler.exists() else 0
    target = have + free_bytes(path) - leave
    assert target >= 0, f"cannot leave {leave} bytes free: only {free_bytes(path) + have} to spare"
    if target < have:
        os.truncate(filler, target)
        return
    with open(filler, "ab", buffering=0) as f:
        left = target - have
        while left > 0:
            left -= f.write(b"\0" * min(MIB, left))


def http_status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def assert_alive(broker, when: str, disk_full: bool = False) -> None:
    """Alive and serving; /ready says `degraded` (still 200: reads go on) while the disk
    refuses writes, and `ready` otherwise."""
    assert broker.is_running(), f"the broker exited {when} (code {broker.proc.poll()})"
    status, body = http_status(broker.http_base + "/health")
    assert status == 200, f"/health answered {status} {when}: {body!r}"
    status, body = http_status(broker.http_base + "/ready")
    assert status == 200, f"/ready answered {status} {when}: {body!r}"
    first = body.splitlines()[0] if body else ""
    if disk_full:
        assert first == "degraded" and "disk" in body, f"/ready {when}: {body!r}"
    else:
        assert first == "ready", f"/ready {when}: {body!r}"


class Probe:
    """A producer that never retries: one record's delivery report is the broker's answer."""

    def __init__(self, bootstrap: str):
        self.p = confluent_producer(bootstrap, **{
            "client.id": "sediment-it-disk-probe", "retries": 0, "linger.ms": 0,
            "message.timeout.ms": 10000})
        self.n = 0

    def produce(self, topic: str):
        """(error or None, offset) of one acks=all record sent to partition 0."""
        out = []
        self.n += 1
        self.p.produce(topic, key=b"probe", value=f"probe-{self.n}".encode(), partition=0,
                       on_delivery=lambda err, msg: out.append((err, msg.offset())))
        assert self.p.flush(15) == 0, "probe record got no delivery report"
        return out[0]

    def wait_refused(self, topic: str, timeout: float = 5.0) -> KafkaError:
        deadline = time.monotonic() + timeout
        while True:
            err, _ = self.produce(topic)
            if err is not None or time.monotonic() > deadline:
                assert err is not None, f"produce still accepted {timeout:.0f}s after the disk filled"
                return err
            time.sleep(0.05)

    def wait_accepted(self, topic: str, timeout: float) -> float:
        start = time.monotonic()
        while True:
            err, _ = self.produce(topic)
            if err is None:
                return time.monotonic() - start
            assert err.code() == KafkaError.KAFKA_STORAGE_ERROR, f"unexpected refusal: {err}"
            assert time.monotonic() - start < timeout, \
                f"produce still refused {timeout:.0f}s after space came back: {err}"
            time.sleep(0.05)


class Stream:
    """The main producer: keyed, idempotent, acks=all; every delivery report is kept."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self.p = confluent_producer(bootstrap, **{
            "client.id": "sediment-it-disk-stream",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": MESSAGE_TIMEOUT_MS,
            "retry.backoff.ms": 100,
            "retry.backoff.max.ms": 500,
            "queue.buffering.max.messages": 50000,
        })
        self.sent: list[tuple[float, bytes, bytes]] = []            # (time, key, value)
        # value -> (error or None, partition, offset)
        self.reports: dict[bytes, tuple[KafkaError | None, int, int]] = {}
        self.lock = threading.Lock()

    def _on_delivery(self, err, msg):
        with self.lock:
            self.reports[msg.value()] = (err, msg.partition(), msg.offset() if err is None else -1)

    def pump(self, seconds: float, until=None) -> None:
        """Produce at RATE records/s for `seconds` (or until `until()` is true)."""
        end = time.monotonic() + seconds
        per_tick = max(1, RATE // 100)
        while time.monotonic() < end and not (until and until()):
            for _ in range(per_tick):
                i = len(self.sent)
                key = f"k{i % 16}".encode()
                value = f"v{i:07d}-".encode() + b"x" * VALUE_PAD
                try:
                    self.p.produce(self.topic, key=key, value=value, on_delivery=self._on_delivery)
                except BufferError:
                    break
                self.sent.append((time.monotonic(), key, value))
            self.p.poll(0.01)

    def flush(self, timeout: float) -> None:
        left = self.p.flush(timeout)
        assert left == 0, f"{left} records got no delivery report within {timeout:.0f}s"

    def acked(self) -> list[tuple[int, int, bytes, bytes]]:
        """(partition, offset, key, value) of every acknowledged record."""
        keys = {v: k for _, k, v in self.sent}
        with self.lock:
            return [(p, off, keys[v], v) for v, (err, p, off) in self.reports.items() if err is None]

    def outcome_of(self, since: float, until: float = float("inf")) -> tuple[int, Counter]:
        """(acked, Counter of error codes) of the records produced in [since, until)."""
        acked, errors = 0, Counter()
        with self.lock:
            for t, _, v in self.sent:
                if since <= t < until and v in self.reports:
                    err = self.reports[v][0]
                    if err is None:
                        acked += 1
                    else:
                        errors[err.code()] += 1
        return acked, errors


def check_log(bootstrap: str, topic: str, acked, what: str):
    """Every acked record is in the log exactly once, at its acked offset; offsets are dense."""
    records = read_confluent(bootstrap, topic, PARTITIONS, timeout=30)
    assert_dense(records)
    lost, moved = [], []
    for p, off, key, value in acked:
        recs = records[p]
        if off >= len(recs):
            lost.append((p, off, value[:8]))
        elif (recs[off].key, recs[off].value) != (key, value):
            moved.append((p, off, value[:8], (recs[off].value or b"")[:8]))
    assert not lost, (f"{what}: {len(lost)} of {len(acked)} acknowledged records are missing "
                      f"(partition ends {[len(records[p]) for p in PARTITIONS]}); first: {lost[:5]}")
    assert not moved, (f"{what}: {len(moved)} acknowledged offsets hold another record "
                       f"(partition, offset, acked value, found value); first: {moved[:5]}")
    counts = Counter(r.value for recs in records.values() for r in recs)
    dups = [(v[:8], n) for v, n in counts.items() if n > 1]
    assert not dups, f"{what}: {len(dups)} records stored more than once (idempotent producer); {dups[:5]}"
    return records


def wal_disk_line(broker) -> dict[str, int]:
    """The 'wal disk' line the broker logged at its latest start."""
    text = this_start_log(broker)
    m = re.search(r"wal disk filesystem_bytes=(\d+) available_bytes=(\d+) wal_budget=(\d+) "
                  r"disk_reserve=(\d+)", text)
    assert m, "no 'wal disk' line in the broker log"
    return dict(zip(["filesystem", "available", "budget", "reserve"], map(int, m.groups())))


def this_start_log(broker) -> str:
    """The broker log since its latest start."""
    return broker.log_path.read_text(errors="replace").rsplit("===== start #", 1)[-1]


def enospc_count(broker) -> int:
    """WAL writes that failed for lack of space since the broker's latest start."""
    return len(re.findall(r"wal write failed and was rolled back|starting a wal segment failed",
                          this_start_log(broker)))


def fill_while_producing(stream: Stream, filler: Path) -> int:
    """Fill the disk from a thread while `stream` keeps producing; returns the filler's size."""
    filled = {}
    t = threading.Thread(target=lambda: filled.update(bytes=fill_disk(filler)))
    t.start()
    stream.pump(30.0, until=lambda: not t.is_alive())
    t.join()
    assert "bytes" in filled, "the filler thread failed"
    assert free_bytes(filler.parent) < MIB, f"the filler left {free_bytes(filler.parent)} bytes free"
    return filled["bytes"]


def free_and_resume(broker, stream: Stream, probe: Probe, filler: Path, topic: str) -> float:
    """Delete the filler; produce must succeed again within seconds, in the same process.

    Returns how long after the delete the first probe record was accepted.
    """
    pid = broker.pid
    filler.unlink()
    freed_at = time.monotonic()
    resumed_after = probe.wait_accepted(topic, timeout=10)
    stream.pump(15.0, until=lambda: stream.outcome_of(freed_at)[0] > 0)
    assert stream.outcome_of(freed_at)[0] > 0, "the main producer got no ack 15s after space came back"
    first_ok = time.monotonic()
    stream.pump(2.0)
    stream.flush(20)
    assert broker.pid == pid and broker.is_running(), "the broker was restarted or died"
    assert_alive(broker, "after space came back")
    acked_after, errors_after = stream.outcome_of(first_ok)
    assert acked_after > 0 and not errors_after, \
        f"after writes resumed: {acked_after} acked, failures {dict(errors_after)}"
    return resumed_after


# --------------------------------------------------------------------------- tests


@pytest.mark.timeout(120)
def test_full_disk_refuses_produce_restarts_and_resumes_without_loss(broker_factory, request,
                                                                      tmp_path, topic_name):
    """Fill a 100 MiB data disk under an idempotent acks=all producer, twice: produce is refused
    (never acknowledged) while full, the broker stays up and readable, a kill -9 on the full disk
    is followed by a clean start that serves every acknowledged record, and each time the space
    comes back writes resume in the same process. At the end every acknowledged record is in
    the log exactly once, at its acknowledged offset, with no gap."""
    broker = _tmpfs_broker(broker_factory, request, tmp_path, "100m")
    broker.start()
    data = broker.data_dir
    filler = data / "filler.bin"
    create_topic(broker.bootstrap, topic_name, partitions=len(PARTITIONS))
    stream = Stream(broker.bootstrap, topic_name)
    probe = Probe(broker.bootstrap)

    # 1. Room on the disk: everything is acknowledged.
    stream.pump(2.0)
    stream.flush(15)
    acked, errors = stream.outcome_of(0)
    assert acked == len(stream.sent) and not errors, \
        f"before the disk filled: {acked}/{len(stream.sent)} acked, errors {dict(errors)}"

    # 2. Fill the filesystem while producing, then keep producing on the full disk: produce
    #    is refused with KAFKA_STORAGE_ERROR, the broker stays up, reads still work.
    filled = fill_while_producing(stream, filler)
    full_at = time.monotonic()
    err = probe.wait_refused(topic_name)
    assert err.code() == KafkaError.KAFKA_STORAGE_ERROR, \
        f"produce on a full disk failed with {err}, not the retriable KAFKA_STORAGE_ERROR"
    stream.pump(MESSAGE_TIMEOUT_MS / 1000 + 1.0)
    assert_alive(broker, "while the disk is full", disk_full=True)
    stream.flush(MESSAGE_TIMEOUT_MS / 1000 + 10)
    # A second's grace for the 100 ms disk check and batches already on their way.
    acked_full, errors_full = stream.outcome_of(full_at + 1.0)
    assert acked_full == 0, f"{acked_full} records produced on the full disk were acknowledged"
    assert sum(errors_full.values()) > 0, "no delivery failed while the disk was full"
    unexpected = {KafkaError(c).name(): n for c, n in errors_full.items() if c not in RETRIABLE_FAILURES}
    assert not unexpected, f"records failed with other errors than a storage error/timeout: {unexpected}"
    check_log(broker.bootstrap, topic_name, stream.acked(), "reading on the full disk")

    # 3. Space comes back: writes resume within seconds in the same process (after a WAL write
    #    that failed with ENOSPC, the partitions are rolled back first).
    enospc_1 = enospc_count(broker)
    resumed_1 = free_and_resume(broker, stream, probe, filler, topic_name)
    if enospc_1:
        assert re.search(r"disk space is back: wal writes resume offsets_rolled_back=\d+",
                         this_start_log(broker)), \
            "the WAL suspended after ENOSPC, resumed, but the partitions were not rolled back"
    check_log(broker.bootstrap, topic_name, stream.acked(), "after the first resume")

    # 4. Full again; kill -9 on the full disk: the broker starts on it, serves every acked
    #    record and refuses produce.
    fill_while_producing(stream, filler)
    err = probe.wait_refused(topic_name)
    assert err.code() == KafkaError.KAFKA_STORAGE_ERROR, f"second fill: {err}"
    stream.pump(1.0)
    enospc_2 = enospc_count(broker)
    fill_disk(filler)  # whatever the broker freed meanwhile (a rolled-back write) is taken again
    broker.kill9()
    broker.start()
    assert free_bytes(data) < wal_disk_line(broker)["reserve"], "the restarted broker found room"
    assert wal_disk_line(broker)["available"] < MIB, "the broker did not start on a full disk"
    assert_alive(broker, "after a restart on the full disk", disk_full=True)
    check_log(broker.bootstrap, topic_name, stream.acked(), "after kill -9 and a start on the full disk")
    err, _ = probe.produce(topic_name)
    assert err is not None and err.code() == KafkaError.KAFKA_STORAGE_ERROR, \
        f"produce after a start on the full disk answered {err}, not KAFKA_STORAGE_ERROR"

    # 5. Space comes back again: writes resume without a restart.
    resumed_2 = free_and_resume(broker, stream, probe, filler, topic_name)

    # 6. The whole log: every ack exactly once at its offset, no gap from 0 to the end.
    acked_all = stream.acked()
    records = check_log(broker.bootstrap, topic_name, acked_all, "at the end")
    stored = sum(len(r) for r in records.values())
    parquet = list(broker.objects_dir.rglob("*.parquet"))
    print(f"\nfull-disk run: filler {filled / MIB:.1f} MiB, {len(stream.sent)} produced, "
          f"{len(acked_all)} acked, {stored} stored (incl. {probe.n} probes), full-disk failures "
          f"{ {KafkaError(c).name(): n for c, n in errors_full.items()} }, WAL ENOSPC rollbacks "
          f"{enospc_1} (1st fill) {enospc_2} (2nd fill), resumed {resumed_1:.2f}s / "
          f"{resumed_2:.2f}s after the filler was deleted, {len(parquet)} parquet objects")
    assert parquet, "nothing was archived to the object store during the test"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("size_mib,reserve_mib", [(100, 8), (400, 20)], ids=["100MiB", "400MiB"])
def test_budget_and_reserve_are_sized_from_the_filesystem(broker_factory, request, tmp_path,
                                                          topic_name, size_mib, reserve_mib):
    """The WAL budget is half the filesystem less the disk cache (a quarter of it); produce is
    refused while free space is below the reserve (5%, at least 8 MiB), before the disk is
    actually full, and accepted again as soon as free space is back above it."""
    broker = _tmpfs_broker(broker_factory, request, tmp_path, f"{size_mib}m")
    broker.start()
    total = size_mib * MIB
    line = wal_disk_line(broker)
    cache = total // 4
    assert line["filesystem"] == total, line
    assert line["reserve"] == reserve_mib * MIB, f"reserve {line['reserve']}, wanted {reserve_mib} MiB"
    assert line["budget"] == (total - cache) // 2, \
        f"WAL budget {line['budget']}, wanted (filesystem - cache {cache}) / 2 = {(total - cache) // 2}"
    assert f"disk cache shrunk to a quarter of its filesystem asked=1073741824 fitting={cache}" \
        in broker.log_path.read_text(errors="replace")

    data = broker.data_dir
    filler = data / "filler.bin"
    create_topic(broker.bootstrap, topic_name, partitions=1)
    probe = Probe(broker.bootstrap)
    err, off = probe.produce(topic_name)
    assert err is None, f"produce on an empty disk failed: {err}"

    # 2 MiB below the reserve: refused, though the disk has room.
    fill_leaving(data, filler, (reserve_mib - 2) * MIB)
    err = probe.wait_refused(topic_name, timeout=2.0)
    assert err.code() == KafkaError.KAFKA_STORAGE_ERROR, f"below the reserve: {err}"
    assert free_bytes(data) > (reserve_mib - 3) * MIB, "the refused records used the disk"
    assert_alive(broker, "with free space below the reserve", disk_full=True)

    # 4 MiB above the reserve: accepted again, within the disk check's period (plus slack).
    fill_leaving(data, filler, (reserve_mib + 4) * MIB)
    took = probe.wait_accepted(topic_name, timeout=2.0)
    err, off2 = probe.produce(topic_name)
    assert err is None and off2 > off, f"above the reserve: {err}, offset {off2} after {off}"
    print(f"\n{size_mib} MiB: {line}; accepted again {took:.2f}s after space came back")
