"""kcat against Sediment, on two librdkafka versions.

Every test runs twice:
  * system:  Debian's kcat with Debian's librdkafka (2.0.2, an "old client"),
  * bundled: the same kcat with LD_LIBRARY_PATH pointing at the librdkafka
             shipped inside the confluent-kafka wheel (a current client).
Neither variant is ever skipped: a missing kcat or library fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import confluent_kafka
import pytest

from kafkautil import create_topic

KCAT_TIMEOUT_S = 60


class Kcat:
    def __init__(self, variant: str, env: dict, expected_version: str | None):
        self.variant = variant
        self.env = env
        self.expected_version = expected_version
        self.path = shutil.which("kcat")

    def run(self, *args: str, input: str | None = None, timeout: float = KCAT_TIMEOUT_S,
            check: bool = True) -> subprocess.CompletedProcess:
        try:
            cp = subprocess.run([self.path, *args], input=input, env=self.env, text=True,
                                capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"kcat ({self.variant}) {' '.join(args)} did not finish within {timeout}s\n"
                f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}") from None
        if check and cp.returncode != 0:
            raise AssertionError(
                f"kcat ({self.variant}) {' '.join(args)} exited {cp.returncode}\n"
                f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}")
        return cp

    def librdkafka_version(self) -> str:
        out = self.run("-V", timeout=10).stdout
        m = re.search(r"librdkafka (\S+)", out)
        assert m, f"cannot find the librdkafka version in `kcat -V` output:\n{out}"
        return m.group(1)


def bundled_librdkafka() -> Path:
    """The librdkafka-*.so.1 inside the installed confluent_kafka.libs folder."""
    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka-*.so.1"))
    if not found:
        pytest.fail(f"no librdkafka-*.so.1 in {libs}: is confluent-kafka installed from its "
                    f"manylinux wheel?", pytrace=False)
    return found[0]


@pytest.fixture(params=["system", "bundled"])
def kcat(request, tmp_path) -> Kcat:
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed (apt-get install kcat; tests/run.sh does it)",
                    pytrace=False)
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    if request.param == "system":
        k = Kcat("system", env, None)
        version = k.librdkafka_version()
        assert version != confluent_kafka.libversion()[0], (
            f"Debian's kcat already runs on librdkafka {version}, the bundled version: "
            f"the two runs would test the same library")
    else:
        libdir = tmp_path / "librdkafka-bundled"
        libdir.mkdir()
        (libdir / "librdkafka.so.1").symlink_to(bundled_librdkafka())
        env["LD_LIBRARY_PATH"] = str(libdir)
        k = Kcat("bundled", env, confluent_kafka.libversion()[0])
        version = k.librdkafka_version()
        assert version == k.expected_version, (
            f"kcat with LD_LIBRARY_PATH={libdir} reports librdkafka {version}, "
            f"expected the bundled {k.expected_version}")
    print(f"kcat variant {request.param}: librdkafka {version}")
    return k


def test_metadata_list(broker, kcat, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2)
    out = kcat.run("-b", broker.bootstrap, "-L").stdout
    assert re.search(rf"\bbroker 0 at 127\.0\.0\.1:{broker.port}\b", out), out
    assert f'topic "{topic_name}" with 2 partitions' in out, out
    for p in (0, 1):
        assert re.search(rf"partition {p}, leader 0\b", out), out

    # Metadata for just that topic.
    out = kcat.run("-b", broker.bootstrap, "-L", "-t", topic_name).stdout
    assert f'topic "{topic_name}" with 2 partitions' in out, out


def test_metadata_json(broker, kcat, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=3)
    md = json.loads(kcat.run("-b", broker.bootstrap, "-L", "-J").stdout)
    brokers = {b["id"]: b["name"] for b in md["brokers"]}
    assert brokers == {0: f"127.0.0.1:{broker.port}"}, md["brokers"]
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic_name in topics, sorted(topics)
    t = topics[topic_name]
    assert "error" not in t or not t["error"], t
    parts = sorted(t["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2], parts
    assert all(p["leader"] == 0 for p in parts), parts


def test_produce_consume_keyed_in_order(broker, kcat, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    lines = [f"key{i % 7}:value-{i}-{'x' * (i % 13)}" for i in range(200)]
    payload = "\n".join(lines) + "\n"
    kcat.run("-b", broker.bootstrap, "-t", topic_name, "-P", "-K:", input=payload)
    out = kcat.run("-b", broker.bootstrap, "-t", topic_name, "-C", "-e", "-q",
                   "-o", "beginning", "-f", "%k:%s\n").stdout
    assert out.splitlines() == lines


def test_produce_consume_json_offsets(broker, kcat, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    lines = [f"k{i}:v{i}" for i in range(50)]
    kcat.run("-b", broker.bootstrap, "-t", topic_name, "-P", "-K:", input="\n".join(lines) + "\n")
    out = kcat.run("-b", broker.bootstrap, "-t", topic_name, "-C", "-e", "-q",
                   "-o", "beginning", "-J").stdout
    msgs = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [m["offset"] for m in msgs] == list(range(50)), msgs[:3]
    assert [(m["key"], m["payload"]) for m in msgs] == [tuple(l.split(":")) for l in lines]
    assert all(m["partition"] == 0 and m["topic"] == topic_name for m in msgs)
    assert all(isinstance(m.get("ts"), int) and m["ts"] > 0 for m in msgs), msgs[:3]


def test_produce_consume_multi_partition_key_order(broker, kcat, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=3)
    lines = [f"k{i % 10}:{i}" for i in range(300)]
    kcat.run("-b", broker.bootstrap, "-t", topic_name, "-P", "-K:", input="\n".join(lines) + "\n")
    out = kcat.run("-b", broker.bootstrap, "-t", topic_name, "-C", "-e", "-q",
                   "-o", "beginning", "-f", "%p %o %k %s\n").stdout
    rows = [line.split(" ") for line in out.splitlines()]
    assert len(rows) == 300, out[-2000:]
    per_part = defaultdict(list)
    per_key = defaultdict(list)
    key_parts = defaultdict(set)
    for p, o, k, v in rows:
        per_part[int(p)].append(int(o))
        per_key[k].append(int(v))
        key_parts[k].add(int(p))
    for p, offs in per_part.items():
        assert offs == list(range(len(offs))), f"partition {p} offsets {offs[:20]}..."
    for k, vals in per_key.items():
        assert vals == sorted(vals), f"key {k} out of order: {vals}"
        assert len(key_parts[k]) == 1, f"key {k} in partitions {key_parts[k]}"
    assert sorted(int(r[3]) for r in rows) == list(range(300))


def test_produce_auto_creates_topic(broker, kcat, topic_name):
    # default broker: --auto-create-topics true, --num-partitions 1
    kcat.run("-b", broker.bootstrap, "-t", topic_name, "-P", "-K:", input="a:1\nb:2\n")
    out = kcat.run("-b", broker.bootstrap, "-t", topic_name, "-C", "-e", "-q",
                   "-o", "beginning", "-f", "%k:%s\n").stdout
    assert out.splitlines() == ["a:1", "b:2"]
    md = json.loads(kcat.run("-b", broker.bootstrap, "-L", "-J", "-t", topic_name).stdout)
    t = {t["topic"]: t for t in md["topics"]}[topic_name]
    assert len(t["partitions"]) == 1, t
