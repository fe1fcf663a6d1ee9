"""A real etcd and several real `sediment` brokers on one machine, for the cluster tests.

`Etcd` runs Debian's etcd (apt `etcd-server`, installed by tests/run.sh) on free loopback
ports with its own data directory. `Cluster` starts brokers 1..n in cluster mode against it,
each with its own data directory and ports, all sharing one file:// object store (the brokers
are on one machine) and a key prefix unique to the test, so tests never see each other's
metadata.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import Broker, _http_get, _pick_free_ports, sediment_binary
from kafkautil import confluent_admin, wait_until


class Etcd:
    """One etcd process on 127.0.0.1 (alone, or a member named `name` of `initial_cluster`)."""

    def __init__(self, workdir: Path, name: str = "it", ports: tuple[int, int] | None = None,
                 initial_cluster: str | None = None):
        self.workdir = Path(workdir)
        self.name = name
        self.data_dir = self.workdir / f"etcd-data-{name}"
        self.log_path = self.workdir / f"etcd-{name}.log"
        self.client_port, self.peer_port = ports or _pick_free_ports(2)
        self.initial_cluster = initial_cluster or f"{name}=http://127.0.0.1:{self.peer_port}"
        self.token = f"sediment-it-{self.initial_cluster.split(':')[-1]}"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 20.0) -> "Etcd":
        binary = shutil.which("etcd")
        if binary is None:
            pytest.fail("etcd is not on PATH: apt-get install etcd-server (tests/run.sh does)",
                        pytrace=False)
        self._spawn(binary)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"etcd exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}",
                            pytrace=False)
            try:
                status, body = _http_get(self.endpoint + "/health", timeout=1.0)
                if status == 200 and '"true"' in body:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"etcd did not become healthy:\n{self.log_path.read_text()[-3000:]}", pytrace=False)

    def start_async(self) -> None:
        """Start without waiting (members of a new etcd cluster wait for each other)."""
        binary = shutil.which("etcd")
        if binary is None:
            pytest.fail("etcd is not on PATH: apt-get install etcd-server", pytrace=False)
        self._spawn(binary)

    def _spawn(self, binary: str) -> None:
        cmd = [binary, "--name", self.name, "--data-dir", str(self.data_dir),
               "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
               "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
               "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
               "--initial-cluster", self.initial_cluster,
               "--initial-cluster-token", self.token]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.kill9()


class EtcdCluster:
    """Three etcd members on 127.0.0.1, one Raft cluster."""

    def __init__(self, workdir: Path, n: int = 3):
        ports = [tuple(_pick_free_ports(2)) for _ in range(n)]
        initial = ",".join(f"m{i}=http://127.0.0.1:{p[1]}" for i, p in enumerate(ports))
        self.members = [Etcd(workdir, f"m{i}", p, initial) for i, p in enumerate(ports)]

    @property
    def endpoint(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def start(self, timeout: float = 30.0) -> "EtcdCluster":
        for m in self.members:
            m.start_async()
        def healthy():
            try:
                return all(_http_get(m.endpoint + "/health", timeout=1.0)[0] == 200
                           for m in self.members)
            except OSError:
                return False
        wait_until(healthy, timeout, what="every etcd member healthy")
        return self

    def close(self) -> None:
        for m in self.members:
            m.close()


class Cluster:
    """Brokers 1..n of one cluster (see the module docstring)."""

    def __init__(self, workdir: Path, etcd: Etcd, n: int, extra_args: list[str] | None = None):
        self.workdir = Path(workdir)
        self.etcd = etcd
        self.prefix = f"/sediment-it-{uuid.uuid4().hex[:8]}"
        self.objects = self.workdir / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.brokers: dict[int, Broker] = {}
        self.paused: set[int] = set()
        for i in range(1, n + 1):
            args = ["--etcd-endpoints", etcd.endpoint, "--etcd-prefix", self.prefix,
                    "--object-store", f"file://{self.objects}", *(extra_args or [])]
            self.brokers[i] = Broker(sediment_binary(), self.workdir / f"broker{i}",
                                     name=f"broker{i}", broker_id=i, extra_args=args)

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values())

    def running(self) -> list[Broker]:
        """Brokers whose process runs and is not paused (those answer requests)."""
        return [b for i, b in self.brokers.items() if b.is_running() and i not in self.paused]

    def pause(self, i: int) -> None:
        """SIGSTOP broker `i` (requests to it hang until `resume`)."""
        self.brokers[i].proc.send_signal(signal.SIGSTOP)
        self.paused.add(i)

    def resume(self, i: int) -> None:
        self.brokers[i].proc.send_signal(signal.SIGCONT)
        self.paused.discard(i)

    def bootstrap_of_running(self) -> str:
        return ",".join(b.bootstrap for b in self.running())

    def start(self) -> "Cluster":
        for b in self.brokers.values():
            b.start()
        self.wait_brokers(len(self.brokers))
        return self

    def metadata(self, via: Broker | None = None, topic: str | None = None):
        """Metadata as confluent-kafka's AdminClient sees it, from one broker."""
        via = via or self.running()[0]
        admin = confluent_admin(via.bootstrap)
        return admin.list_topics(topic=topic, timeout=10)

    def wait_brokers(self, count: int, timeout: float = 20.0) -> None:
        """Until every running broker's Metadata lists `count` brokers."""
        def ok():
            return all(len(self.metadata(b).brokers) == count for b in self.running())
        wait_until(ok, timeout, what=f"{count} brokers in every broker's metadata")

    def partition(self, topic: str, partition: int = 0, via: Broker | None = None):
        """(leader, replicas, isrs) of one partition, from Metadata."""
        t = self.metadata(via, topic).topics[topic]
        p = t.partitions[partition]
        return p.leader, list(p.replicas), list(p.isrs)

    def wait_leader(self, topic: str, partition: int = 0, not_broker: int | None = None,
                    timeout: float = 20.0) -> int:
        """Until the partition has a live leader (other than `not_broker`); returns its id."""
        def ok():
            try:
                leader, _, _ = self.partition(topic, partition)
            except Exception:  # noqa: BLE001 (a broker that just died, metadata mid-change)
                return None
            alive = (leader in self.brokers and self.brokers[leader].is_running()
                     and leader not in self.paused)
            return leader if leader >= 0 and alive and leader != not_broker else None
        return wait_until(ok, timeout, what=f"a live leader of {topic}/{partition}")

    def wait_isr(self, topic: str, partition: int, isr: set[int], timeout: float = 30.0) -> None:
        def ok():
            try:
                return set(self.partition(topic, partition)[2]) == isr
            except Exception:  # noqa: BLE001
                return False
        wait_until(ok, timeout, what=f"ISR of {topic}/{partition} to be {sorted(isr)}")

    def close(self) -> None:
        for b in self.brokers.values():
            b.close()


@pytest.fixture
def cluster_factory(request, tmp_path_factory):
    """Returns `make(n=3, extra_args=None, start=True, etcd_members=1) -> Cluster`, with its own
    etcd (one process, or a cluster of `etcd_members`)."""
    made: list[Cluster] = []
    etcds: list[Etcd] = []

    def make(n: int = 3, extra_args: list[str] | None = None, start: bool = True,
             etcd_members: int = 1) -> Cluster:
        workdir = tmp_path_factory.mktemp(f"cluster-{len(made)}")
        etcd = Etcd(workdir).start() if etcd_members == 1 else EtcdCluster(workdir, etcd_members).start()
        etcds.append(etcd)
        c = Cluster(workdir, etcd, n, extra_args)
        made.append(c)
        # The failure report shows these brokers' log tails (conftest's makereport hook).
        request.node._sediment_brokers = [b for m in made for b in m.brokers.values()]
        if start:
            c.start()
        return c

    yield make
    for c in made:
        c.close()
    for e in etcds:
        e.close()
