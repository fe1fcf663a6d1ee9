"""`sediment produce` and `sediment consume`: records from stdin to a topic and back, keys
placed where Kafka's default partitioner (librdkafka's murmur2_random) puts them, headers,
start offsets and timestamps, JSON output, counts, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess

from confluent_kafka import Producer

from conftest import sediment_binary
from kafkautil import create_topic, read_confluent


def run(args: list[str], stdin: str = "", env: dict | None = None, check: bool = True):
    cp = subprocess.run([str(sediment_binary()), *args], input=stdin.encode(), capture_output=True,
                        timeout=60, env={**os.environ, **(env or {})})
    if check:
        assert cp.returncode == 0, cp.stderr.decode()
    return cp


def test_produce_then_consume_as_json_with_keys_where_kafka_puts_them(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=4)
    lines = [f"key-{i}:value-{i}" for i in range(60)]
    cp = run(["produce", "-b", broker.bootstrap, topic_name, "-K", ":", "-H", "src=cli",
              "--batch-records", "7"], stdin="\n".join(lines) + "\n")
    assert b"produced 60 records" in cp.stderr, cp.stderr

    # Where librdkafka's Java-compatible partitioner puts the same keys.
    oracle = {}
    p = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random"})
    other = topic_name + "-oracle"
    create_topic(broker.bootstrap, other, partitions=4)
    for i in range(60):
        def cb(err, msg, i=i):
            assert err is None, err
            oracle[f"key-{i}"] = msg.partition()
        p.produce(other, key=f"key-{i}", value=b"x", on_delivery=cb)
    p.flush(30)
    assert len(oracle) == 60

    out = run(["consume", "-b", broker.bootstrap, topic_name, "-e", "-f", "json"]).stdout.decode()
    recs = [json.loads(l) for l in out.splitlines()]
    assert len(recs) == 60, out[:500]
    assert {r["value"] for r in recs} == {f"value-{i}" for i in range(60)}
    for r in recs:
        assert r["topic"] == topic_name and r["headers"] == {"src": "cli"}
        assert r["partition"] == oracle[r["key"]], r
        assert r["timestamp"] > 0
    # Offsets are dense per partition, and what confluent-kafka reads agrees.
    got = read_confluent(broker.bootstrap, topic_name, range(4))
    for part, rs in got.items():
        mine = sorted(r["offset"] for r in recs if r["partition"] == part)
        assert mine == list(range(len(rs)))
        assert [x.value for x in rs] == [
            r["value"].encode() for r in sorted((r for r in recs if r["partition"] == part),
                                                key=lambda r: r["offset"])]


def test_consume_from_an_offset_or_a_timestamp_with_a_count(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        p.produce(topic_name, key=f"k{i}", value=f"v{i}", timestamp=1_700_000_000_000 + i * 1000)
    p.flush(30)
    out = run(["consume", "-b", broker.bootstrap, topic_name, "-p", "0", "-o", "2", "-c", "3",
               "-K", "="]).stdout.decode()
    assert out.splitlines() == ["k2=v2", "k3=v3", "k4=v4"]
    out = run(["consume", "-b", broker.bootstrap, topic_name, "--from-timestamp",
               str(1_700_000_000_000 + 7000), "-e"]).stdout.decode()
    assert out.splitlines() == ["v7", "v8", "v9"]
    # -o end with -e: nothing new, so nothing printed and a clean exit.
    assert run(["consume", "-b", broker.bootstrap, topic_name, "-o", "end", "-e"]).stdout == b""
    # SEDIMENT_BOOTSTRAP stands in for -b.
    out = run(["consume", topic_name, "-c", "1"], env={"SEDIMENT_BOOTSTRAP": broker.bootstrap})
    assert out.stdout.decode().splitlines() == ["v0"]


def test_clear_errors_for_bad_input(broker, topic_name):
    cp = run(["produce", "-b", broker.bootstrap, "no-such-topic-here"], stdin="x\n", check=False)
    assert cp.returncode != 0
    assert b"UnknownTopicOrPartition" in cp.stderr and b"sediment topics create" in cp.stderr
    create_topic(broker.bootstrap, topic_name, partitions=2)
    cp = run(["produce", "-b", broker.bootstrap, topic_name, "-H", "novalue"], stdin="x\n",
             check=False)
    assert cp.returncode != 0 and b"key=value" in cp.stderr, cp.stderr
    cp = run(["produce", "-b", broker.bootstrap, topic_name, "-p", "5"], stdin="x\n", check=False)
    assert cp.returncode != 0 and b"partitions 0..1" in cp.stderr, cp.stderr
    cp = run(["consume", "-b", broker.bootstrap, topic_name, "-o", "soon"], check=False)
    assert cp.returncode != 0 and b"beginning, end or a number" in cp.stderr, cp.stderr
    # A record larger than the topic allows is refused by the broker, named.
    cp = run(["produce", "-b", broker.bootstrap, topic_name], stdin="y" * 2_000_000 + "\n",
             check=False)
    assert cp.returncode != 0 and b"MessageTooLarge" in cp.stderr, cp.stderr


def test_shell_completion_scripts(tmp_path):
    for shell in ("bash", "zsh", "fish"):
        out = run(["completion", shell]).stdout.decode()
        assert "sediment" in out and "consume" in out, shell
