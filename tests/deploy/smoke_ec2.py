"""Runs terraform/modules/brokers' start-up pieces on this machine, without EC2.

1. Renders the brokers' and etcd's user data templates with `terraform console` (the
   templatefile() calls the modules make, with example values) and checks them with
   `bash -n`, and that the start scripts inside are the files in modules/brokers/files.
2. Runs files/start.sh (the systemd unit's ExecStart) for several brokers against a local
   etcd with the real sediment binary, as instances of the autoscaling group would:
   a fresh instance claims the lowest free id, a restarted one keeps the id its data
   directory names, an id freed by a stopped broker is claimed again, and free-broker-id.py
   fails when every id up to BROKER_ID_MAX is live.

Usage: python tests/deploy/smoke_ec2.py <repo>   (terraform on PATH for step 1)
Needs etcd and the sediment binary ($SEDIMENT_BIN, else <repo>/target/debug/sediment) for
step 2; prints SKIP for it when either is missing.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smoke_chart import free_ports, http_status, wait_for  # noqa: E402


def render_user_data(repo: Path, tmp: Path) -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        raise SystemExit("smoke: terraform is not on PATH")
    brokers = repo / "terraform" / "modules" / "brokers"
    etcd = repo / "terraform" / "modules" / "etcd"
    exprs = {
        "brokers": f"""templatefile("{brokers}/templates/user-data.sh.tftpl", {{
            region = "eu-west-1", kafka_port = 9092, http_port = 9464, log_level = "info",
            broker_id_max = 64, wal_disk_model = "Amazon Elastic Block Store",
            binary_url = "s3://artifacts/sediment", binary_sha256 = "{'0' * 64}",
            stop_timeout_seconds = 120,
            static_env = base64encode("SEDIMENT_OBJECT_STORE=s3://b/p\\n"),
            start_sh = filebase64("{brokers}/files/start.sh"),
            free_broker_id_py = filebase64("{brokers}/files/free-broker-id.py") }})""",
        "etcd": f"""templatefile("{etcd}/templates/user-data.sh.tftpl", {{
            name = "sediment-etcd-0", ip = "10.0.1.10",
            initial_cluster = "sediment-etcd-0=http://10.0.1.10:2380",
            cluster_token = "sediment-etcd", auto_compaction_retention = "1" }})""",
    }
    workdir = tmp / "console"
    workdir.mkdir()
    (tmp / "terraformrc").write_text("")
    for name, expr in exprs.items():
        r = subprocess.run([terraform, "console"], input=" ".join(expr.split()) + "\n", cwd=workdir,
                           capture_output=True, text=True,
                           env={**os.environ, "TF_CLI_CONFIG_FILE": str(tmp / "terraformrc")})
        if r.returncode != 0:
            raise SystemExit(f"smoke: rendering the {name} user data failed:\n{r.stderr}")
        out = r.stdout.strip()
        # Terraform 1.0 prints a multi-line string as a heredoc.
        m = re.fullmatch(r"<<EOT\n(.*)\nEOT", out, re.S)
        text = m.group(1) + "\n" if m else out
        script = tmp / f"{name}-user-data.sh"
        script.write_text(text)
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"smoke: the rendered {name} user data is not valid bash:\n{r.stderr}")
        if "${" in text.replace("$${", ""):
            pass  # bash's own ${...} are fine; templatefile would have failed on unknown names
        print(f"smoke: {name} user data renders ({len(text.encode())} bytes, limit 16384) and bash -n accepts it")
        if len(text.encode()) > 16384:
            raise SystemExit(f"smoke: the {name} user data exceeds EC2's 16 KiB")
        if name == "brokers":
            for file, var in [("start.sh", "start.sh"), ("free-broker-id.py", "free-broker-id.py")]:
                m = re.search(r"echo '([A-Za-z0-9+/=]+)' \| base64 -d > /usr/local/lib/sediment/" + re.escape(var), text)
                if not m or base64.b64decode(m.group(1)) != (brokers / "files" / file).read_bytes():
                    raise SystemExit(f"smoke: the user data does not carry files/{file}")


class Instance:
    """One 'instance': a data directory and ports, started through files/start.sh."""

    def __init__(self, repo: Path, tmp: Path, name: str, base_env: dict[str, str]):
        self.name = name
        self.kafka, self.http = free_ports(2)
        self.data = tmp / name
        self.log = tmp / f"{name}.log"
        self.env = {**base_env,
                    "SEDIMENT_DATA_DIR": str(self.data),
                    "SEDIMENT_KAFKA_ADDR": f"127.0.0.1:{self.kafka}",
                    "SEDIMENT_ADVERTISED_ADDR": f"127.0.0.1:{self.kafka}",
                    "SEDIMENT_HTTP_ADDR": f"127.0.0.1:{self.http}",
                    "SEDIMENT_RACK": f"zone-{name}"}
        self.start_sh = repo / "terraform" / "modules" / "brokers" / "files" / "start.sh"
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> None:
        self.proc = subprocess.Popen(["bash", str(self.start_sh)], env=self.env,
                                     stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        wait_for(f"{self.name} /ready", lambda: http_status(f"http://127.0.0.1:{self.http}/ready") == 200,
                 60, self.proc, self.log)

    def broker_id(self) -> int:
        claims = re.findall(r"start.sh: .*(?:claiming broker id|names broker) (\d+)", self.log.read_text())
        return int(claims[-1])

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=60)
        if rc != 0:
            raise SystemExit(f"smoke: {self.name} exited {rc} on SIGTERM\n{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def main() -> int:
    repo = Path(sys.argv[1]).resolve()
    with tempfile.TemporaryDirectory(prefix="sediment-ec2-smoke-") as tmp:
        tmp = Path(tmp)
        render_user_data(repo, tmp)

        binary = Path(os.environ.get("SEDIMENT_BIN") or repo / "target" / "debug" / "sediment")
        etcd = shutil.which("etcd")
        if not binary.is_file() or etcd is None:
            print(f"SKIP: broker id claim smoke test needs etcd and {binary}")
            return 0
        client, peer = free_ports(2)
        etcd_url = f"http://127.0.0.1:{client}"
        etcd_log = tmp / "etcd.log"
        etcd_proc = subprocess.Popen(
            [etcd, "--name", "smoke", "--data-dir", str(tmp / "etcd"),
             "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"smoke=http://127.0.0.1:{peer}"],
            stdout=etcd_log.open("w"), stderr=subprocess.STDOUT)
        (tmp / "objects").mkdir()
        base_env = {"PATH": "/usr/bin:/bin", "SEDIMENT_BIN": str(binary),
                    "SEDIMENT_ETCD_ENDPOINTS": etcd_url,
                    "SEDIMENT_ETCD_PREFIX": "/smoke/",
                    "SEDIMENT_OBJECT_STORE": f"file://{tmp / 'objects'}",
                    "BROKER_ID_MAX": "3", "RUST_LOG": "warn"}
        instances: list[Instance] = []
        try:
            wait_for("etcd start", lambda: http_status(f"{etcd_url}/health") == 200, 30, etcd_proc, etcd_log)
            a = Instance(repo, tmp, "a", base_env)
            b = Instance(repo, tmp, "b", base_env)
            instances += [a, b]
            a.start()
            b.start()
            got = (a.broker_id(), b.broker_id())
            if got != (1, 2):
                raise SystemExit(f"smoke: fresh instances claimed {got}, expected (1, 2)")
            b.stop()
            b.start()
            if b.broker_id() != 2:
                raise SystemExit(f"smoke: restarted instance b claimed {b.broker_id()}, expected its own 2")
            c = Instance(repo, tmp, "c", base_env)
            instances.append(c)
            c.start()
            if c.broker_id() != 3:
                raise SystemExit(f"smoke: instance c claimed {c.broker_id()}, expected 3")
            # An endpoint that does not answer is skipped for the next.
            free = subprocess.run([sys.executable, str(c.start_sh.parent / "free-broker-id.py")],
                                  env={**base_env, "SEDIMENT_ETCD_ENDPOINTS": f"http://127.0.0.1:1,{etcd_url}"},
                                  capture_output=True, text=True)
            if free.returncode == 0 or "every id 1..3" not in free.stderr:
                raise SystemExit(f"smoke: free-broker-id.py with ids 1..3 live: rc={free.returncode} "
                                 f"{free.stdout}{free.stderr}")
            a.stop()  # its lease is revoked at shutdown: id 1 is free at once
            d = Instance(repo, tmp, "d", base_env)
            instances.append(d)
            d.start()
            if d.broker_id() != 1:
                raise SystemExit(f"smoke: instance d claimed {d.broker_id()}, expected the freed 1")
            # Two fresh instances at once pick the same free id; the broker refuses it to the
            # second, which exits non-zero, and its next start (systemd's Restart=) claims another.
            race = {**base_env, "BROKER_ID_MAX": "5"}
            e, f = Instance(repo, tmp, "e", race), Instance(repo, tmp, "f", race)
            instances += [e, f]
            e.start(wait=False)
            f.start(wait=False)
            wait_for("one of two racing instances to give up", lambda: e.proc.poll() is not None or f.proc.poll() is not None,
                     30, None, e.log)
            loser, winner = (e, f) if e.proc.poll() is not None else (f, e)
            winner.wait_ready()
            if loser.proc.returncode == 0 or "held by another live broker process" not in loser.log.read_text():
                raise SystemExit(f"smoke: the racing loser exited {loser.proc.returncode}:\n{loser.log.read_text()[-2000:]}")
            loser.start()
            if (winner.broker_id(), loser.broker_id()) != (4, 5):
                raise SystemExit(f"smoke: after the race: winner {winner.broker_id()}, loser {loser.broker_id()}")
            print("smoke: start.sh claimed ids 1, 2, 3 for fresh instances, kept 2 across a restart, "
                  "reclaimed 1 after its broker stopped; free-broker-id.py refuses when 1..3 are live; "
                  "of two instances racing for id 4 one got it, the other was refused and then claimed 5")
        finally:
            for i in instances:
                i.kill()
            etcd_proc.kill()
            etcd_proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
