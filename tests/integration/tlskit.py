"""Test certificates for the TLS / mTLS tests, made at test time (nothing is checked in).

`make_pki(directory)` writes, with the `cryptography` package:
  * ca.pem / ca.key                 a CA ("Sediment Test CA 1")
  * server.pem / server.key         server certificate for IP 127.0.0.1 and DNS localhost, by CA 1
  * client.pem / client.key         client certificate CN=alice,O=Sediment Test, by CA 1
  * selfsigned.pem / selfsigned.key a self-signed client certificate (no CA trusts it)
  * expired.pem / expired.key       a client certificate by CA 1 that expired yesterday
  * ca2.pem / ca2.key               a second CA ("Sediment Test CA 2")
  * server2.pem / server2.key       server certificate for 127.0.0.1 / localhost, by CA 2
All keys are RSA 2048 in unencrypted PKCS#8 PEM. Run `python tlskit.py DIR` to make them by hand.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_SUBJECT_RFC2253 = "CN=alice,O=Sediment Test"
"""The RFC 2253 form of client.pem's subject (the mTLS principal is "User:" + this)."""


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    selfsigned_cert: Path
    selfsigned_key: Path
    expired_cert: Path
    expired_key: Path
    ca2: Path
    ca2_key: Path
    server2_cert: Path
    server2_key: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str, org: str | None = None) -> x509.Name:
    # ASN.1 order O, CN: the RFC 2253 string (last RDN first) is then "CN=...,O=...".
    attrs = []
    if org is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _make_ca(cn: str):
    key = _key()
    name = _name(cn, "Sediment Test")
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _make_leaf(subject: x509.Name, issuer_cert: x509.Certificate | None, issuer_key, *,
               server: bool, not_before: datetime.datetime | None = None,
               not_after: datetime.datetime | None = None):
    """A leaf certificate; issuer_cert None = self-signed with its own new key."""
    key = _key()
    now = _now()
    if issuer_cert is None:
        issuer_name, signing_key = subject, key
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    else:
        issuer_name, signing_key = issuer_cert.subject, issuer_key
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())
    b = (x509.CertificateBuilder()
         .subject_name(subject).issuer_name(issuer_name)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(not_before or now - datetime.timedelta(hours=1))
         .not_valid_after(not_after or now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                      key_encipherment=True, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=False, crl_sign=False,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage(
             [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server
             else [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(aki, critical=False))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
    return b.sign(signing_key, hashes.SHA256()), key


def make_pki(directory: Path | str) -> Pki:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    p = Pki(dir=d, ca=d / "ca.pem", ca_key=d / "ca.key",
            server_cert=d / "server.pem", server_key=d / "server.key",
            client_cert=d / "client.pem", client_key=d / "client.key",
            selfsigned_cert=d / "selfsigned.pem", selfsigned_key=d / "selfsigned.key",
            expired_cert=d / "expired.pem", expired_key=d / "expired.key",
            ca2=d / "ca2.pem", ca2_key=d / "ca2.key",
            server2_cert=d / "server2.pem", server2_key=d / "server2.key")
    now = _now()

    ca, ca_key = _make_ca("Sediment Test CA 1")
    _write_cert(p.ca, ca)
    _write_key(p.ca_key, ca_key)

    cert, key = _make_leaf(_name("localhost", "Sediment Test"), ca, ca_key, server=True)
    _write_cert(p.server_cert, cert)
    _write_key(p.server_key, key)

    cert, key = _make_leaf(_name("alice", "Sediment Test"), ca, ca_key, server=False)
    assert cert.subject.rfc4514_string() == CLIENT_SUBJECT_RFC2253, cert.subject.rfc4514_string()
    _write_cert(p.client_cert, cert)
    _write_key(p.client_key, key)

    cert, key = _make_leaf(_name("mallory", "Sediment Test"), None, None, server=False)
    _write_cert(p.selfsigned_cert, cert)
    _write_key(p.selfsigned_key, key)

    cert, key = _make_leaf(_name("alice", "Sediment Test"), ca, ca_key, server=False,
                           not_before=now - datetime.timedelta(days=10),
                           not_after=now - datetime.timedelta(days=1))
    _write_cert(p.expired_cert, cert)
    _write_key(p.expired_key, key)

    ca2, ca2_key = _make_ca("Sediment Test CA 2")
    _write_cert(p.ca2, ca2)
    _write_key(p.ca2_key, ca2_key)

    cert, key = _make_leaf(_name("localhost", "Sediment Test"), ca2, ca2_key, server=True)
    _write_cert(p.server2_cert, cert)
    _write_key(p.server2_key, key)
    return p


def replace_file(dst: Path, src: Path) -> None:
    """Atomically give `dst` the contents of `src` (write a temp file beside dst, os.replace)."""
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(src.read_bytes())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def client_context(ca: Path | None, cert: Path | None = None, key: Path | None = None,
                   check_hostname: bool = True) -> ssl.SSLContext:
    """An ssl.SSLContext for a Python client: trusts `ca` only, presents cert/key if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if ca is not None:
        ctx.load_verify_locations(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tlskit.py DIR")
    pki = make_pki(sys.argv[1])
    for field, value in pki.__dict__.items():
        print(f"{field}: {value}")
