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

Usage: python tests/deploy/smoke_chart.py <repo> <helm args...>
Needs etcd (Debian's etcd-server) and the sediment binary ($SEDIMENT_BIN, else
<repo>/target/debug/sediment); exits 0 with a SKIP line when either is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ZONE = "eu-west-1b"


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


def main() -> int:
    repo = Path(sys.argv[1]).resolve()
    helm_args = sys.argv[2:]
    binary = Path(os.environ.get("SEDIMENT_BIN") or repo / "target" / "debug" / "sediment")
    etcd = shutil.which("etcd")
    if not binary.is_file() or etcd is None:
        print(f"SKIP: chart start-up smoke test needs etcd and {binary}")
        return 0

    docs = render(repo, helm_args)
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
            want = f"{pod_name}.t-sediment-headless.default.svc.cluster.local:9092"
            if env["SEDIMENT_ADVERTISED_ADDR"] != want:
                raise SystemExit(f"smoke: advertised address {env['SEDIMENT_ADVERTISED_ADDR']!r}, expected {want!r}")
            # Point what Kubernetes would provide at this machine.
            env.update({
                "SEDIMENT_KAFKA_ADDR": f"127.0.0.1:{kafka}",
                "SEDIMENT_ADVERTISED_ADDR": f"127.0.0.1:{kafka}",
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


if __name__ == "__main__":
    sys.exit(main())
