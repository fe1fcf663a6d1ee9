"""Runs the Helm chart's own broker start-up on this machine, without Kubernetes.

Renders charts/sediment (helm must be on PATH), takes the brokers' scripts from the rendered
ConfigMap and the broker container's environment from the rendered StatefulSet, and then:

1. runs node-zone.sh (the rack init container's script) against a stand-in `curl` that
   answers like the Kubernetes API, and checks it writes the node's zone, or fails when the
   node has no zone label;
2. runs start.sh as pod <release>-sediment-2 would, with the rendered SEDIMENT_* variables
   (only the addresses, data dir, object store and etcd endpoints are pointed at this
   machine: a local etcd, a file:// store), and checks the broker joins the cluster as broker
   2 in the zone from step 1, answers /health and /ready, and exits 0 on SIGTERM.
3. with SSL/SASL listeners in the values (listeners.*): checks each is advertised as the pod's
   DNS name, fills the mounted Secrets' directories the way the kubelet does (files that are
   symlinks through `..data`) with a certificate made by openssl and a PLAIN users file, and
   then, against the running broker: a TLS handshake verifying the certificate for the pod's
   name on every TLS listener, a SCRAM login (a user made with `sediment users create` through
   PLAINTEXT) on every SASL listener, a PLAIN login from the users file, and a renewal of the
   Secret (the kubelet's `..data` swap) that new TLS connections see without a restart.

Usage: python tests/deploy/smoke_chart.py <repo> <helm args...>
Needs etcd (Debian's etcd-server) and the sediment binary ($SEDIMENT_BIN, else
<repo>/target/debug/sediment), and openssl for step 3; exits 0 with a SKIP line when one is
missing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ZONE = "eu-west-1b"
SCRAM_USER, SCRAM_PASSWORD = "smoke", "smoke-scram-secret"
PLAIN_USER, PLAIN_PASSWORD = "carol", "carol-plain-secret"


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def wait_for(what: str, check, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise SystemExit(f"smoke: {what} did not happen within {timeout:.0f} s\n{tail}")


def render(repo: Path, helm_args: list[str]) -> list[dict]:
    out = subprocess.run(
        ["helm", "template", "t", str(repo / "charts" / "sediment"), "--kube-version", "1.30.0",
         "--set", "rack.fromNodeZone=true", *helm_args],
        check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of env values: defined names only, $$ escapes."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, value)


def fake_curl(bindir: Path, labels: dict[str, str]) -> None:
    """A `curl` printing a node object, pretty-printed as the API server does for curl."""
    import json
    node = {"kind": "Node", "apiVersion": "v1",
            "metadata": {"name": "node-a", "labels": labels,
                         "annotations": {"note": "topology.kubernetes.io/zone is a label"}}}
    body = bindir / "node.json"
    body.write_text(json.dumps(node, indent=2))
    script = bindir / "curl"
    script.write_text(
        "#!/bin/sh\n"
        "# Checks the request looks like the API call, then answers it.\n"
        "case \"$*\" in *'Authorization: Bearer test-token'*) ;; *) echo no token >&2; exit 22 ;; esac\n"
        "case \"$*\" in *'https://kubernetes.default.svc/api/v1/nodes/node-a'*) ;; *) echo bad url >&2; exit 22 ;; esac\n"
        f"cat '{body}'\n")
    script.chmod(0o755)


def openssl(*args: str, cwd: Path) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"smoke: openssl {' '.join(args)} failed:\n{r.stderr}")


def make_ca(d: Path) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=Sediment chart smoke CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_cert(d: Path, names: list[str], serial: int) -> tuple[bytes, bytes]:
    """A broker certificate by the CA in d, as cert-manager would issue it: (tls.crt, tls.key)."""
    san = ",".join([f"DNS:{n}" for n in names] + ["IP:127.0.0.1"])
    (d / "ext.cnf").write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                               "keyUsage=critical,digitalSignature,keyEncipherment\n"
                               "extendedKeyUsage=serverAuth,clientAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr",
            "-subj", f"/O=Sediment chart smoke/CN=broker-{serial}", cwd=d)
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", str(serial), "-days", "2", "-extfile", "ext.cnf", "-out", "tls.crt", cwd=d)
    return (d / "tls.crt").read_bytes(), (d / "tls.key").read_bytes()


def atomic_write(directory: Path, files: dict[str, bytes], generation: int) -> None:
    """What the kubelet does for a Secret volume: the files in a timestamped directory, `..data`
    a symlink to it (swapped by a rename), each key a symlink through `..data`."""
    directory.mkdir(parents=True, exist_ok=True)
    ts = directory / f"..2026_01_01_00_00_{generation:02d}.000000001"
    ts.mkdir()
    for name, data in files.items():
        (ts / name).write_bytes(data)
    old = os.readlink(directory / "..data") if (directory / "..data").is_symlink() else None
    tmp_link = directory / "..data_tmp"
    os.symlink(ts.name, tmp_link)
    os.rename(tmp_link, directory / "..data")
    for name in files:
        if not (directory / name).is_symlink():
            os.symlink(f"..data/{name}", directory / name)
    if old:
        shutil.rmtree(directory / old)


def listener_specs(value: str) -> dict[str, tuple[str, int]]:
    """NAME://HOST:PORT,... as {NAME: (HOST, PORT)}."""
    out = {}
    for spec in filter(None, value.split(",")):
        name, addr = spec.split("://", 1)
        host, port = addr.rsplit(":", 1)
        out[name] = (host, int(port))
    return out


def tls_context(pki: Path, client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if client_cert:
        ctx.load_cert_chain(str(pki / "tls.crt"), str(pki / "tls.key"))
    return ctx


def served_certificate(port: int, ctx: ssl.SSLContext, hostname: str) -> bytes:
    """The certificate a TLS listener presents, verified against the CA for `hostname`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=hostname) as s:
            return s.getpeercert(binary_form=True)


def main() -> int:
    repo = Path(sys.argv[1]).resolve()
    helm_args = sys.argv[2:]
    binary = Path(os.environ.get("SEDIMENT_BIN") or repo / "target" / "debug" / "sediment")
    etcd = shutil.which("etcd")
    if not binary.is_file() or etcd is None:
        print(f"SKIP: chart start-up smoke test needs etcd and {binary}")
        return 0

    docs = render(repo, helm_args)
    secure = any(e["name"] == "SEDIMENT_LISTENERS" for d in docs if d["kind"] == "StatefulSet"
                 for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env", []))
    if secure and shutil.which("openssl") is None:
        print("SKIP: chart start-up smoke test with TLS listeners needs openssl")
        return 0
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-scripts"))
    sts = next(d for d in docs if d["kind"] == "StatefulSet"
               and d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "broker")
    pod = sts["spec"]["template"]["spec"]
    broker = next(c for c in pod["containers"] if c["name"] == "sediment")
    init = next(c for c in pod["initContainers"] if c["name"] == "node-zone")
    pod_name = f"{sts['metadata']['name']}-2"

    with tempfile.TemporaryDirectory(prefix="sediment-chart-smoke-") as tmp:
        tmp = Path(tmp)
        scripts = tmp / "scripts"
        scripts.mkdir()
        for name, text in cm["data"].items():
            (scripts / name).write_text(text)

        # 1. The rack init container's script.
        bindir = tmp / "bin"
        bindir.mkdir()
        sa = tmp / "sa"
        sa.mkdir()
        (sa / "token").write_text("test-token")
        (sa / "ca.crt").write_text("not a real CA")
        init_env = {e["name"]: e.get("value", "") for e in init["env"]}
        assert init["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
        rack_file = tmp / "rack"
        base = {"PATH": f"{bindir}:{os.environ['PATH']}", "SA_DIR": str(sa), "RACK_FILE": str(rack_file),
                "NODE_NAME": "node-a", "ZONE_LABEL": init_env["ZONE_LABEL"]}
        fake_curl(bindir, {"kubernetes.io/hostname": "node-a"})
        r = subprocess.run(["sh", str(scripts / "node-zone.sh")], env=base, capture_output=True, text=True)
        if r.returncode == 0 or rack_file.exists():
            raise SystemExit(f"smoke: node-zone.sh succeeded for a node without a zone label: {r.stderr}")
        fake_curl(bindir, {"kubernetes.io/hostname": "node-a", init_env["ZONE_LABEL"]: ZONE})
        r = subprocess.run(["sh", str(scripts / "node-zone.sh")], env=base, capture_output=True, text=True)
        if r.returncode != 0 or rack_file.read_text() != ZONE:
            raise SystemExit(f"smoke: node-zone.sh did not write the zone: rc={r.returncode} {r.stderr}")
        print(f"smoke: node-zone.sh wrote zone {ZONE}")

        # 2. The broker's start script with the chart's environment.
        etcd_client, etcd_peer, kafka, http = free_ports(4)
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        etcd_log = tmp / "etcd.log"
        etcd_proc = subprocess.Popen(
            [etcd, "--name", "smoke", "--data-dir", str(tmp / "etcd"),
             "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
             "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
             "--initial-cluster", f"smoke=http://127.0.0.1:{etcd_peer}"],
            stdout=etcd_log.open("w"), stderr=subprocess.STDOUT)
        broker_proc = None
        try:
            wait_for("etcd start", lambda: http_status(f"{etcd_url}/health") == 200, 30, etcd_proc, etcd_log)
            env: dict[str, str] = {}
            field = {"metadata.name": pod_name, "metadata.namespace": "default"}
            for e in broker["env"]:
                if "value" in e:
                    env[e["name"]] = expand(str(e["value"]), env)
                elif "fieldRef" in e.get("valueFrom", {}):
                    env[e["name"]] = field[e["valueFrom"]["fieldRef"]["fieldPath"]]
            pod_host = f"{pod_name}.t-sediment-headless.default.svc.cluster.local"
            if "SEDIMENT_KAFKA_ADDR" not in env:
                raise SystemExit("smoke: these values have no PLAINTEXT listener, which the smoke "
                                 "test talks to (listeners.plaintext.enabled or podLocal)")
            if "SEDIMENT_ADVERTISED_ADDR" in env and env["SEDIMENT_ADVERTISED_ADDR"] != f"{pod_host}:9092":
                raise SystemExit(f"smoke: advertised address {env['SEDIMENT_ADVERTISED_ADDR']!r}, "
                                 f"expected {pod_host + ':9092'!r}")
            if "SEDIMENT_ADVERTISED_ADDR" not in env and not env["SEDIMENT_KAFKA_ADDR"].startswith("127.0.0.1:"):
                raise SystemExit(f"smoke: {env['SEDIMENT_KAFKA_ADDR']} is not advertised")
            # 3. Listeners beside PLAINTEXT: each advertised as the pod's name on its own port.
            bound = listener_specs(env.get("SEDIMENT_LISTENERS", ""))
            advertised = listener_specs(env.get("SEDIMENT_ADVERTISED_LISTENERS", ""))
            if advertised != {n: (pod_host, port) for n, (_, port) in bound.items()}:
                raise SystemExit(f"smoke: listeners {bound} advertised as {advertised}, expected "
                                 f"{pod_host} on each listener's port")
            if any(host != "0.0.0.0" for host, _ in bound.values()):
                raise SystemExit(f"smoke: listeners {bound} do not all bind every interface")
            local_ports = dict(zip(bound, free_ports(len(bound)))) if bound else {}
            # The Secrets' files: each secret volume mounted as a directory, filled as the kubelet
            # does; every path the environment names under a mount points into its stand-in.
            volumes = {v["name"]: v for v in pod["volumes"]}
            mounts = {}
            for m in broker["volumeMounts"]:
                if "secret" in volumes.get(m["name"], {}):
                    if "subPath" in m:
                        raise SystemExit(f"smoke: Secret volume {m['name']} is mounted with subPath "
                                         "(never updated when the Secret changes)")
                    mounts[m["mountPath"]] = (tmp / "secrets" / m["name"], volumes[m["name"]]["secret"])
            pki = tmp / "pki"
            cert_dir = None
            if "SEDIMENT_SSL_CERT_FILE" in env:
                pki.mkdir()
                make_ca(pki)
                cert_names = [f"*.t-sediment-headless.default.svc.cluster.local", "t-sediment.default.svc.cluster.local"]
            for name, value in list(env.items()):
                for path, (stand_in, secret) in mounts.items():
                    if value.startswith(path + "/"):
                        env[name] = str(stand_in / value[len(path) + 1:])
                        if name == "SEDIMENT_SSL_CERT_FILE":
                            cert_dir = (stand_in, secret)
            for path, (stand_in, secret) in mounts.items():
                if cert_dir and stand_in == cert_dir[0]:
                    crt, key = make_cert(pki, cert_names, 1)
                    atomic_write(stand_in, {"tls.crt": crt, "tls.key": key,
                                            "ca.crt": (pki / "ca.crt").read_bytes()}, 1)
                elif env.get("SEDIMENT_SASL_PLAIN_USERS_FILE", "").startswith(str(stand_in) + "/"):
                    items = [i["path"] for i in secret.get("items", [])]
                    if Path(env["SEDIMENT_SASL_PLAIN_USERS_FILE"]).name not in items:
                        raise SystemExit(f"smoke: the users file is not an item of Secret volume {secret}")
                    atomic_write(stand_in, {i: f"{PLAIN_USER}:{PLAIN_PASSWORD}\n".encode() for i in items}, 1)
            if "SEDIMENT_SSL_CERT_FILE" in env and cert_dir is None:
                raise SystemExit("smoke: SEDIMENT_SSL_CERT_FILE is not in a mounted Secret")
            # Point what Kubernetes would provide at this machine.
            if bound:
                env["SEDIMENT_LISTENERS"] = ",".join(f"{n}://127.0.0.1:{p}" for n, p in local_ports.items())
                env["SEDIMENT_ADVERTISED_LISTENERS"] = env["SEDIMENT_LISTENERS"]
            if "SEDIMENT_ADVERTISED_ADDR" in env:
                env["SEDIMENT_ADVERTISED_ADDR"] = f"127.0.0.1:{kafka}"
            env.update({
                "SEDIMENT_KAFKA_ADDR": f"127.0.0.1:{kafka}",
                "SEDIMENT_HTTP_ADDR": f"127.0.0.1:{http}",
                "SEDIMENT_DATA_DIR": str(tmp / "data"),
                "SEDIMENT_OBJECT_STORE": f"file://{tmp / 'objects'}",
                "SEDIMENT_ETCD_ENDPOINTS": etcd_url,
                "RACK_FILE": str(rack_file),
                "PATH": f"{binary.parent}:/usr/bin:/bin",
            })
            (tmp / "objects").mkdir()
            log = tmp / "broker.log"
            command = [c.replace("/opt/sediment/scripts", str(scripts)) for c in broker["command"]]
            broker_proc = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
            base_url = f"http://127.0.0.1:{http}"
            wait_for("/health", lambda: http_status(f"{base_url}/health") == 200, 60, broker_proc, log)
            wait_for("/ready", lambda: http_status(f"{base_url}/ready") == 200, 30, broker_proc, log)
            status = subprocess.run([str(binary), "cluster", "status", "-b", f"127.0.0.1:{kafka}"],
                                    capture_output=True, text=True, timeout=30)
            print(status.stdout.rstrip())
            if status.returncode != 0 or not re.search(rf"\b2\b.*{ZONE}", status.stdout):
                raise SystemExit(f"smoke: cluster status does not show broker 2 in {ZONE}:\n"
                                 f"{status.stdout}{status.stderr}")
            started = log.read_text()
            if "--broker-id 2 --rack " + ZONE not in started:
                raise SystemExit(f"smoke: start.sh did not pass --broker-id 2 --rack {ZONE}:\n{started[-2000:]}")
            if bound:
                check_secure_listeners(binary, env, local_ports, pki, cert_dir, cert_names if cert_dir else [],
                                       pod_host, f"127.0.0.1:{kafka}", tmp, log)
            broker_proc.send_signal(signal.SIGTERM)
            grace = int(pod["terminationGracePeriodSeconds"])
            rc = broker_proc.wait(timeout=grace)
            if rc != 0:
                raise SystemExit(f"smoke: broker exited {rc} on SIGTERM\n{log.read_text()[-2000:]}")
            print(f"smoke: start.sh ran broker 2 (rack {ZONE}) from the chart's environment; SIGTERM: exit 0")
        finally:
            for p in (broker_proc, etcd_proc):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
    return 0


def check_secure_listeners(binary: Path, env: dict[str, str], ports: dict[str, int], pki: Path,
                           cert_dir, cert_names: list[str], pod_host: str, plaintext: str,
                           tmp: Path, log: Path) -> None:
    """Step 3, against the running broker."""
    def cli(*args: str, stdin: str | None = None) -> str:
        r = subprocess.run([str(binary), *args], input=stdin, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise SystemExit(f"smoke: sediment {' '.join(args)} exited {r.returncode}:\n{r.stdout}{r.stderr}"
                             f"\n{log.read_text(errors='replace')[-2000:]}")
        return r.stdout

    client_cert = env.get("SEDIMENT_SSL_CLIENT_AUTH", "none") != "none"
    tls_names = [n for n in ports if n in ("SSL", "SASL_SSL")]
    sasl_names = [n for n in ports if n.startswith("SASL_")]
    for name in tls_names:
        served_certificate(ports[name], tls_context(pki, client_cert), pod_host)
    if tls_names:
        print(f"smoke: the Secret's certificate, valid for {pod_host}, on {', '.join(tls_names)}")

    def tls_args(name: str) -> list[str]:
        if name not in tls_names:
            return []
        extra = ["--ssl-ca-file", str(pki / "ca.crt")]
        if client_cert:
            extra += ["--ssl-cert-file", str(pki / "tls.crt"), "--ssl-key-file", str(pki / "tls.key")]
        return extra

    if sasl_names:
        mechanisms = env.get("SEDIMENT_SASL_ENABLED_MECHANISMS", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512").split(",")
        scram = next(m for m in mechanisms if m.startswith("SCRAM-"))
        # The first user goes in through PLAINTEXT, the password on stdin (as NOTES.txt shows).
        cli("users", "create", SCRAM_USER, "--mechanism", scram, "--password-file", "/dev/stdin",
            "-b", plaintext, stdin=SCRAM_PASSWORD + "\n")
        (tmp / "scram.pw").write_text(SCRAM_PASSWORD + "\n")
        (tmp / "plain.pw").write_text(PLAIN_PASSWORD + "\n")
        logins = [(SCRAM_USER, scram, "scram.pw")]
        if "PLAIN" in mechanisms and "SEDIMENT_SASL_PLAIN_USERS_FILE" in env:
            logins.append((PLAIN_USER, "PLAIN", "plain.pw"))
        for name in sasl_names:
            for user, mechanism, pw in logins:
                cli("topics", "list", "-b", f"127.0.0.1:{ports[name]}", "--security-protocol", name,
                    *tls_args(name), "--sasl-mechanism", mechanism, "--sasl-username", user,
                    "--sasl-password-file", str(tmp / pw))
        print(f"smoke: logins of {' and '.join(f'{u} ({m})' for u, m, _ in logins)} on {', '.join(sasl_names)}")

    if tls_names:
        # A renewal: cert-manager rewrites the Secret, the kubelet swaps `..data`.
        stand_in, _ = cert_dir
        reload_s = int(env.get("SEDIMENT_SSL_RELOAD_INTERVAL_MS", "5000")) / 1000
        crt, key = make_cert(pki, cert_names, 2)
        atomic_write(stand_in, {"tls.crt": crt, "tls.key": key, "ca.crt": (pki / "ca.crt").read_bytes()}, 2)
        renewed = ssl.PEM_cert_to_DER_cert(crt.decode())
        name = tls_names[0]
        wait_for(f"the renewed certificate on {name}",
                 lambda: served_certificate(ports[name], tls_context(pki, client_cert), pod_host) == renewed,
                 reload_s * 3 + 10, None, log)
        print(f"smoke: a renewed Secret reached {name} within the reload interval ({reload_s:g} s), no restart")


if __name__ == "__main__":
    sys.exit(main())
