"""TLS listeners, mTLS, SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and SCRAM credentials.

Brokers here run the PLAINTEXT listener of the fixture (--kafka-addr) plus SSL, SASL_SSL
and SASL_PLAINTEXT listeners (--listener NAME://127.0.0.1:PORT), with certificates made by
tlskit for the module (nothing is checked in). Users are created with confluent-kafka's
AdminClient.alter_user_scram_credentials over the PLAINTEXT listener. Every client the suite
knows (confluent-kafka, kafka-python, kafkajs, kcat on two librdkafka versions) round-trips
records over the secured listeners; refusals are checked both as the client sees them and
on the wire, with a SCRAM client of our own (RFC 5802 / 7677) over raw SaslHandshake v1 +
SaslAuthenticate v1 requests.

Brokers that several tests share are module-scoped (startup is most of the cost); the main
one allows 100000 failed authentications a minute so that the failure tests cannot lock
127.0.0.1 out of the others. The rate limit has a broker of its own.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import itertools
import json
import logging
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)
from kafka.protocol.metadata import ApiVersionsRequest, MetadataRequest
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

import rawkafka
import tlskit
from clusterkit import cluster_factory  # noqa: F401  (fixture)
from conftest import Broker, _pick_free_ports, free_port, sediment_binary
from kafkautil import (confluent_producer, create_topic, kafka_error_of, kp_producer,
                       produce_confluent, produce_kp, read_confluent, read_kp, wait_until)
from test_kafkajs import node, run_node  # noqa: F401  (node is a fixture)
from test_kcat import kcat  # noqa: F401  (fixture: system and bundled librdkafka)

# Kafka error codes (org.apache.kafka.common.protocol.Errors)
UNSUPPORTED_SASL_MECHANISM = 33
ILLEGAL_SASL_STATE = 34
SASL_AUTHENTICATION_FAILED = 58
RESOURCE_NOT_FOUND = 91
UNACCEPTABLE_CREDENTIAL = 93

# The one message the broker gives for every refused login (spec: same for unknown user and
# wrong password).
AUTH_FAILED_MESSAGE = "Authentication failed: invalid credentials"
MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
CLIENTS = ["confluent", "kafka-python", "kafkajs"]

# Users of the main broker (created by the `users` fixture): name -> {mechanism: iterations}
PASSWORDS = {"alice": "alice-secret-256", "bob": "bob-secret-512", "carol": "carol-secret-both"}
CREDENTIALS = {
    "alice": {"SCRAM-SHA-256": 8192},
    "bob": {"SCRAM-SHA-512": 4096},
    "carol": {"SCRAM-SHA-256": 4096, "SCRAM-SHA-512": 16384},
}
# Who logs in with which mechanism. PLAIN is checked against the SCRAM credentials of either
# mechanism: alice only has SCRAM-SHA-256 ones, bob only SCRAM-SHA-512 ones.
LOGIN_FOR = {"SCRAM-SHA-256": "alice", "SCRAM-SHA-512": "bob", "PLAIN": "alice"}

CONNECT_TIMEOUT_S = 5.0


# ============================================================== SCRAM client (RFC 5802)


def _hmac(hash_name: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hash_name).digest()


def _saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def _attrs(message: str) -> dict[str, str]:
    out = {}
    for part in message.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


class ScramClient:
    """The client side of one SCRAM-SHA-256/512 exchange (no channel binding, as Kafka)."""

    HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}

    def __init__(self, mechanism: str, username: str, password: str, nonce: str | None = None):
        self.hash = self.HASHES[mechanism]
        self.username = username
        self.password = password.encode()
        self.nonce = nonce or secrets.token_urlsafe(18)
        self.first_bare = f"n={_saslname(username)},r={self.nonce}"
        self.server_nonce: str | None = None
        self.salt: bytes | None = None
        self.iterations: int | None = None
        self._server_signature: bytes | None = None

    def first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        sf = server_first.decode()
        a = _attrs(sf)
        assert "e" not in a, f"server-first-message is an error: {sf!r}"
        r, s, i = a.get("r"), a.get("s"), a.get("i")
        assert r and s and i, f"server-first-message lacks r, s or i: {sf!r}"
        assert r.startswith(self.nonce) and len(r) > len(self.nonce), (
            f"server nonce {r!r} does not extend the client nonce {self.nonce!r}")
        self.server_nonce, self.salt, self.iterations = r, base64.b64decode(s), int(i)
        salted = hashlib.pbkdf2_hmac(self.hash, self.password, self.salt, self.iterations)
        client_key = _hmac(self.hash, salted, b"Client Key")
        stored_key = hashlib.new(self.hash, client_key).digest()
        without_proof = f"c=biws,r={r}"
        auth_message = f"{self.first_bare},{sf},{without_proof}".encode()
        client_signature = _hmac(self.hash, stored_key, auth_message)
        proof = bytes(x ^ y for x, y in zip(client_key, client_signature))
        server_key = _hmac(self.hash, salted, b"Server Key")
        self._server_signature = _hmac(self.hash, server_key, auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> bool:
        """True if server-final-message carries the server signature we expect."""
        a = _attrs(server_final.decode())
        if "v" not in a or self._server_signature is None:
            return False
        return hmac.compare_digest(base64.b64decode(a["v"]), self._server_signature)


def scram_self_check() -> None:
    """Our SCRAM math against RFC 7677's SCRAM-SHA-256 example (user "user", "pencil")."""
    c = ScramClient("SCRAM-SHA-256", "user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert c.first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = c.final(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert final == (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="), final
    assert c.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    assert not c.verify(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    assert not c.verify(b"e=invalid-proof")


# ================================================================ raw SASL connection


class SaslConn(rawkafka.RawConn):
    """rawkafka.RawConn, optionally over TLS and from a chosen source address."""

    def __init__(self, bootstrap: str, tls: ssl.SSLContext | None = None,
                 source_ip: str | None = None, timeout: float = 10.0):
        host, port = bootstrap.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=timeout,
                                        source_address=(source_ip, 0) if source_ip else None)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.client_id = "sediment-it-sasl"
        self.timeout = timeout
        self._corr = itertools.count(1)

    def api_versions(self):
        return self.call(ApiVersionsRequest(), 0)

    def handshake(self, mechanism: str, version: int = 1):
        return self.call(SaslHandshakeRequest(mechanism=mechanism), version)

    def authenticate(self, auth_bytes: bytes, version: int = 1):
        return self.call(SaslAuthenticateRequest(auth_bytes=auth_bytes), version)

    def metadata(self):
        return self.call(MetadataRequest(topics=None, allow_auto_topic_creation=False), 1)

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True if the broker closes the connection (EOF, reset, TLS alert) within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
        except TimeoutError:
            return False
        except OSError:  # ConnectionResetError, ssl.SSLError (alert, EOF), ...
            return True
        return data == b""


def answered_or_closed(conn: SaslConn, request, version: int, timeout: float = 5.0) -> str:
    """Send one request: "closed" if the broker closes the connection instead of answering,
    "timeout" if nothing happens, else "answered: <response>"."""
    conn.sock.settimeout(timeout)
    conn.timeout = timeout
    try:
        resp = conn.call(request, version)
    except TimeoutError:
        return "timeout"
    except (OSError, struct.error, EOFError):  # ConnectionError is an OSError
        return "closed"
    return f"answered: {resp}"


@dataclass
class Login:
    error_code: int
    error_message: str | None
    step: int                      # which SaslAuthenticate answered last (1 or 2)
    elapsed_s: float               # time from that request to its answer
    session_lifetime_ms: int | None = None
    server_signature_ok: bool | None = None
    iterations: int | None = None


def sasl_login(conn: SaslConn, mechanism: str, user: str, password: str) -> Login:
    """SaslHandshake v1 + SaslAuthenticate v1 (one round for PLAIN, two for SCRAM)."""
    hs = conn.handshake(mechanism)
    assert hs.error_code == 0, f"SaslHandshake({mechanism}): error {hs.error_code}, {hs.mechanisms}"
    assert mechanism in hs.mechanisms, hs.mechanisms
    if mechanism == "PLAIN":
        t = time.monotonic()
        r = conn.authenticate(b"\0" + user.encode() + b"\0" + password.encode())
        return Login(r.error_code, r.error_message, 1, time.monotonic() - t,
                     getattr(r, "session_lifetime_ms", None))
    c = ScramClient(mechanism, user, password)
    t = time.monotonic()
    r1 = conn.authenticate(c.first())
    if r1.error_code != 0:
        return Login(r1.error_code, r1.error_message, 1, time.monotonic() - t)
    final = c.final(bytes(r1.auth_bytes))
    t = time.monotonic()
    r2 = conn.authenticate(final)
    elapsed = time.monotonic() - t
    if r2.error_code != 0:
        return Login(r2.error_code, r2.error_message, 2, elapsed, iterations=c.iterations)
    return Login(0, r2.error_message, 2, elapsed, getattr(r2, "session_lifetime_ms", None),
                 c.verify(bytes(r2.auth_bytes)), c.iterations)


def login_once(bootstrap: str, mechanism: str, user: str, password: str,
               tls: ssl.SSLContext | None = None, source_ip: str | None = None) -> tuple[Login, bool]:
    """(outcome, whether the broker then closed the connection (checked after a failure))."""
    with SaslConn(bootstrap, tls=tls, source_ip=source_ip) as c:
        login = sasl_login(c, mechanism, user, password)
        closed = c.closed_by_peer(5.0) if login.error_code != 0 else False
        return login, closed


def assert_login_ok(bootstrap: str, mechanism: str, user: str, password: str, **kw) -> Login:
    login, _ = login_once(bootstrap, mechanism, user, password, **kw)
    assert login.error_code == 0, f"{user} via {mechanism}: {login}"
    if mechanism != "PLAIN":
        assert login.server_signature_ok, f"{user} via {mechanism}: server signature wrong"
    return login


def assert_login_refused(bootstrap: str, mechanism: str, user: str, password: str, **kw) -> Login:
    login, closed = login_once(bootstrap, mechanism, user, password, **kw)
    assert login.error_code == SASL_AUTHENTICATION_FAILED, f"{user} via {mechanism}: {login}"
    assert login.error_message == AUTH_FAILED_MESSAGE, login
    assert closed, f"{user} via {mechanism}: connection still open after the refusal"
    return login


@dataclass
class Probe:
    answered: bool   # an ApiVersions answer came back over TLS
    timed_out: bool  # neither an answer nor a close/alert within the timeout
    detail: str


def tls_probe(bootstrap: str, ctx: ssl.SSLContext, timeout: float = CONNECT_TIMEOUT_S) -> Probe:
    """TLS handshake + ApiVersions v0 with `ctx`."""
    try:
        with SaslConn(bootstrap, tls=ctx, timeout=timeout) as c:
            r = c.api_versions()
            return Probe(r.error_code == 0, False, f"ApiVersions error {r.error_code}")
    except TimeoutError as e:
        return Probe(False, True, f"timeout: {e}")
    except (OSError, struct.error, EOFError) as e:
        return Probe(False, False, f"{type(e).__name__}: {e}")


def assert_refused(p: Probe, what: str) -> None:
    assert not p.answered, f"{what}: the broker answered ({p.detail})"
    assert not p.timed_out, f"{what}: the broker neither answered nor closed ({p.detail})"


# ================================================================ client configurations


@dataclass(frozen=True)
class Endpoint:
    """How to reach one listener: address, security protocol, TLS files, SASL login."""
    bootstrap: str
    protocol: str
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])

    @property
    def tls(self) -> bool:
        return "SSL" in self.protocol

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def login(self, mechanism: str, username: str, password: str) -> "Endpoint":
        return dataclasses.replace(self, mechanism=mechanism, username=username, password=password)

    def with_tls(self, ca: Path | None, cert: Path | None = None, key: Path | None = None) -> "Endpoint":
        return dataclasses.replace(self, ca=ca, cert=cert, key=key)

    def context(self) -> ssl.SSLContext | None:
        return tlskit.client_context(self.ca, self.cert, self.key) if self.tls else None

    def confluent(self) -> dict:
        conf = {"security.protocol": self.protocol}
        if self.tls:
            conf["ssl.ca.location"] = str(self.ca)
            conf["ssl.endpoint.identification.algorithm"] = "https"
            if self.cert:
                conf["ssl.certificate.location"] = str(self.cert)
                conf["ssl.key.location"] = str(self.key)
        if self.sasl:
            conf.update({"sasl.mechanism": self.mechanism, "sasl.username": self.username,
                         "sasl.password": self.password})
        return conf

    def kp(self) -> dict:
        conf = {"security_protocol": self.protocol}
        if self.tls:
            conf.update(ssl_cafile=str(self.ca), ssl_check_hostname=True)
            if self.cert:
                conf.update(ssl_certfile=str(self.cert), ssl_keyfile=str(self.key))
        if self.sasl:
            conf.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                        sasl_plain_password=self.password)
        return conf

    def kcat_args(self) -> list[str]:
        return [f"-X{k}={v}" for k, v in
                {**self.confluent(), **({"sasl.mechanisms": self.mechanism} if self.sasl else {})}.items()
                if k != "sasl.mechanism"]

    def kafkajs(self) -> dict:
        out = {"bootstrap": self.bootstrap, "ssl": None, "sasl": None}
        if self.tls:
            out["ssl"] = {"ca": str(self.ca), "cert": str(self.cert) if self.cert else None,
                          "key": str(self.key) if self.key else None}
        if self.sasl:
            out["sasl"] = {"mechanism": self.mechanism.lower(), "username": self.username,
                           "password": self.password}
        return out


def confluent_errors(ep: Endpoint, until, timeout: float = 15.0) -> list[KafkaError]:
    """Errors a confluent-kafka client reports (error_cb) while it tries to reach `ep`, until
    one satisfies `until(err)` or `timeout` passes."""
    errors: list[KafkaError] = []
    p = confluent_producer(ep.bootstrap, **ep.confluent(), error_cb=errors.append)
    try:
        p.list_topics(timeout=0.5)  # makes it connect; fails while the connection is refused
    except KafkaException:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(until(e) for e in errors):
        p.poll(0.1)
    return errors


def confluent_metadata_fails(ep: Endpoint, timeout: float = 1.0) -> bool:
    a = AdminClient({"bootstrap.servers": ep.bootstrap, **ep.confluent()})
    try:
        a.list_topics(timeout=timeout)
    except KafkaException:
        return True
    return False


def confluent_brokers(ep: Endpoint) -> dict[int, tuple[str, int]]:
    a = AdminClient({"bootstrap.servers": ep.bootstrap, "client.id": "sediment-it-admin", **ep.confluent()})
    md = a.list_topics(timeout=15)
    return {b.id: (b.host, b.port) for b in md.brokers.values()}


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        try:
            self.messages.append(record.getMessage())
        except Exception:  # noqa: BLE001 (a record that does not format)
            pass


def kp_login_failure(ep: Endpoint) -> tuple[BaseException, list[str]]:
    """kafka-python's KafkaAdminClient against `ep` with a bad login: (the exception its
    constructor raises, what it logged). kafka-python 3 does not raise the SASL error from
    bootstrap (it retries until bootstrap_timeout_ms), it logs it."""
    from kafka import KafkaAdminClient
    handler = _Records()
    logger = logging.getLogger("kafka")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        try:
            a = KafkaAdminClient(bootstrap_servers=ep.bootstrap, client_id="sediment-it-kp-admin",
                                 bootstrap_timeout_ms=2000, request_timeout_ms=5000, **ep.kp())
        except Exception as e:  # noqa: BLE001 (the test inspects it)
            return e, handler.messages
        a.close()
        raise AssertionError(f"kafka-python logged in to {ep.bootstrap} as {ep.username!r} "
                             f"with a bad password")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# ================================================================ round trips


def _values(topic: str, count: int) -> list[tuple[bytes, bytes]]:
    return [(f"k{i}".encode(), f"{topic}-v{i}".encode()) for i in range(count)]


def roundtrip(request, client: str, ep: Endpoint, plaintext: str, topic: str, count: int = 20) -> None:
    """Create `topic` (over PLAINTEXT), produce `count` records through `ep` with `client`,
    read them back through `ep` with the same client, and compare."""
    create_topic(plaintext, topic, partitions=1)
    want = _values(topic, count)
    if client == "confluent":
        p = confluent_producer(ep.bootstrap, **ep.confluent())
        ds = produce_confluent(p, topic, [{"key": k, "value": v, "partition": 0} for k, v in want])
        assert [d.error for d in ds] == [None] * count, [d.error for d in ds if d.error][:3]
        assert [d.offset for d in ds] == list(range(count))
        recs = read_confluent(ep.bootstrap, topic, [0], consumer_conf=ep.confluent())[0]
        got = [(r.offset, r.key, r.value) for r in recs]
    elif client == "kafka-python":
        p = kp_producer(ep.bootstrap, **ep.kp())
        try:
            ds = produce_kp(p, topic, [{"key": k, "value": v, "partition": 0} for k, v in want])
        finally:
            p.close(timeout=5)
        assert [d.error for d in ds] == [None] * count, [d.error for d in ds if d.error][:3]
        assert [d.offset for d in ds] == list(range(count))
        recs = read_kp(ep.bootstrap, topic, [0], consumer_conf=ep.kp())[0]
        got = [(r.offset, r.key, r.value) for r in recs]
    elif client == "kafkajs":
        node_path = request.getfixturevalue("node")
        s = run_node(node_path, "secure.js", json.dumps(
            {**ep.kafkajs(), "mode": "roundtrip", "topic": topic, "count": count,
             "groupId": f"g-{topic}", "timeoutMs": 30000}))
        assert s["produced"] and all(a["errorCode"] == 0 for a in s["produced"]), s["produced"]
        assert [a["baseOffset"] for a in s["produced"]] == [0], s["produced"]
        assert not s["errors"] and not s["timedOut"], s
        got = sorted((r["offset"], r["key"].encode(), r["value"].encode()) for r in s["records"])
    else:
        raise ValueError(client)
    assert got == [(i, k, v) for i, (k, v) in enumerate(want)], got[:5]


def kcat_roundtrip(kcat, ep: Endpoint, plaintext: str, topic: str, count: int = 20) -> None:
    create_topic(plaintext, topic, partitions=1)
    lines = [f"{k.decode()}:{v.decode()}" for k, v in _values(topic, count)]
    args = ["-b", ep.bootstrap, *ep.kcat_args(), "-t", topic]
    kcat.run(*args, "-P", "-K:", "-p", "0", input="\n".join(lines) + "\n")
    out = kcat.run(*args, "-C", "-e", "-q", "-o", "beginning", "-f", "%o %k:%s\n").stdout
    assert out.splitlines() == [f"{i} {line}" for i, line in enumerate(lines)], out[-2000:]


# ================================================================ brokers


def distinct_ports(n: int, avoid: set[int]) -> list[int]:
    while True:
        ports = _pick_free_ports(n)
        if not set(ports) & avoid:
            return ports


def port_accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        return True
    except OSError:
        return False


def tls_args(pki: tlskit.Pki, cert: Path | None = None, key: Path | None = None) -> list[str]:
    return ["--ssl-cert-file", str(cert or pki.server_cert), "--ssl-key-file", str(key or pki.server_key),
            "--ssl-ca-file", str(pki.ca)]


class Secured:
    """A broker with extra listeners; `ep(NAME)` is an Endpoint for the listener NAME."""

    def __init__(self, broker: Broker, listeners: list[str], pki: tlskit.Pki):
        self.broker = broker
        self.pki = pki
        ports = distinct_ports(len(listeners), {broker.port, broker.http_port})
        self.ports = dict(zip(listeners, ports))
        for name, port in self.ports.items():
            broker.options += ["--listener", f"{name}://127.0.0.1:{port}"]

    def start(self) -> "Secured":
        self.broker.start()
        wait_until(lambda: all(port_accepts(p) for p in self.ports.values()), 10,
                   what=f"listeners {self.ports} accepting connections")
        return self

    @property
    def plaintext(self) -> str:
        return self.broker.bootstrap

    def ep(self, name: str) -> Endpoint:
        return Endpoint(f"127.0.0.1:{self.ports[name]}", name,
                        ca=self.pki.ca if "SSL" in name else None)

    def healthy(self) -> bool:
        return self.broker.is_running() and self.broker.health() == 200


def _attach(request, *brokers: Broker) -> None:
    """Show these brokers' log tails when the test fails (conftest's makereport hook)."""
    lst = getattr(request.node, "_sediment_brokers", None)
    if lst is None:
        lst = request.node._sediment_brokers = []
    lst.extend(brokers)


def _module_broker(tmp_path_factory, name: str, pki, listeners: list[str], args: list[str]):
    b = Broker(sediment_binary(), tmp_path_factory.mktemp(f"sediment-{name}"), name=name)
    s = Secured(b, listeners, pki)
    b.options += args
    return s


def admin_plaintext(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "client.id": "sediment-it-admin"})


def _mech(name: str) -> ScramMechanism:
    return {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256,
            "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}[name]


def upsert(bootstrap: str, creds: dict[str, dict[str, tuple[str, int]]]) -> None:
    """AlterUserScramCredentials upsertions: {user: {mechanism: (password, iterations)}}."""
    alterations = [UserScramCredentialUpsertion(u, ScramCredentialInfo(_mech(m), it), pw.encode())
                   for u, per in creds.items() for m, (pw, it) in per.items()]
    admin = admin_plaintext(bootstrap)  # kept alive until the futures resolve
    futs = admin.alter_user_scram_credentials(alterations, request_timeout=15)
    assert set(futs) == set(creds)
    for user, f in futs.items():
        f.result(timeout=20)


def described(bootstrap: str) -> dict[str, set[tuple[str, int]]]:
    """{user: {(mechanism, iterations)}} from DescribeUserScramCredentials for all users."""
    admin = admin_plaintext(bootstrap)
    res = admin.describe_user_scram_credentials(request_timeout=15).result(timeout=20)
    return {u: {(i.mechanism.name.replace("_", "-"), i.iterations) for i in d.scram_credential_infos}
            for u, d in res.items()}


def describe_error(bootstrap: str, user: str) -> KafkaError | None:
    admin = admin_plaintext(bootstrap)
    futs = admin.describe_user_scram_credentials([user], request_timeout=15)
    try:
        futs[user].result(timeout=20)
    except KafkaException as e:
        return kafka_error_of(e)
    return None


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tlskit.Pki:
    return tlskit.make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def _main_broker(tmp_path_factory, pki):
    s = _module_broker(tmp_path_factory, "secure", pki, ["SSL", "SASL_SSL", "SASL_PLAINTEXT"],
                       tls_args(pki) + ["--max-failed-authentications-per-minute", "100000",
                                        "--group-initial-rebalance-delay-ms", "0"])
    try:
        yield s.start()
    finally:
        s.broker.close()


@pytest.fixture
def sec(request, _main_broker) -> Secured:
    """The shared broker: PLAINTEXT + SSL + SASL_SSL + SASL_PLAINTEXT, no client certificates."""
    _attach(request, _main_broker.broker)
    assert _main_broker.broker.is_running(), "the shared broker died in an earlier test"
    return _main_broker


@pytest.fixture(scope="module")
def _users(_main_broker):
    upsert(_main_broker.plaintext, {u: {m: (PASSWORDS[u], it) for m, it in per.items()}
                                    for u, per in CREDENTIALS.items()})
    return PASSWORDS


@pytest.fixture
def users(sec, _users) -> dict[str, str]:
    """alice, bob and carol on the shared broker (see CREDENTIALS); {user: password}."""
    return _users


def sasl_ep(sec: Secured, listener: str, mechanism: str, user: str | None = None,
            password: str | None = None) -> Endpoint:
    user = user or LOGIN_FOR[mechanism]
    return sec.ep(listener).login(mechanism, user, password or PASSWORDS[user])


# ================================================================ 0. our own SCRAM client


def test_scram_client_matches_rfc7677_example():
    scram_self_check()


def test_tlskit_certificates_verify_as_intended(pki):
    def verify(cert: Path, ca: Path) -> subprocess.CompletedProcess:
        return subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(cert)],
                              capture_output=True, text=True, timeout=30)
    for cert in (pki.server_cert, pki.client_cert):
        assert verify(cert, pki.ca).returncode == 0, verify(cert, pki.ca).stdout
    assert verify(pki.server2_cert, pki.ca2).returncode == 0
    for cert, ca in ((pki.selfsigned_cert, pki.ca), (pki.expired_cert, pki.ca),
                     (pki.server2_cert, pki.ca), (pki.server_cert, pki.ca2)):
        assert verify(cert, ca).returncode != 0, f"{cert} verifies against {ca}"


# ================================================================ 1. SSL listener round trips


@pytest.mark.parametrize("client", CLIENTS)
def test_ssl_listener_round_trip(request, sec, client, topic_name):
    roundtrip(request, client, sec.ep("SSL"), sec.plaintext, topic_name)


def test_ssl_listener_round_trip_kcat(sec, kcat, topic_name):
    kcat_roundtrip(kcat, sec.ep("SSL"), sec.plaintext, topic_name)


# ================================================================ 2. Metadata per listener


def test_metadata_and_find_coordinator_name_the_listener_the_client_came_in_on(sec, users):
    eps = {"PLAINTEXT": Endpoint(sec.plaintext, "PLAINTEXT"), "SSL": sec.ep("SSL"),
           "SASL_SSL": sasl_ep(sec, "SASL_SSL", "SCRAM-SHA-256"),
           "SASL_PLAINTEXT": sasl_ep(sec, "SASL_PLAINTEXT", "SCRAM-SHA-512")}
    assert len({ep.port for ep in eps.values()}) == 4
    for name, ep in eps.items():
        assert confluent_brokers(ep) == {0: ("127.0.0.1", ep.port)}, f"Metadata over {name}"

    # kafka-python's view of the SSL listener
    from kafka import KafkaAdminClient
    a = KafkaAdminClient(bootstrap_servers=eps["SSL"].bootstrap, **eps["SSL"].kp())
    try:
        brokers = a.describe_cluster()["brokers"]
    finally:
        a.close()
    assert [(b["broker_id"], b["host"], b["port"]) for b in brokers] == [(0, "127.0.0.1", eps["SSL"].port)]

    # FindCoordinator, raw, over TLS and over PLAINTEXT
    for name, ep in (("SSL", eps["SSL"]), ("PLAINTEXT", eps["PLAINTEXT"])):
        with SaslConn(ep.bootstrap, tls=ep.context()) as c:
            r = c.call(rawkafka.find_coordinator("sec-group"), 2)
        assert r.error_code == 0, r
        assert (r.node_id, r.host, r.port) == (0, "127.0.0.1", ep.port), f"FindCoordinator over {name}: {r}"


# ================================================================ 3. mTLS


@pytest.fixture(scope="module")
def _mtls_broker(tmp_path_factory, pki):
    s = _module_broker(tmp_path_factory, "mtls", pki, ["SSL"],
                       tls_args(pki) + ["--ssl-client-auth", "required"])
    try:
        yield s.start()
    finally:
        s.broker.close()


@pytest.fixture
def mtls(request, _mtls_broker) -> Secured:
    _attach(request, _mtls_broker.broker)
    assert _mtls_broker.broker.is_running(), "the mTLS broker died in an earlier test"
    return _mtls_broker


@pytest.mark.parametrize("client", CLIENTS)
def test_mtls_client_with_ca_signed_certificate_round_trips(request, mtls, pki, client, topic_name):
    ep = mtls.ep("SSL").with_tls(pki.ca, pki.client_cert, pki.client_key)
    assert tls_probe(ep.bootstrap, ep.context()).answered
    roundtrip(request, client, ep, mtls.plaintext, topic_name)


def test_mtls_client_with_ca_signed_certificate_round_trips_kcat(mtls, pki, kcat, topic_name):
    ep = mtls.ep("SSL").with_tls(pki.ca, pki.client_cert, pki.client_key)
    kcat_roundtrip(kcat, ep, mtls.plaintext, topic_name)


@pytest.mark.parametrize("which", ["no-certificate", "self-signed", "expired"])
def test_mtls_refuses_clients_without_a_valid_certificate(mtls, pki, which):
    cert, key = {"no-certificate": (None, None),
                 "self-signed": (pki.selfsigned_cert, pki.selfsigned_key),
                 "expired": (pki.expired_cert, pki.expired_key)}[which]
    bad = mtls.ep("SSL").with_tls(pki.ca, cert, key)
    good = mtls.ep("SSL").with_tls(pki.ca, pki.client_cert, pki.client_key)

    assert_refused(tls_probe(bad.bootstrap, bad.context()), f"raw TLS client, {which}")
    errs = confluent_errors(bad, lambda e: e.code() in (KafkaError._SSL, KafkaError._TRANSPORT,
                                                        KafkaError._AUTHENTICATION), timeout=10)
    assert any(e.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._AUTHENTICATION)
               for e in errs), f"confluent-kafka with {which}: no connection error, only {errs}"
    assert confluent_metadata_fails(bad), f"confluent-kafka with {which} got metadata"

    assert mtls.healthy(), f"broker unhealthy after a client with {which}"
    assert tls_probe(good.bootstrap, good.context()).answered, f"good client refused after {which}"


# ================================================================ 4. SCRAM users, SASL round trips


def test_scram_users_created_by_admin_client_are_described(sec, users):
    got = described(sec.plaintext)
    for user, per in CREDENTIALS.items():
        assert got.get(user) == set(per.items()), f"{user}: described {got.get(user)}"

    err = describe_error(sec.plaintext, "nobody-here")
    assert err is not None and err.code() == RESOURCE_NOT_FOUND, err

    # iterations outside 4096..=16384 are refused and nothing is stored
    admin = admin_plaintext(sec.plaintext)
    for it in (1024, 20000):
        futs = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(f"iter{it}", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, it),
                                          b"pw")], request_timeout=15)
        with pytest.raises(KafkaException) as ei:
            futs[f"iter{it}"].result(timeout=20)
        assert kafka_error_of(ei.value).code() == UNACCEPTABLE_CREDENTIAL, ei.value
        assert f"iter{it}" not in described(sec.plaintext)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_ssl_round_trip(request, sec, users, mechanism, client, topic_name):
    roundtrip(request, client, sasl_ep(sec, "SASL_SSL", mechanism), sec.plaintext, topic_name)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_ssl_round_trip_kcat(sec, users, kcat, mechanism, topic_name):
    kcat_roundtrip(kcat, sasl_ep(sec, "SASL_SSL", mechanism), sec.plaintext, topic_name)


# PLAIN here logs in bob, whose only credentials are SCRAM-SHA-512 ones.
@pytest.mark.parametrize("mechanism,client,user", [("SCRAM-SHA-256", "confluent", "alice"),
                                                   ("SCRAM-SHA-512", "kafka-python", "bob"),
                                                   ("PLAIN", "kafkajs", "bob")])
def test_sasl_plaintext_round_trip(request, sec, users, mechanism, client, user, topic_name):
    roundtrip(request, client, sasl_ep(sec, "SASL_PLAINTEXT", mechanism, user), sec.plaintext, topic_name)


# ================================================================ 5. refusals


def test_bad_logins_are_refused_visibly_by_confluent_kafka(sec, users):
    for mechanism, user, pw in (("SCRAM-SHA-256", "alice", "wrong"), ("SCRAM-SHA-512", "nobody", "x"),
                                ("PLAIN", "alice", "wrong")):
        ep = sasl_ep(sec, "SASL_SSL", mechanism, user, pw)
        errs = confluent_errors(ep, lambda e: e.code() == KafkaError._AUTHENTICATION)
        auth = [e for e in errs if e.code() == KafkaError._AUTHENTICATION]
        assert auth, f"{user}/{mechanism}: no authentication error, only {errs}"
        assert AUTH_FAILED_MESSAGE in auth[0].str(), auth[0].str()
    assert sec.healthy()


def test_bad_logins_are_refused_by_kafka_python(sec, users):
    # kafka-python 3.0.12 drops bytes that arrive together with the peer's FIN
    # (net/transport.py _read_from_sock aborts with the data unread), so the 58 answer a broker
    # sends right before it closes the connection is usually lost: what it reliably shows is
    # that bootstrap never completes. Any SASL error it does log must carry our message.
    for mechanism, user, pw in (("SCRAM-SHA-512", "bob", "wrong"), ("SCRAM-SHA-256", "nobody", "x")):
        e, logged = kp_login_failure(sasl_ep(sec, "SASL_PLAINTEXT", mechanism, user, pw))
        assert not [m for m in logged if m.startswith("Bootstrap complete")], logged[-20:]
        sasl_errors = [m for m in logged if "SaslAuthenticationFailedError" in m]
        assert all(AUTH_FAILED_MESSAGE in m for m in sasl_errors), sasl_errors[:3]
        assert sasl_errors or [m for m in logged if "socket disconnected" in m], (
            f"{user}/{mechanism}: the broker neither refused nor closed: {logged[-20:]}")
        print(f"kafka-python, {user}/{mechanism}: {type(e).__name__}: {e}; "
              f"{len(sasl_errors)} SASL error(s) logged")


def test_bad_logins_are_refused_visibly_by_kafkajs(sec, users, node):
    for mechanism, user, pw in (("SCRAM-SHA-256", "alice", "wrong"), ("SCRAM-SHA-512", "nobody", "x"),
                                ("PLAIN", "bob", "wrong")):
        ep = sasl_ep(sec, "SASL_SSL", mechanism, user, pw)
        s = run_node(node, "secure.js", json.dumps({**ep.kafkajs(), "mode": "connect"}))
        assert s["ok"] is False, f"kafkajs logged in as {user} with a bad password: {s}"
        assert s["errorName"] == "KafkaJSSASLAuthenticationError", s
        assert AUTH_FAILED_MESSAGE in s["errorMessage"], s


def test_bad_login_is_refused_visibly_by_kcat(sec, users, kcat):
    ep = sasl_ep(sec, "SASL_SSL", "SCRAM-SHA-256", "alice", "wrong")
    cp = kcat.run("-b", ep.bootstrap, *ep.kcat_args(), "-L", "-m", "2", check=False, timeout=30)
    assert cp.returncode != 0, cp.stdout
    assert AUTH_FAILED_MESSAGE in cp.stderr, cp.stderr[-2000:]


def test_raw_refusals_are_identical_delayed_and_close_the_connection(sec, users):
    cases = [("SCRAM-SHA-256", "alice", "wrong-password"),
             ("SCRAM-SHA-256", "nobody", "whatever"),
             ("SCRAM-SHA-256", "bob", PASSWORDS["bob"]),     # bob has no SCRAM-SHA-256 credential
             ("SCRAM-SHA-512", "bob", "wrong-password"),
             ("SCRAM-SHA-512", "nobody", "whatever"),
             ("PLAIN", "alice", "wrong-password"),
             ("PLAIN", "nobody", "whatever")]
    seen = {}
    for mechanism, user, pw in cases:
        login = assert_login_refused(sec.ep("SASL_PLAINTEXT").bootstrap, mechanism, user, pw)
        # --failed-authentication-delay-ms defaults to 100
        assert login.elapsed_s >= 0.08, f"{user}/{mechanism} refused after {login.elapsed_s:.3f}s"
        seen[(mechanism, user)] = login.error_message
    assert len(set(seen.values())) == 1, seen
    # and over TLS
    assert_login_refused(sec.ep("SASL_SSL").bootstrap, "SCRAM-SHA-256", "nobody", "x",
                         tls=sec.ep("SASL_SSL").context())
    assert sec.healthy()


@pytest.mark.parametrize("mechanism,user", [("SCRAM-SHA-256", "alice"), ("SCRAM-SHA-512", "bob"),
                                            ("SCRAM-SHA-256", "carol"), ("SCRAM-SHA-512", "carol"),
                                            ("PLAIN", "bob"), ("PLAIN", "carol")])
def test_raw_login_succeeds_and_server_signature_verifies(sec, users, mechanism, user):
    for listener in ("SASL_PLAINTEXT", "SASL_SSL"):
        ep = sec.ep(listener)
        with SaslConn(ep.bootstrap, tls=ep.context()) as c:
            login = sasl_login(c, mechanism, user, PASSWORDS[user])
            assert login.error_code == 0, f"{listener}: {login}"
            if mechanism != "PLAIN":
                assert login.server_signature_ok, f"{listener}: server signature does not verify"
                assert login.iterations == CREDENTIALS[user][mechanism], login
            # no --connections-max-reauth-ms: sessions do not expire
            assert login.session_lifetime_ms == 0, login
            md = c.metadata()
            assert [(b.node_id, b.host, b.port) for b in md.brokers] == [(0, "127.0.0.1", ep.port)], md


def _bare_frame(conn: SaslConn, token: bytes) -> bytes | None:
    """Sends a SASL token as a bare size-prefixed frame (after SaslHandshake v0) and reads the
    bare answer; None if the broker closes the connection instead."""
    conn.sock.sendall(struct.pack(">i", len(token)) + token)
    conn.sock.settimeout(5.0)
    try:
        head = b""
        while len(head) < 4:
            chunk = conn.sock.recv(4 - len(head))
            if not chunk:
                return None
            head += chunk
        (n,) = struct.unpack(">i", head)
        body = b""
        while len(body) < n:
            chunk = conn.sock.recv(n - len(body))
            if not chunk:
                return None
            body += chunk
        return body
    except OSError:
        return None


def test_handshake_v0_takes_bare_sasl_tokens(sec, users):
    """SaslHandshake v0 (what ApiVersions lists first): the tokens follow as bare frames."""
    ep = sec.ep("SASL_PLAINTEXT")
    # PLAIN: one token, an empty answer, then Kafka requests are served.
    with SaslConn(ep.bootstrap) as c:
        assert c.handshake("PLAIN", version=0).error_code == 0
        assert _bare_frame(c, b"\0alice\0" + PASSWORDS["alice"].encode()) == b""
        assert [b.port for b in c.metadata().brokers] == [ep.port]
    # SCRAM: two rounds, and the server's signature verifies.
    with SaslConn(ep.bootstrap) as c:
        assert c.handshake("SCRAM-SHA-512", version=0).error_code == 0
        scram = ScramClient("SCRAM-SHA-512", "bob", PASSWORDS["bob"])
        server_first = _bare_frame(c, scram.first())
        assert server_first and server_first.startswith(b"r="), server_first
        server_final = _bare_frame(c, scram.final(server_first))
        assert server_final is not None and scram.verify(server_final), server_final
        assert [b.port for b in c.metadata().brokers] == [ep.port]
    # A wrong password: v0 cannot carry an error, so the broker closes the connection.
    with SaslConn(ep.bootstrap) as c:
        assert c.handshake("PLAIN", version=0).error_code == 0
        assert _bare_frame(c, b"\0alice\0not-the-password") is None
    assert sec.healthy()


def test_handshake_with_unknown_mechanism_is_unsupported(sec):
    with SaslConn(sec.ep("SASL_PLAINTEXT").bootstrap) as c:
        r = c.handshake("BOGUS-MECH")
    assert r.error_code == UNSUPPORTED_SASL_MECHANISM, r
    assert sorted(r.mechanisms) == sorted(MECHANISMS), r.mechanisms


def test_handshake_on_a_listener_without_sasl_is_an_illegal_state(sec):
    for ep in (Endpoint(sec.plaintext, "PLAINTEXT"), sec.ep("SSL")):
        with SaslConn(ep.bootstrap, tls=ep.context()) as c:
            r = c.handshake("PLAIN")
        assert r.error_code == ILLEGAL_SASL_STATE, f"{ep.protocol}: {r}"


def test_requests_before_authentication_close_the_connection(sec, users):
    for listener in ("SASL_PLAINTEXT", "SASL_SSL"):
        ep = sec.ep(listener)
        # ApiVersions is answered before authentication, and names the SASL APIs
        with SaslConn(ep.bootstrap, tls=ep.context()) as c:
            av = c.api_versions()
            assert av.error_code == 0, av
            keys = {k.api_key for k in av.api_keys}
            assert {17, 36, 50, 51} <= keys, sorted(keys)
            # ... but Metadata is not
            assert answered_or_closed(c, MetadataRequest(topics=None), 1) == "closed", listener
        # Metadata as the first request
        with SaslConn(ep.bootstrap, tls=ep.context()) as c:
            assert answered_or_closed(c, MetadataRequest(topics=None), 1) == "closed", listener
        # Metadata after the handshake, in place of SaslAuthenticate
        with SaslConn(ep.bootstrap, tls=ep.context()) as c:
            assert c.handshake("SCRAM-SHA-256").error_code == 0
            assert answered_or_closed(c, MetadataRequest(topics=None), 1) == "closed", listener
    assert sec.healthy()
    assert_login_ok(sec.ep("SASL_PLAINTEXT").bootstrap, "SCRAM-SHA-256", "alice", PASSWORDS["alice"])


def test_plaintext_kafka_request_to_a_tls_port_is_closed(sec):
    for name in ("SSL", "SASL_SSL"):
        ep = sec.ep(name)
        with SaslConn(ep.bootstrap) as c:  # no TLS
            req = ApiVersionsRequest()
            req.with_header(correlation_id=7, client_id="plaintext-to-tls")
            c.sock.sendall(bytes(req.encode(version=0, header=True, framed=True)))
            c.sock.settimeout(5.0)
            data = b""
            try:
                while True:
                    chunk = c.sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except TimeoutError:
                pytest.fail(f"{name}: the broker kept a connection open that spoke no TLS "
                            f"(received {data[:40]!r})")
            except OSError:
                pass  # reset: closed
        # at most a TLS alert (record type 21), never a Kafka answer
        assert data == b"" or data[0] == 0x15, f"{name}: got {data[:40]!r}"
    assert sec.healthy()
    assert tls_probe(sec.ep("SSL").bootstrap, sec.ep("SSL").context()).answered


# ================================================================ 6. failed-login rate limit


@pytest.fixture(scope="module")
def _limited_broker(tmp_path_factory, pki):
    s = _module_broker(tmp_path_factory, "limited", pki, ["SASL_PLAINTEXT"],
                       ["--max-failed-authentications-per-minute", "3",
                        "--failed-authentication-delay-ms", "0",
                        "--sasl-enabled-mechanisms", "SCRAM-SHA-256"])
    try:
        s.start()
        upsert(s.plaintext, {"frank": {"SCRAM-SHA-256": ("frank-pw", 4096)}})
        yield s
    finally:
        s.broker.close()


@pytest.fixture
def limited(request, _limited_broker) -> Secured:
    _attach(request, _limited_broker.broker)
    assert _limited_broker.broker.is_running()
    return _limited_broker


def test_disabled_mechanism_is_unsupported(limited):
    with SaslConn(limited.ep("SASL_PLAINTEXT").bootstrap) as c:
        r = c.handshake("PLAIN")
    assert r.error_code == UNSUPPORTED_SASL_MECHANISM, r
    assert list(r.mechanisms) == ["SCRAM-SHA-256"], r.mechanisms


def test_failed_logins_lock_the_address_out_even_with_the_right_password(limited):
    b = limited.ep("SASL_PLAINTEXT").bootstrap
    assert_login_ok(b, "SCRAM-SHA-256", "frank", "frank-pw")  # a success is not a failure
    for i in range(3):
        login = assert_login_refused(b, "SCRAM-SHA-256", "frank", f"wrong-{i}")
        assert login.elapsed_s < 1.0, f"--failed-authentication-delay-ms 0, refused after {login.elapsed_s:.2f}s"
    login, closed = login_once(b, "SCRAM-SHA-256", "frank", "frank-pw")
    assert login.error_code == SASL_AUTHENTICATION_FAILED, f"4th login, right password: {login}"
    assert closed
    # the limit is per client address: 127.0.0.2 is not locked out
    assert_login_ok(b, "SCRAM-SHA-256", "frank", "frank-pw", source_ip="127.0.0.2")
    assert limited.healthy()


# ================================================================ 7. credential deletion


def test_deleting_a_credential_refuses_new_logins_and_keeps_the_data(sec, users, topic_name):
    upsert(sec.plaintext, {"dave": {"SCRAM-SHA-256": ("dave-pw", 4096)}})
    ep = sasl_ep(sec, "SASL_SSL", "SCRAM-SHA-256", "dave", "dave-pw")
    create_topic(sec.plaintext, topic_name, partitions=1)
    ds = produce_confluent(confluent_producer(ep.bootstrap, **ep.confluent()), topic_name,
                           [{"value": f"d{i}".encode(), "partition": 0} for i in range(5)])
    assert [d.error for d in ds] == [None] * 5
    assert_login_ok(ep.bootstrap, "SCRAM-SHA-256", "dave", "dave-pw", tls=ep.context())

    admin = admin_plaintext(sec.plaintext)  # kept alive until the futures resolve
    futs = admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion("dave", ScramMechanism.SCRAM_SHA_256)], request_timeout=15)
    futs["dave"].result(timeout=20)

    assert "dave" not in described(sec.plaintext)
    err = describe_error(sec.plaintext, "dave")
    assert err is not None and err.code() == RESOURCE_NOT_FOUND, err
    assert_login_refused(ep.bootstrap, "SCRAM-SHA-256", "dave", "dave-pw", tls=ep.context())
    assert_login_refused(sec.ep("SASL_PLAINTEXT").bootstrap, "PLAIN", "dave", "dave-pw")
    errs = confluent_errors(ep, lambda e: e.code() == KafkaError._AUTHENTICATION)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errs), errs

    # deleting it again: RESOURCE_NOT_FOUND
    futs = admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion("dave", ScramMechanism.SCRAM_SHA_256)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        futs["dave"].result(timeout=20)
    assert kafka_error_of(ei.value).code() == RESOURCE_NOT_FOUND, ei.value

    # the records dave wrote are still there, for PLAINTEXT and for other users
    want = [f"d{i}".encode() for i in range(5)]
    assert [r.value for r in read_confluent(sec.plaintext, topic_name, [0])[0]] == want
    alice = sasl_ep(sec, "SASL_SSL", "SCRAM-SHA-256")
    assert [r.value for r in read_confluent(alice.bootstrap, topic_name, [0],
                                            consumer_conf=alice.confluent())[0]] == want
    # other users are untouched
    assert described(sec.plaintext)["alice"] == set(CREDENTIALS["alice"].items())


# ================================================================ 8. `sediment users` CLI


def users_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cp = subprocess.run([str(sediment_binary()), "users", *args], capture_output=True, text=True,
                        timeout=60, stdin=subprocess.DEVNULL)
    if check:
        assert cp.returncode == 0, f"sediment users {' '.join(args)} exited {cp.returncode}:\n{cp.stderr}"
    return cp


def cli_listed(bootstrap: str) -> set[tuple[str, str, int]]:
    out = users_cli("list", "--bootstrap", bootstrap).stdout
    rows = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            rows.add((parts[0], parts[1], int(parts[2])))
    return rows


def test_users_cli_create_list_delete(sec, users, tmp_path, topic_name):
    b = sec.plaintext
    pw_file = tmp_path / "erin.pw"
    pw_file.write_text("erin-cli-secret")
    users_cli("create", "erin", "--mechanism", "SCRAM-SHA-512", "--password-file", str(pw_file),
              "--iterations", "8192", "--bootstrap", b)
    users_cli("create", "gina", "--mechanism", "SCRAM-SHA-256", "--password", "gina-cli-secret",
              "--bootstrap", b)

    rows = cli_listed(b)
    assert ("erin", "SCRAM-SHA-512", 8192) in rows, rows
    gina = [r for r in rows if r[0] == "gina"]
    assert len(gina) == 1 and gina[0][1] == "SCRAM-SHA-256" and 4096 <= gina[0][2] <= 16384, rows
    assert ("alice", "SCRAM-SHA-256", 8192) in rows, rows  # users made by the admin client too
    assert described(b)["erin"] == {("SCRAM-SHA-512", 8192)}

    # erin logs in with SCRAM-SHA-512 (a real client and a raw check), not with SCRAM-SHA-256
    ep = sasl_ep(sec, "SASL_SSL", "SCRAM-SHA-512", "erin", "erin-cli-secret")
    create_topic(b, topic_name, partitions=1)
    ds = produce_confluent(confluent_producer(ep.bootstrap, **ep.confluent()), topic_name,
                           [{"value": b"from-erin", "partition": 0}])
    assert ds[0].error is None and ds[0].offset == 0, ds
    assert_login_ok(sec.ep("SASL_PLAINTEXT").bootstrap, "SCRAM-SHA-512", "erin", "erin-cli-secret")
    assert_login_refused(sec.ep("SASL_PLAINTEXT").bootstrap, "SCRAM-SHA-256", "erin", "erin-cli-secret")
    assert_login_ok(sec.ep("SASL_PLAINTEXT").bootstrap, "SCRAM-SHA-256", "gina", "gina-cli-secret")

    users_cli("delete", "erin", "--bootstrap", b)  # every mechanism erin has
    users_cli("delete", "gina", "--mechanism", "SCRAM-SHA-256", "--bootstrap", b)
    rows = cli_listed(b)
    assert not [r for r in rows if r[0] in ("erin", "gina")], rows
    assert ("alice", "SCRAM-SHA-256", 8192) in rows, rows
    assert_login_refused(sec.ep("SASL_PLAINTEXT").bootstrap, "SCRAM-SHA-512", "erin", "erin-cli-secret")

    cp = users_cli("delete", "erin", "--bootstrap", b, check=False)
    assert cp.returncode != 0, f"deleting a user that does not exist succeeded: {cp.stdout}"


# ================================================================ 9. certificate reload


def test_server_certificate_is_reloaded_for_new_connections(broker_factory, pki, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "server.pem", live / "server.key"
    shutil.copyfile(pki.server_cert, cert)
    shutil.copyfile(pki.server_key, key)
    b = broker_factory(start=False)
    s = Secured(b, ["SSL"], pki)
    b.options += tls_args(pki, cert, key) + ["--ssl-reload-interval-ms", "500"]
    s.start()
    ep1, ep2 = s.ep("SSL").with_tls(pki.ca), s.ep("SSL").with_tls(pki.ca2)

    assert tls_probe(ep1.bootstrap, ep1.context()).answered
    assert_refused(tls_probe(ep2.bootstrap, ep2.context()), "client trusting CA 2 before the swap")
    # a connection made before the swap
    before = SaslConn(ep1.bootstrap, tls=ep1.context())
    try:
        assert before.api_versions().error_code == 0

        tlskit.replace_file(key, pki.server2_key)
        tlskit.replace_file(cert, pki.server2_cert)
        t0 = time.monotonic()
        wait_until(lambda: tls_probe(ep2.bootstrap, ep2.context(), timeout=2).answered, 15,
                   interval=0.25, what="a client trusting only CA 2 to connect after the swap")
        print(f"new certificate served {time.monotonic() - t0:.1f}s after the swap")
        assert_refused(tls_probe(ep1.bootstrap, ep1.context()), "client trusting only CA 1 after the swap")

        # the change applies to new connections: the old one still works
        assert before.api_versions().error_code == 0
    finally:
        before.close()

    assert confluent_brokers(ep2) == {0: ("127.0.0.1", ep2.port)}
    errs = confluent_errors(ep1, lambda e: e.code() in (KafkaError._SSL, KafkaError._TRANSPORT), timeout=10)
    assert any(e.code() in (KafkaError._SSL, KafkaError._TRANSPORT) for e in errs), errs

    # a file that does not parse keeps the last good configuration
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    tlskit.replace_file(cert, garbage)
    time.sleep(2.0)  # four reload intervals
    assert b.is_running() and b.health() == 200
    assert tls_probe(ep2.bootstrap, ep2.context()).answered, "garbage cert file replaced the good config"


# ================================================================ 10. re-authentication


@pytest.fixture(scope="module")
def _reauth_broker(tmp_path_factory, pki):
    s = _module_broker(tmp_path_factory, "reauth", pki, ["SASL_SSL", "SASL_PLAINTEXT"],
                       tls_args(pki) + ["--connections-max-reauth-ms", "2000"])
    try:
        s.start()
        upsert(s.plaintext, {"henry": {"SCRAM-SHA-256": ("henry-pw", 4096)}})
        yield s
    finally:
        s.broker.close()


@pytest.fixture
def reauth(request, _reauth_broker) -> Secured:
    _attach(request, _reauth_broker.broker)
    assert _reauth_broker.broker.is_running()
    return _reauth_broker


def test_raw_session_lifetime_reauthentication_and_expiry(reauth):
    ep = reauth.ep("SASL_SSL")
    with SaslConn(ep.bootstrap, tls=ep.context()) as c:
        first = sasl_login(c, "SCRAM-SHA-256", "henry", "henry-pw")
        assert first.error_code == 0 and first.server_signature_ok, first
        assert 0 < first.session_lifetime_ms <= 2000, first
        assert c.metadata().brokers[0].port == ep.port

        # KIP-368: a second handshake + authenticate on the same connection
        second = sasl_login(c, "SCRAM-SHA-256", "henry", "henry-pw")
        authed = time.monotonic()
        assert second.error_code == 0 and second.server_signature_ok, second
        assert 0 < second.session_lifetime_ms <= 2000, second
        assert c.metadata().brokers[0].port == ep.port

        time.sleep(max(0.0, authed + 2.5 - time.monotonic()))
        assert answered_or_closed(c, MetadataRequest(topics=None), 1) == "closed", (
            "Metadata after the session expired was answered")
    assert reauth.healthy()


def test_confluent_producer_reauthenticates_on_one_connection(reauth, topic_name):
    ep = reauth.ep("SASL_SSL").login("SCRAM-SHA-256", "henry", "henry-pw")
    create_topic(reauth.plaintext, topic_name, partitions=1)
    stats: list[dict] = []
    errors: list = []
    results: dict[int, tuple] = {}
    p = confluent_producer(ep.bootstrap, **ep.confluent(), **{
        "statistics.interval.ms": 500, "stats_cb": lambda s: stats.append(json.loads(s)),
        "error_cb": errors.append})

    def cb(i):
        return lambda err, msg: results.__setitem__(i, (err, msg.offset()))

    n = 0
    end = time.monotonic() + 6.5  # three session lifetimes and more
    while time.monotonic() < end:
        p.produce(topic_name, value=f"r{n}".encode(), partition=0, on_delivery=cb(n))
        n += 1
        p.poll(0.1)
    assert p.flush(15) == 0
    for _ in range(8):  # a last statistics report
        p.poll(0.1)

    assert not errors, f"client errors: {errors[:5]}"
    assert len(results) == n and all(e is None for e, _ in results.values()), (
        [(i, r) for i, r in results.items() if r[0] is not None][:5])
    assert sorted(o for _, o in results.values()) == list(range(n))
    assert stats, "no statistics report"
    b0 = [b for b in stats[-1]["brokers"].values() if b.get("nodeid") == 0]
    assert len(b0) == 1, list(stats[-1]["brokers"])
    # the broker closes an expired session; librdkafka re-authenticated instead of reconnecting
    assert b0[0]["disconnects"] == 0 and b0[0]["connects"] == 1, (
        f"broker 0: {b0[0]['connects']} connects, {b0[0]['disconnects']} disconnects")
    assert [r.value for r in read_confluent(ep.bootstrap, topic_name, [0], consumer_conf=ep.confluent())[0]] == [
        f"r{i}".encode() for i in range(n)]


# ================================================================ 11. cluster over SSL


def test_cluster_replicates_over_the_ssl_inter_broker_listener(cluster_factory, pki, new_topic):
    c = cluster_factory(3, extra_args=tls_args(pki) + ["--inter-broker-listener-name", "SSL"],
                        start=False)
    used = {p for b in c.brokers.values() for p in (b.port, b.http_port)}
    ssl_ports = distinct_ports(3, used)
    # Each broker advertises its PLAINTEXT listener at a port nobody listens on: a broker that
    # replicated over PLAINTEXT instead of the SSL inter-broker listener would find no leader.
    dead = distinct_ports(3, used | set(ssl_ports))
    eps = {}
    for (i, b), port, dead_port in zip(sorted(c.brokers.items()), ssl_ports, dead):
        b.options += ["--listener", f"SSL://127.0.0.1:{port}"]
        b.advertised_addr = f"127.0.0.1:{dead_port}"
        eps[i] = Endpoint(f"127.0.0.1:{port}", "SSL", ca=pki.ca)
    for b in c.brokers.values():
        b.start()
    boot = Endpoint(",".join(ep.bootstrap for ep in eps.values()), "SSL", ca=pki.ca)
    conf = {"bootstrap.servers": boot.bootstrap, **boot.confluent()}

    def ssl_brokers():
        try:
            return confluent_brokers(eps[1])
        except KafkaException as e:  # a broker still starting
            return {"error": str(e)}

    want = {i: ("127.0.0.1", ep.port) for i, ep in eps.items()}
    wait_until(lambda: ssl_brokers() == want, 30,
               what=f"Metadata over SSL to list the three brokers at their SSL addresses {want}")

    topic = new_topic()
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)],
                        request_timeout=20)[topic].result(timeout=30)

    def partition():
        try:
            t = AdminClient(conf).list_topics(topic=topic, timeout=10).topics.get(topic)
        except KafkaException:
            return None
        if t is None or t.error is not None or 0 not in t.partitions:
            return None
        p = t.partitions[0]
        return p if p.leader in eps else None

    wait_until(partition, 30, what=f"a leader for {topic}")
    values = [f"ssl-rep-{i}".encode() for i in range(50)]
    ds = produce_confluent(confluent_producer(boot.bootstrap, **boot.confluent(), acks="all"), topic,
                           [{"key": v, "value": v, "partition": 0} for v in values], flush_timeout=60)
    assert [d.error for d in ds] == [None] * 50, [d.error for d in ds if d.error][:3]
    assert sorted(d.offset for d in ds) == list(range(50))

    p = wait_until(lambda: (lambda q: q if q and set(q.isrs) == {1, 2, 3} else None)(partition()), 30,
                   what=f"ISR of {topic}/0 to be all three brokers")
    assert sorted(p.replicas) == [1, 2, 3], p.replicas
    recs = read_confluent(boot.bootstrap, topic, [0], consumer_conf=boot.confluent())[0]
    assert [r.value for r in recs] == values


# ================================================================ bad input over TLS


def _hostile_frames() -> list[tuple[str, bytes]]:
    def frame(body: bytes) -> bytes:
        return struct.pack(">i", len(body)) + body

    def request(api_key: int, version: int, body: bytes) -> bytes:
        return frame(struct.pack(">hhih", api_key, version, 7, 1) + b"t" + body)

    return [
        ("http garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("negative size", struct.pack(">i", -5)),
        ("zero size", struct.pack(">i", 0)),
        ("size over the limit", struct.pack(">i", 200 * 1024 * 1024)),
        ("shorter than a header", frame(b"\x00\x12")),
        ("unknown api key", request(999, 0, b"")),
        ("unsupported version", request(0, 2, b"")),
        ("body cut short", request(3, 1, b"\x00\x00\x00\x05")),
        ("metadata array claiming 2^31-1 topics", request(3, 1, struct.pack(">i", 0x7FFFFFFF) + b"\x00\x01x")),
        ("produce claiming 2^31-1 topics", request(0, 3, struct.pack(">hhii", -1, -1, 1000, 0x7FFFFFFF))),
    ]


@pytest.mark.parametrize("listener", ["SSL", "SASL_SSL"])
def test_hostile_frames_over_tls_close_only_their_connection(sec, listener):
    """The bad-input cases of tests/integration/test_bad_input.py and the Rust bad_input suite,
    sent inside TLS: each closes its connection (before authentication on SASL_SSL, where the
    broker must not even try to decode them), and the broker goes on serving over TLS."""
    ep = sec.ep(listener)
    for what, data in _hostile_frames():
        with SaslConn(ep.bootstrap, tls=ep.context()) as c:
            c.sock.sendall(data)
            assert c.closed_by_peer(timeout=10), f"{listener}: {what}: the broker answered or hung"
    # A frame promising more than it sends, then the client goes away mid-frame.
    with SaslConn(ep.bootstrap, tls=ep.context()) as c:
        c.sock.sendall(struct.pack(">i", 100) + b"\x01\x02\x03")
    assert sec.healthy()
    with SaslConn(sec.ep("SSL").bootstrap, tls=sec.ep("SSL").context()) as c:
        assert [b.port for b in c.metadata().brokers] == [sec.ports["SSL"]]


# ================================================================ the mTLS principal, seen by ACLs


def test_client_certificate_subject_is_the_principal_acls_see(broker_factory, pki, tmp_path,
                                                              topic_name):
    """With --ssl-client-auth required and --authorizer acl, an ACL for
    User:CN=alice,O=Sediment Test lets alice's certificate write and read; another
    certificate from the same CA (bob) is refused TOPIC_AUTHORIZATION_FAILED."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, \
        ResourcePatternType, ResourceType
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    bob_cert, bob_key = tlskit._make_leaf(tlskit._name("bob", "Sediment Test"), ca, ca_key,
                                          server=False)
    bob_pem, bob_key_pem = tmp_path / "bob.pem", tmp_path / "bob.key"
    tlskit._write_cert(bob_pem, bob_cert)
    tlskit._write_key(bob_key_pem, bob_key)

    port = free_port()
    b = broker_factory(extra_args=[
        "--listener", f"SSL://127.0.0.1:{port}",
        "--ssl-cert-file", str(pki.server_cert), "--ssl-key-file", str(pki.server_key),
        "--ssl-ca-file", str(pki.ca), "--ssl-client-auth", "required",
        "--authorizer", "acl", "--super-users", "User:ANONYMOUS",
    ])
    create_topic(b.bootstrap, topic_name, partitions=1)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    alice = "User:" + tlskit.CLIENT_SUBJECT_RFC2253
    for operation in (AclOperation.WRITE, AclOperation.READ):
        futs = admin.create_acls([AclBinding(ResourceType.TOPIC, topic_name,
                                             ResourcePatternType.LITERAL, alice, "*", operation,
                                             AclPermissionType.ALLOW)])
        for f in futs.values():
            f.result(timeout=15)

    def ssl_conf(cert: Path, key: Path) -> dict:
        return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SSL",
                "ssl.ca.location": str(pki.ca), "ssl.certificate.location": str(cert),
                "ssl.key.location": str(key)}

    ok = produce_confluent(Producer(ssl_conf(pki.client_cert, pki.client_key)), topic_name,
                           [{"key": b"k", "value": b"from-alice"}])
    assert ok[0].error is None, ok
    refused = produce_confluent(Producer({**ssl_conf(bob_pem, bob_key_pem),
                                          "message.timeout.ms": 10000}),
                                topic_name, [{"key": b"k", "value": b"from-bob"}])
    assert refused[0].error is not None
    assert refused[0].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused[0].error
    recs = read_kp(f"127.0.0.1:{port}", topic_name, [0], consumer_conf={
        "security_protocol": "SSL", "ssl_cafile": str(pki.ca), "ssl_certfile": str(pki.client_cert),
        "ssl_keyfile": str(pki.client_key)})[0]
    assert [r.value for r in recs] == [b"from-alice"]


# ================================================================ settings that would be ignored


@pytest.mark.parametrize("args,message", [
    (["--ssl-cert-file", "/nonexistent.pem"], "--ssl-cert-file applies to SSL and SASL_SSL listeners only"),
    (["--sasl-enabled-mechanisms", "PLAIN"], "--sasl-enabled-mechanisms applies to SASL_PLAINTEXT and SASL_SSL listeners only"),
    (["--listener", "SSL://127.0.0.1:0"], "SSL and SASL_SSL listeners need --ssl-cert-file and --ssl-key-file"),
    (["--listener", "BOGUS://127.0.0.1:0"], "BOGUS is not a security protocol"),
    (["--listener", "SASL_PLAINTEXT://127.0.0.1:0", "--sasl-enabled-mechanisms", "GSSAPI"], "is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    (["--advertised-listener", "SSL://h:1"], "no listener is named SSL"),
    (["--inter-broker-listener-name", "SSL"], "no listener has that name"),
    (["--super-users", "User:x"], "--super-users needs --authorizer acl"),
    (["--authorizer", "ranger"], "expected acl or none"),
    (["--authorizer", "acl", "--super-users", "alice"], "is not a principal like User:alice"),
    (["--listener", "PLAINTEXT://127.0.0.1:0"], "a listener named PLAINTEXT already exists"),
])
def test_settings_that_would_be_ignored_are_refused(tmp_path, args, message):
    cp = subprocess.run([str(sediment_binary()), "serve", "--data-dir", str(tmp_path / "d"),
                         "--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", *args],
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode != 0, cp.stderr
    assert message in cp.stderr, cp.stderr


# ================================================================ brokers authenticate each other


def test_cluster_with_mutual_tls_and_acls_replicates_and_refuses_a_fake_follower(
        cluster_factory, pki, new_topic):
    """Three brokers whose inter-broker listener is SSL with client certificates required and
    --authorizer acl: each broker's principal is its certificate's subject (a super user here),
    so replication works and acks=all keeps an ISR of three; alice, whose certificate the same
    CA signed and who may read the topic, gets TOPIC_AUTHORIZATION_FAILED and no data when she
    fetches as a follower."""
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, \
        ResourcePatternType, ResourceType
    from test_acls import TOPIC_AUTHORIZATION_FAILED, raw_fetch

    broker_principal = "User:CN=localhost,O=Sediment Test"
    c = cluster_factory(3, start=False, extra_args=tls_args(pki) + [
        "--inter-broker-listener-name", "SSL", "--ssl-client-auth", "required",
        "--authorizer", "acl", "--super-users", f"User:ANONYMOUS;{broker_principal}"])
    used = {p for b in c.brokers.values() for p in (b.port, b.http_port)}
    ssl_ports = distinct_ports(3, used)
    eps = {}
    for (i, b), port in zip(sorted(c.brokers.items()), ssl_ports):
        b.options += ["--listener", f"SSL://127.0.0.1:{port}"]
        eps[i] = Endpoint(f"127.0.0.1:{port}", "SSL", ca=pki.ca,
                          cert=pki.client_cert, key=pki.client_key)
    for b in c.brokers.values():
        b.start()
    plain = ",".join(b.bootstrap for b in c.brokers.values())
    topic = new_topic()
    admin = AdminClient({"bootstrap.servers": plain})
    wait_until(lambda: len(admin.list_topics(timeout=10).brokers) == 3, 30,
               what="three brokers in Metadata")
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)],
                        request_timeout=20)[topic].result(timeout=30)
    alice = "User:" + tlskit.CLIENT_SUBJECT_RFC2253
    for operation in (AclOperation.WRITE, AclOperation.READ):
        for f in admin.create_acls([AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                                               alice, "*", operation,
                                               AclPermissionType.ALLOW)]).values():
            f.result(timeout=15)

    def partition():
        try:
            t = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
        except KafkaException:
            return None
        if t is None or t.error is not None or 0 not in t.partitions:
            return None
        return t.partitions[0]

    wait_until(lambda: (lambda p: p and p.leader in eps and set(p.isrs) == {1, 2, 3})(partition()),
               30, what=f"{topic}/0 led, with all three in the ISR")

    def alice_sees_topic(ep: Endpoint) -> bool:
        with SaslConn(ep.bootstrap, tls=ep.context()) as conn:
            return topic in [t.name for t in conn.metadata().topics]

    # Each broker reads ACLs again every second: wait until all three let alice describe it.
    wait_until(lambda: all(alice_sees_topic(ep) for ep in eps.values()), 10,
               what="alice's ACLs to apply on every broker")
    boot = Endpoint(",".join(ep.bootstrap for ep in eps.values()), "SSL", ca=pki.ca,
                    cert=pki.client_cert, key=pki.client_key)
    values = [f"mtls-{i}".encode() for i in range(30)]
    ds = produce_confluent(confluent_producer(boot.bootstrap, **boot.confluent(), acks="all"), topic,
                           [{"key": v, "value": v, "partition": 0} for v in values], flush_timeout=60)
    assert [d.error for d in ds] == [None] * 30, [d.error for d in ds if d.error][:3]
    p = wait_until(lambda: (lambda q: q if q and set(q.isrs) == {1, 2, 3} else None)(partition()),
                   30, what="the ISR to stay all three brokers after acks=all writes")
    # alice may read the topic but has no group: kafka-python's reader assigns, no group.
    recs = read_kp(boot.bootstrap, topic, [0], consumer_conf=boot.kp())[0]
    assert [r.value for r in recs] == values

    leader = eps[p.leader]
    follower_id = next(i for i in (1, 2, 3) if i != p.leader)
    with SaslConn(leader.bootstrap, tls=leader.context()) as conn:
        as_consumer = raw_fetch(conn, topic, [0])
        assert as_consumer[0][0] == 0 and values[0] in as_consumer[0][1], as_consumer
        as_follower = raw_fetch(conn, topic, [0], replica_id=follower_id)
    assert as_follower == {0: (TOPIC_AUTHORIZATION_FAILED, b"")}, as_follower


# ================================================================ PLAIN against a password file


def test_plain_checks_the_password_file_when_one_is_given(broker_factory, tmp_path):
    """With --sasl-plain-users-file, PLAIN checks that file (not the SCRAM store): a listed user
    logs in, a wrong password and an unlisted user are refused alike."""
    users = tmp_path / "plain-users"
    users.write_text("# operators\nfrank:frank-pass:with-colon\n")
    port = free_port()
    b = broker_factory(extra_args=[
        "--listener", f"SASL_PLAINTEXT://127.0.0.1:{port}",
        "--sasl-plain-users-file", str(users), "--failed-authentication-delay-ms", "0"])
    ep = f"127.0.0.1:{port}"
    ok = assert_login_ok(ep, "PLAIN", "frank", "frank-pass:with-colon")
    assert ok.session_lifetime_ms == 0
    bad = assert_login_refused(ep, "PLAIN", "frank", "frank-pass")
    unknown = assert_login_refused(ep, "PLAIN", "nobody", "frank-pass:with-colon")
    assert bad.error_message == unknown.error_message
    assert b.health() == 200


def test_bad_batches_over_tls_get_kafka_error_codes_and_store_nothing(sec, topic_name):
    """The record-level cases of the bad-input suite, inside TLS: a batch whose CRC does not
    match is CORRUPT_MESSAGE, an invalid topic name INVALID_TOPIC_EXCEPTION, the connection
    stays usable, and only the good batch is stored."""
    create_topic(sec.plaintext, topic_name, partitions=1)
    good = rawkafka.idempotent_batch(-1, -1, -1, [b"good"])
    corrupt = bytearray(good)
    corrupt[-1] ^= 0xFF  # a byte of the last record: the CRC no longer matches
    ep = sec.ep("SSL")
    with SaslConn(ep.bootstrap, tls=ep.context()) as c:
        assert rawkafka.produce_result(c.call(rawkafka.produce(topic_name, 0, bytes(corrupt)), 7))[0] == 2
        assert rawkafka.produce_result(c.call(rawkafka.produce("bad/name", 0, good), 7))[0] == 17
        err, base = rawkafka.produce_result(c.call(rawkafka.produce(topic_name, 0, good), 7))
        assert (err, base) == (0, 0)
    recs = read_confluent(sec.plaintext, topic_name, [0])[0]
    assert [r.value for r in recs] == [b"good"]
