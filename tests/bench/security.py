"""Security benchmarks: produce throughput over TLS against plaintext, and SCRAM logins per second.

Starts one broker with a PLAINTEXT and an SSL listener and a SASL_SSL and a SASL_PLAINTEXT one
(certificates made by tests/integration/tlskit.py), then:

1. runs `sediment bench` against the PLAINTEXT listener and the SSL listener, alternating
   (plaintext, TLS, plaintext, TLS, ...) --rounds times on fresh topics, and reports each
   run and the TLS/plaintext ratio of the medians;
   The broker archives nothing during these runs (huge segment.bytes and segment.ms, a WAL
   budget above what the runs write), so each run measures produce alone;
2. opens --logins connections, each doing a full SCRAM-SHA-512 exchange (SaslHandshake v1,
   two SaslAuthenticate rounds, the server signature checked) and a Metadata request, from
   --threads threads, and reports logins per second. The client caches the salted password
   (PBKDF2 with the stored salt and iterations) after the first login, as a busy client pool
   would not, so the figure is the broker's cost, not Python's PBKDF2.

    SEDIMENT_BIN=target/release/sediment .venv/bin/python tests/bench/security.py
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import itertools
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from conftest import Broker, _pick_free_ports, sediment_binary  # noqa: E402
import rawkafka  # noqa: E402
import tlskit  # noqa: E402
from kafka.protocol.metadata import MetadataRequest  # noqa: E402
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest  # noqa: E402

USER, PASSWORD = "bench", "bench-password"


def run_bench(binary: Path, bootstrap: str, extra: list[str], records: int, topic: str) -> float:
    cp = subprocess.run(
        [str(binary), "bench", "-b", bootstrap, "--records", str(records), "--topic", topic,
         "--partitions", "3", "--no-consume", *extra],
        capture_output=True, text=True, timeout=900)
    if cp.returncode != 0:
        raise SystemExit(f"sediment bench failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr[-3000:]}")
    out = cp.stdout
    m = re.search(r"produce[^\n]*?([0-9.]+) MiB/s", out)
    assert m, out
    return float(m.group(1))


class Login:
    """A SCRAM-SHA-512 client that caches salted passwords by (salt, iterations)."""

    cache: dict[tuple[bytes, int], bytes] = {}
    lock = threading.Lock()

    def __init__(self) -> None:
        self.nonce = base64.b64encode(os.urandom(18)).decode()

    def run(self, conn: rawkafka.RawConn) -> None:
        hs = conn.call(SaslHandshakeRequest(mechanism="SCRAM-SHA-512"), 1)
        assert hs.error_code == 0, hs
        bare = f"n={USER},r={self.nonce}"
        first = conn.call(SaslAuthenticateRequest(auth_bytes=f"n,,{bare}".encode()), 1)
        assert first.error_code == 0, first
        sf = first.auth_bytes.decode()
        attrs = dict(a.split("=", 1) for a in sf.split(","))
        salt, iters = base64.b64decode(attrs["s"]), int(attrs["i"])
        with Login.lock:
            salted = Login.cache.get((salt, iters))
        if salted is None:
            salted = hashlib.pbkdf2_hmac("sha512", PASSWORD.encode(), salt, iters)
            with Login.lock:
                Login.cache[(salt, iters)] = salted
        without_proof = f"c=biws,r={attrs['r']}"
        auth = f"{bare},{sf},{without_proof}".encode()
        client_key = hmac.new(salted, b"Client Key", "sha512").digest()
        stored = hashlib.sha512(client_key).digest()
        sig = hmac.new(stored, auth, "sha512").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        final = conn.call(SaslAuthenticateRequest(
            auth_bytes=f"{without_proof},p={base64.b64encode(proof).decode()}".encode()), 1)
        assert final.error_code == 0, final
        server_key = hmac.new(salted, b"Server Key", "sha512").digest()
        want = hmac.new(server_key, auth, "sha512").digest()
        got = base64.b64decode(final.auth_bytes.decode()[2:])
        assert hmac.compare_digest(want, got), "server signature"


class Conn(rawkafka.RawConn):
    """rawkafka's connection, over TLS when given a context."""

    def __init__(self, port: int, ctx: ssl.SSLContext | None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock
        self.client_id = "sediment-bench-sasl"
        self.timeout = 10.0
        self._corr = itertools.count(1)


def connect(port: int, ctx: ssl.SSLContext | None) -> rawkafka.RawConn:
    return Conn(port, ctx)


def logins(port: int, ctx: ssl.SSLContext | None, total: int, threads: int) -> float:
    left = [total]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                if left[0] == 0 or errors:
                    return
                left[0] -= 1
            try:
                conn = connect(port, ctx)
                try:
                    Login().run(conn)
                    md = conn.call(MetadataRequest(topics=None, allow_auto_topic_creation=False), 1)
                    assert md.brokers, md
                finally:
                    conn.sock.close()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    began = time.monotonic()
    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return total / (time.monotonic() - began)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--logins", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--tmp", default=None, help="directory for the broker's data (e.g. /dev/shm "
                    "to take the disk out and see TLS's CPU cost alone)")
    ap.add_argument("--acks", default="all", help="all or 1 (acks=1 shows TLS's CPU cost "
                    "without waiting on fdatasync)")
    a = ap.parse_args()
    binary = sediment_binary()
    with tempfile.TemporaryDirectory(prefix="sediment-secbench-", dir=a.tmp) as tmp:
        pki = tlskit.make_pki(Path(tmp) / "pki")
        ssl_port, sasl_ssl_port, sasl_port = _pick_free_ports(3)
        b = Broker(binary, Path(tmp) / "broker", extra_args=[
            "--listener", f"SSL://127.0.0.1:{ssl_port}",
            "--listener", f"SASL_SSL://127.0.0.1:{sasl_ssl_port}",
            "--listener", f"SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
            "--ssl-cert-file", str(pki.server_cert), "--ssl-key-file", str(pki.server_key),
            "--max-failed-authentications-per-minute", "100000",
            # Nothing is archived during the runs: the uploader would share the 2 vCPUs with
            # whichever run it overlaps and blur the TLS/plaintext comparison.
            "--segment-bytes", str(64 << 30), "--segment-ms", str(24 * 3600 * 1000),
            "--wal-budget-bytes", str(40 << 30),
        ])
        b.start()
        try:
            subprocess.run([str(binary), "users", "create", USER, "--mechanism", "SCRAM-SHA-512",
                            "--password", PASSWORD, "-b", b.bootstrap], check=True,
                           capture_output=True, timeout=60)
            plain, tls = [], []
            for r in range(a.rounds):
                acks = ["--acks", a.acks]
                plain.append(run_bench(binary, b.bootstrap, acks, a.records, f"plain-{r}"))
                tls.append(run_bench(binary, f"127.0.0.1:{ssl_port}",
                                     [*acks, "--security-protocol", "SSL",
                                      "--ssl-ca-file", str(pki.ca)],
                                     a.records, f"tls-{r}"))
                print(f"round {r + 1}: plaintext {plain[-1]:.1f} MiB/s, TLS {tls[-1]:.1f} MiB/s",
                      flush=True)
            # Each round's pair ran back to back: the median of the pairs' ratios is robust to
            # the disk changing speed between rounds, which the ratio of medians is not.
            ratios = [t / p for p, t in zip(plain, tls)]
            print(f"acks={a.acks} produce, medians: plaintext {statistics.median(plain):.1f} MiB/s, "
                  f"TLS {statistics.median(tls):.1f} MiB/s; TLS/plaintext per round "
                  f"{', '.join(f'{r:.0%}' for r in ratios)}: median {statistics.median(ratios):.0%}")
            ctx = ssl.create_default_context(cafile=str(pki.ca))
            for name, port, c in (("SASL_PLAINTEXT", sasl_port, None),
                                  ("SASL_SSL", sasl_ssl_port, ctx)):
                rate = logins(port, c, a.logins, a.threads)
                print(f"SCRAM-SHA-512 logins over {name}: {a.logins} connections, "
                      f"{a.threads} threads: {rate:.0f} logins/s")
        finally:
            b.stop()


if __name__ == "__main__":
    main()
