"""Pytest fixtures for the Sediment integration tests.

Every test gets its own broker process, started from the binary named by
$SEDIMENT_BIN (default: <repo>/target/debug/sediment), on free loopback ports
and in a fresh temporary data directory. The broker's stdout/stderr go to a
log file next to the data directory; when a test fails, the tail of that log
is attached to the failure report.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

import clientreport
from clientreport import (  # noqa: F401  (hooks: tests by client used, see clientreport)
    pytest_runtest_logreport, pytest_runtest_protocol, pytest_terminal_summary)

# Before any test module imports a client: record which clients each test uses.
clientreport.install()

REPO_ROOT = Path(__file__).resolve().parents[2]
HEALTH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 80


def sediment_binary() -> Path:
    """The broker binary under test: $SEDIMENT_BIN, else <repo>/target/debug/sediment."""
    env = os.environ.get("SEDIMENT_BIN")
    return Path(env) if env else REPO_ROOT / "target" / "debug" / "sediment"


def _pick_free_ports(count: int) -> list[int]:
    """Ask the kernel for `count` distinct free TCP ports on 127.0.0.1.

    All sockets are held open until every port is chosen, so the ports are
    distinct; they are closed before the broker binds them (a small race that
    is acceptable on a test machine).
    """
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET `url`; returns (status, body). Raises OSError if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:  # a non-2xx answer is still an answer
        return e.code, e.read().decode("utf-8", "replace")


class Broker:
    """One Sediment broker process with a fixed data dir and fixed ports.

    `start()` may be called again after `stop()` or `kill9()`: the broker comes
    back on the same ports and the same data directory.
    """

    def __init__(self, binary: Path, workdir: Path, name: str = "broker",
                 auto_create_topics: bool | None = None,
                 num_partitions: int | None = None,
                 max_request_bytes: int | None = None,
                 message_max_bytes: int | None = None,
                 extra_args: list[str] | None = None,
                 advertised_addr: str | None = None,
                 broker_id: int = 0):
        self.binary = Path(binary)
        self.broker_id = broker_id
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.log_path = self.workdir / "broker.log"
        self.port, self.http_port = _pick_free_ports(2)
        # host:port given to clients in Metadata (default: the Kafka listener itself);
        # a test that puts a proxy in front of the broker advertises the proxy.
        self.advertised_addr = advertised_addr
        self.options: list[str] = []
        if auto_create_topics is not None:
            self.options += ["--auto-create-topics", "true" if auto_create_topics else "false"]
        if num_partitions is not None:
            self.options += ["--num-partitions", str(num_partitions)]
        if max_request_bytes is not None:
            self.options += ["--max-request-bytes", str(max_request_bytes)]
        if message_max_bytes is not None:
            self.options += ["--message-max-bytes", str(message_max_bytes)]
        self.options += list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.tail_shown = False  # the log tail is already in a failure message

    # ----------------------------------------------------------------- info
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        return [
            str(self.binary), "serve",
            "--kafka-addr", self.bootstrap,
            "--advertised-addr", self.advertised_addr or self.bootstrap,
            "--data-dir", str(self.data_dir),
            "--http-addr", f"127.0.0.1:{self.http_port}",
            "--broker-id", str(self.broker_id),
            *self.options,
        ]

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError as e:
            return f"(no broker log at {self.log_path}: {e})"
        text = data.decode("utf-8", "replace").splitlines()
        return "\n".join(text[-lines:])

    def health(self) -> int | None:
        """Status code of GET /health, or None if nothing answers."""
        try:
            return _http_get(self.http_base + "/health")[0]
        except OSError:
            return None

    def metrics(self) -> str:
        status, body = _http_get(self.http_base + "/metrics", timeout=5.0)
        assert status == 200, f"GET /metrics answered {status}: {body[:500]}"
        return body

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout: float = HEALTH_TIMEOUT_S) -> "Broker":
        """Start the process and wait until /health answers 200."""
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running (pid {self.proc.pid})")
        if not self.binary.is_file():
            pytest.fail(
                f"Sediment binary not found at {self.binary}. Build it with "
                f"`cargo build --workspace --bins` or set SEDIMENT_BIN.", pytrace=False)
        # The broker reads SEDIMENT_* settings from the environment; keep the
        # caller's out so that only the flags above configure it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEDIMENT_")}
        env.setdefault("RUST_LOG", "info")
        env.setdefault("NO_COLOR", "1")  # plain log files
        env.setdefault("RUST_BACKTRACE", "1")
        self.starts += 1
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, env=env, start_new_session=True)
        self._wait_healthy(timeout)
        return self

    def _fail_with_log(self, message: str) -> None:
        self.tail_shown = True
        pytest.fail(f"{message}\n--- {self.name} log tail ({self.log_path}) ---\n{self.log_tail()}",
                    pytrace=False)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self._fail_with_log(f"{self.name} exited with code {code} before /health answered 200")
            last = self.health()
            if last == 200:
                break
            time.sleep(0.1)
        else:
            self._force_kill()
            self._fail_with_log(f"{self.name} did not answer 200 on {self.http_base}/health within "
                                f"{timeout:.0f}s (last answer: {last})")
        # /health is 200 "when the broker is serving": the Kafka port must accept now.
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=2.0).close()
        except OSError as e:
            self._fail_with_log(f"{self.name}: /health answered 200 but the Kafka port "
                                f"{self.bootstrap} does not accept connections: {e}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait for exit, return the exit code (negative = killed by signal).

        Fails the test if the broker does not exit within `timeout` seconds
        (it is then killed with SIGKILL so nothing is left behind).
        """
        assert self.proc is not None, "stop() before start()"
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._force_kill()
            self._fail_with_log(f"{self.name} did not exit within {timeout:.0f}s of SIGTERM")

    def kill9(self) -> int:
        """SIGKILL the broker and reap it; returns the exit status (-9)."""
        assert self.proc is not None, "kill9() before start()"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=10)

    def restart(self, timeout: float = HEALTH_TIMEOUT_S) -> "Broker":
        code = self.stop()
        assert code == 0, f"{self.name} exited with {code} on SIGTERM"
        return self.start(timeout)

    def _force_kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def close(self) -> None:
        """Teardown: make sure the process is gone."""
        self._force_kill()


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture
def broker_factory(request, tmp_path_factory):
    """Returns `make(**options) -> Broker` that starts a new broker.

    Options are Broker's keyword arguments (auto_create_topics,
    num_partitions, max_request_bytes, message_max_bytes, extra_args,
    advertised_addr) plus
    `start=False` to get a broker that is not started yet.
    """
    brokers: list[Broker] = []
    request.node._sediment_brokers = brokers

    def make(start: bool = True, **options) -> Broker:
        workdir = tmp_path_factory.mktemp(f"sediment-{len(brokers)}")
        b = Broker(sediment_binary(), workdir, name=f"broker{len(brokers)}", **options)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make
    for b in brokers:
        b.close()


def free_port() -> int:
    """One free TCP port on 127.0.0.1 (closed again before the caller binds it)."""
    return _pick_free_ports(1)[0]


@pytest.fixture(scope="module")
def localstack():
    """(endpoint, bucket): an S3 server (LocalStack, no Docker) for the tests of one module.

    localstack/start.sh starts it on a free port (installing it into <repo>/.localstack the
    first time) and creates a fresh bucket; localstack/stop.sh stops it after the module.
    """
    port = free_port()
    env = {**os.environ, "LOCALSTACK_PORT": str(port),
           "LOCALSTACK_DIR": str(REPO_ROOT / ".localstack")}
    bucket = f"sediment-{uuid.uuid4().hex[:8]}"
    cp = subprocess.run(["bash", str(REPO_ROOT / "localstack" / "start.sh"), bucket], env=env,
                        capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, f"localstack did not start:\n{cp.stdout}\n{cp.stderr}"
    endpoint = cp.stdout.strip().splitlines()[-1]
    yield endpoint, bucket
    subprocess.run(["bash", str(REPO_ROOT / "localstack" / "stop.sh")], env=env, timeout=60)


def set_aws_env(monkeypatch, endpoint: str) -> None:
    """Point AWS-configured tools (the broker's s3:// object store) at `endpoint`."""
    for k, v in {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
                 "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A started broker with default options, fresh data dir, stopped at teardown."""
    return broker_factory()


@pytest.fixture
def new_topic(request):
    """Returns `make(prefix='t') -> str`: a topic name unique to this test and call."""
    base = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-")[:80]

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{base}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def topic_name(new_topic) -> str:
    """One unique topic name for the test."""
    return new_topic()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the tail of every broker log of a failed test to its report."""
    report = yield
    if report.failed:
        for b in getattr(item, "_sediment_brokers", []):
            if b.tail_shown:
                continue
            report.sections.append(
                (f"{b.name} log tail ({b.log_path}, pid {b.pid}, {b.starts} start(s))",
                 b.log_tail()))
    return report
