"""A broker in cluster mode on an etcd that requires TLS with client certificates and has
authentication on: it connects with --etcd-ca-file / --etcd-cert-file / --etcd-key-file and
--etcd-username / --etcd-password-file, serves, and refuses to start, saying why, with a
wrong password or without the CA. Certificates are made by the test (openssl), nothing is
checked in."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import _pick_free_ports, sediment_binary
from kafkautil import create_topic, produce_confluent, confluent_producer, read_confluent


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)


class TlsEtcd:
    def __init__(self, d: Path):
        self.d = d
        self.client_port, self.peer_port = _pick_free_ports(2)
        self.endpoint = f"https://127.0.0.1:{self.client_port}"
        self.ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
        self.ctx.load_cert_chain(str(d / "client.pem"), str(d / "client.key"))
        self.proc = None

    def start(self) -> "TlsEtcd":
        binary = shutil.which("etcd")
        if binary is None:
            pytest.fail("etcd is not on PATH: apt-get install etcd-server", pytrace=False)
        d = self.d
        self.log = open(d / "etcd.log", "ab")
        self.proc = subprocess.Popen(
            [binary, "--name", "tls", "--data-dir", str(d / "etcd-data"),
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
             "--initial-cluster", f"tls=http://127.0.0.1:{self.peer_port}",
             "--cert-file", str(d / "server.pem"), "--key-file", str(d / "server.key"),
             "--trusted-ca-file", str(d / "ca.pem"), "--client-cert-auth"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.endpoint + "/health", context=self.ctx, timeout=1) as r:
                    if b'"true"' in r.read():
                        return self
            except OSError:
                time.sleep(0.1)
        pytest.fail("TLS etcd did not become healthy:\n" + (d / "etcd.log").read_text()[-3000:],
                    pytrace=False)

    def call(self, path: str, body: dict, token: str | None = None) -> dict:
        req = urllib.request.Request(self.endpoint + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": token} if token else {})})
        with urllib.request.urlopen(req, context=self.ctx, timeout=5) as r:
            return json.loads(r.read() or b"{}")

    def enable_auth(self, password: str) -> None:
        """etcd's `user add root; role add root; user grant-role root root; auth enable`."""
        self.call("/v3/auth/user/add", {"name": "root", "password": password})
        self.call("/v3/auth/role/add", {"name": "root"})
        self.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
        self.call("/v3/auth/enable", {})
        # Now anonymous requests are refused.
        with pytest.raises(urllib.error.HTTPError):
            self.call("/v3/kv/range", {"key": "eA=="})

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
def tls_etcd(tmp_path):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates", pytrace=False)
    make_certs(tmp_path)
    e = TlsEtcd(tmp_path).start()
    e.enable_auth("s3cret-pass")
    (tmp_path / "password").write_text("s3cret-pass\n")
    (tmp_path / "wrong").write_text("not-the-password\n")
    yield e
    e.stop()


def etcd_flags(e: TlsEtcd, password_file: str = "password", ca: bool = True) -> list[str]:
    d = e.d
    flags = ["--etcd-endpoints", e.endpoint, "--etcd-cert-file", str(d / "client.pem"),
             "--etcd-key-file", str(d / "client.key"), "--etcd-username", "root",
             "--etcd-password-file", str(d / password_file)]
    if ca:
        flags += ["--etcd-ca-file", str(d / "ca.pem")]
    return flags


def test_a_broker_serves_on_an_etcd_with_tls_client_certificates_and_auth(tls_etcd, broker_factory,
                                                                       topic_name):
    b = broker_factory(extra_args=etcd_flags(tls_etcd))  # broker id 0, as the helpers expect
    create_topic(b.bootstrap, topic_name, partitions=2)
    d = produce_confluent(confluent_producer(b.bootstrap, acks="all"), topic_name,
                          [{"key": f"k{i}".encode(), "value": b"v"} for i in range(20)])
    assert all(x.error is None for x in d), d
    got = read_confluent(b.bootstrap, topic_name, range(2))
    assert sum(len(v) for v in got.values()) == 20
    # Restarted, it finds its topic again in etcd (metadata went there, not to a local file).
    b.stop()
    b.start()
    got = read_confluent(b.bootstrap, topic_name, range(2))
    assert sum(len(v) for v in got.values()) == 20


def start_fails(args: list[str], tmp: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEDIMENT_")}
    port, http = _pick_free_ports(2)
    cp = subprocess.run([str(sediment_binary()), "serve", "--broker-id", "1", "--data-dir", str(tmp),
                         "--kafka-addr", f"127.0.0.1:{port}", "--http-addr", f"127.0.0.1:{http}", *args],
                        capture_output=True, text=True, timeout=60, env=env)
    assert cp.returncode != 0, cp.stderr[-2000:]
    return cp.stderr


def test_a_wrong_password_or_an_unknown_ca_stops_the_start_with_a_clear_error(tls_etcd, tmp_path):
    err = start_fails(etcd_flags(tls_etcd, password_file="wrong"), tmp_path / "a")
    assert "connecting to etcd" in err and "authentication failed" in err.lower(), err[-2000:]
    err = start_fails(etcd_flags(tls_etcd, ca=False), tmp_path / "b")
    assert "connecting to etcd" in err, err[-2000:]
    err = start_fails(["--etcd-endpoints", "http://127.0.0.1:1", "--etcd-ca-file",
                       str(tls_etcd.d / "ca.pem")], tmp_path / "c")
    assert "https://" in err, err[-2000:]
    err = start_fails(["--etcd-endpoints", tls_etcd.endpoint, "--etcd-username", "root"], tmp_path / "d")
    assert "--etcd-username and --etcd-password-file go together" in err, err[-2000:]
