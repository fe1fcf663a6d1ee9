"""localstack/cluster.sh: the three-broker cluster on one machine that README's "Run a cluster"
tells people to start. Run here on ports and in a directory of the test's own, against the
module's LocalStack (AWS_ENDPOINT_URL) instead of a second one; driven with confluent-kafka at
acks=all, through up, status, a killed broker that up starts again, down and down --wipe.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from conftest import REPO_ROOT
from kafkautil import confluent_admin, confluent_consumer, confluent_producer, produce_confluent

SCRIPT = REPO_ROOT / "localstack" / "cluster.sh"
# cluster.sh's ports relative to SEDIMENT_CLUSTER_PORT_BASE (LocalStack's, +30, is not used:
# the module's LocalStack serves S3).
OFFSETS = [1, 2, 3, 11, 12, 13, 21, 22, 23, 24, 25, 26]


def _free_port_base() -> int:
    """A base whose cluster ports are all free on 127.0.0.1 right now."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 50)
        socks = []
        try:
            for off in OFFSETS:
                s = socket.socket()
                s.bind(("127.0.0.1", base + off))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.fail("no free block of ports for the cluster", pytrace=False)


class LocalCluster:
    def __init__(self, workdir: Path, endpoint: str, bucket: str):
        self.dir = workdir / "cluster"
        self.base = _free_port_base()
        self.bucket, self.prefix, self.endpoint = bucket, f"lc-{uuid.uuid4().hex[:8]}", endpoint
        # Only the settings given here: none of the caller's SEDIMENT_* (SEDIMENT_BIN stays).
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SEDIMENT_", "AWS_")) or k == "SEDIMENT_BIN"}
        self.env.update(SEDIMENT_CLUSTER_DIR=str(self.dir), SEDIMENT_CLUSTER_PORT_BASE=str(self.base),
                        SEDIMENT_CLUSTER_BUCKET=bucket, SEDIMENT_CLUSTER_PREFIX=self.prefix,
                        AWS_ENDPOINT_URL=endpoint)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.base + i}" for i in (1, 2, 3))

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def pid(self, name: str) -> int | None:
        try:
            return int((self.dir / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None

    def keys(self) -> list[str]:
        url = f"{self.endpoint}/{self.bucket}?list-type=2&prefix={self.prefix}/"
        with urllib.request.urlopen(url, timeout=10) as r:
            return re.findall(r"<Key>([^<]+)</Key>", r.read().decode())

    def kill_leftovers(self) -> None:
        for name in ("broker1", "broker2", "broker3", "etcd1", "etcd2", "etcd3"):
            pid = self.pid(name)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


@pytest.fixture
def local_cluster(localstack, tmp_path):
    endpoint, bucket = localstack
    c = LocalCluster(tmp_path, endpoint, bucket)
    yield c
    if c.dir.exists():
        c.run("down", "--wipe", timeout=90)
        c.kill_leftovers()


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie is gone for our purposes (its parent, the script, has exited).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _status_settles(c: LocalCluster) -> str:
    """`status` until it exits 0 with every partition in sync; returns its output."""
    deadline, out = time.monotonic() + 30, ""
    while time.monotonic() < deadline:
        cp = c.run("status", timeout=30)
        out = cp.stdout + cp.stderr
        if cp.returncode == 0 and "under-replicated partitions: 0" in out:
            return out
        time.sleep(0.5)
    pytest.fail(f"status did not settle:\n{out}", pytrace=False)


def _produce_and_read(c: LocalCluster, topic: str, n: int, tag: str) -> None:
    values = [f"{tag}-{i}".encode() for i in range(n)]
    delivered = produce_confluent(confluent_producer(c.bootstrap, **{"enable.idempotence": True}),
                                  topic, [{"key": v, "value": v} for v in values])
    assert [d.error for d in delivered if d.error is not None] == []
    consumer = confluent_consumer(c.bootstrap, **{"group.id": f"g-{tag}", "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        seen: set[bytes] = set()
        deadline = time.monotonic() + 30
        while not set(values) <= seen and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=500, timeout=0.5):
                assert m.error() is None, m.error()
                seen.add(m.value())
        assert set(values) <= seen, f"read back {len(set(values) & seen)} of {n} records"
    finally:
        consumer.close()


@pytest.mark.timeout(180)
def test_up_status_restart_down(local_cluster: LocalCluster):
    c = local_cluster
    started = time.monotonic()
    up = c.run("up")
    took = time.monotonic() - started
    assert up.returncode == 0, f"up failed:\n{up.stdout}\n{up.stderr}"
    m = re.search(r"up in ([0-9.]+) s", up.stderr)
    assert m, up.stderr
    print(f"cluster.sh up took {took:.1f} s (the script says {m.group(1)} s)")
    # What it prints: the bootstrap list, the etcd endpoints, and DuckDB pointed at the bucket.
    assert f"bootstrap:  {c.bootstrap}" in up.stdout
    etcd = ",".join(f"http://127.0.0.1:{c.base + off}" for off in (21, 23, 25))
    assert f"etcd:       {etcd}" in up.stdout
    host = c.endpoint.split("://", 1)[1]
    assert f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false" in up.stdout
    assert f"read_parquet('s3://{c.bucket}/{c.prefix}/topics/orders/**/*.parquet'" in up.stdout
    # The brokers' start-up write check went to the bucket given.
    assert f"{c.prefix}/_sediment/probe" in c.keys()

    again = c.run("up")
    assert again.returncode == 0 and "already running" in again.stderr, again.stderr

    topic = f"lc-{uuid.uuid4().hex[:8]}"
    admin = confluent_admin(c.bootstrap)
    fut = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)],
                              request_timeout=15)
    fut[topic].result(timeout=20)
    del admin, fut
    _produce_and_read(c, topic, 200, "first")
    status = _status_settles(c)
    assert ": 3 broker(s), " in status, status
    for i in (1, 2, 3):
        assert re.search(rf"broker{i}:  pid \d+, Kafka 127.0.0.1:{c.base + i}, .*ready: ready", status), status
        assert re.search(rf"etcd{i}:    pid \d+, .*\"health\":\"true\"", status), status

    # A killed broker: status says so (and fails), up starts it again with its data.
    victim = c.pid("broker2")
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(victim) and time.monotonic() < deadline:
        time.sleep(0.1)
    down_one = c.run("status", timeout=30)
    assert down_one.returncode == 1 and "broker2:  NOT running" in down_one.stdout, down_one.stdout
    back = c.run("up")
    assert back.returncode == 0 and "starting again: broker2" in back.stderr, back.stderr
    _status_settles(c)
    _produce_and_read(c, topic, 100, "second")
    # Every record of both rounds is there: the high watermarks add up.
    consumer = confluent_consumer(c.bootstrap)
    try:
        total = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                                   cached=False)[1] for p in range(3))
    finally:
        consumer.close()
    assert total == 300

    pids = [c.pid(n) for n in ("broker1", "broker2", "broker3", "etcd1", "etcd2", "etcd3")]
    down = c.run("down", timeout=90)
    assert down.returncode == 0, f"{down.stdout}\n{down.stderr}"
    assert not [p for p in pids if _alive(p)], "processes left running after down"
    assert not list(c.dir.glob("*.pid")), list(c.dir.glob("*.pid"))
    for name in ("broker1", "etcd1"):
        assert (c.dir / name).is_dir(), f"down (without --wipe) deleted {name}'s data"
    after = c.run("status", timeout=30)
    assert after.returncode == 1 and after.stdout.count("NOT running") == 6, after.stdout

    # --wipe: the directory, and (the S3 server keeps running) the archive under the prefix.
    wipe = c.run("down", "--wipe", timeout=90)
    assert wipe.returncode == 0, f"{wipe.stdout}\n{wipe.stderr}"
    assert not c.dir.exists()
    assert c.keys() == []


def test_up_refuses_ports_in_use(local_cluster: LocalCluster):
    c = local_cluster
    holder = socket.socket()
    holder.bind(("127.0.0.1", c.base + 2))
    holder.listen()
    try:
        cp = c.run("up", timeout=60)
    finally:
        holder.close()
    assert cp.returncode == 1, cp.stderr
    assert f"{c.base + 2} (broker 2 Kafka)" in cp.stderr and "in use" in cp.stderr, cp.stderr
    assert "SEDIMENT_CLUSTER_PORT_BASE" in cp.stderr
    # Nothing was started.
    assert not c.dir.exists() or not list(c.dir.glob("*.pid"))
