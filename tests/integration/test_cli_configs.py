"""`sediment topics alter` and `sediment configs describe|alter`: partitions added, topic and
broker configs set and deleted through the CLI, checked with confluent-kafka's admin client,
and refusals that name Kafka's error."""

from __future__ import annotations

import subprocess

from confluent_kafka.admin import ConfigResource

from conftest import sediment_binary
from kafkautil import confluent_admin, create_topic, topic_partition_counts


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cp = subprocess.run([str(sediment_binary()), *args], capture_output=True, text=True, timeout=60)
    if check:
        assert cp.returncode == 0, cp.stderr
    return cp


def topic_config(bootstrap: str, topic: str, key: str):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    admin = confluent_admin(bootstrap)  # kept alive until the future resolves
    got = admin.describe_configs([res])[res].result(timeout=30)
    return got[key]


def test_topics_alter_adds_partitions_and_changes_configs(broker, topic_name):
    b = broker.bootstrap
    create_topic(b, topic_name, partitions=1)
    run("topics", "-b", b, "alter", topic_name, "--partitions", "3",
        "--config", "retention.ms=3600000", "--config", "max.message.bytes=2000000")
    assert topic_partition_counts(confluent_admin(b))[topic_name] == 3
    assert topic_config(b, topic_name, "retention.ms").value == "3600000"
    assert topic_config(b, topic_name, "max.message.bytes").value == "2000000"
    out = run("configs", "-b", b, "describe", "--topic", topic_name).stdout
    line = next(l for l in out.splitlines() if l.startswith("retention.ms "))
    assert "3600000" in line and line.rstrip().endswith("topic"), line

    run("topics", "-b", b, "alter", topic_name, "--delete-config", "retention.ms")
    entry = topic_config(b, topic_name, "retention.ms")
    assert entry.is_default and entry.value == "604800000", entry

    cp = run("topics", "-b", b, "alter", topic_name, "--partitions", "2", check=False)
    assert cp.returncode != 0 and "InvalidPartitions" in cp.stderr, cp.stderr
    cp = run("topics", "-b", b, "alter", topic_name, "--config", "retention.ms=soon", check=False)
    assert cp.returncode != 0 and "InvalidConfig" in cp.stderr, cp.stderr
    cp = run("topics", "-b", b, "alter", topic_name, check=False)
    assert cp.returncode != 0 and "nothing to change" in cp.stderr


def test_configs_alter_per_broker_and_cluster_wide(broker, topic_name):
    b = broker.bootstrap
    create_topic(b, topic_name, partitions=1)
    run("configs", "-b", b, "alter", "--broker", str(broker.broker_id),
        "--set", "log.retention.ms=7200000")
    out = run("configs", "-b", b, "describe", "--broker", str(broker.broker_id)).stdout
    line = next(l for l in out.splitlines() if l.startswith("log.retention.ms "))
    assert "7200000" in line and "dynamic broker" in line, line
    # The broker-level default reaches the topic (no topic override).
    assert topic_config(b, topic_name, "retention.ms").value == "7200000"

    run("configs", "-b", b, "alter", "--cluster", "--set", "log.retention.ms=5400000")
    run("configs", "-b", b, "alter", "--broker", str(broker.broker_id),
        "--delete", "log.retention.ms")
    assert topic_config(b, topic_name, "retention.ms").value == "5400000", "cluster default"
    run("configs", "-b", b, "alter", "--cluster", "--delete", "log.retention.ms")
    assert topic_config(b, topic_name, "retention.ms").value == "604800000"

    cp = run("configs", "-b", b, "alter", "--broker", str(broker.broker_id),
             "--set", "num.io.threads=4", check=False)
    assert cp.returncode != 0 and "InvalidConfig" in cp.stderr, cp.stderr
    cp = run("configs", "-b", b, "describe", check=False)
    assert cp.returncode != 0 and "--topic" in cp.stderr, cp.stderr
