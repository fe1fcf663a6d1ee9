"""Topic administration through confluent-kafka's AdminClient and kafka-python's KafkaAdminClient."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic, ResourceType

from kafkautil import (
    OP_TIMEOUT_S,
    confluent_admin,
    confluent_producer,
    create_topic,
    kafka_error_of,
    produce_confluent,
    read_confluent,
    topic_partition_counts,
    wait_for_topic,
    wait_until,
    watermarks_confluent,
)


def _create_error(bootstrap: str, name: str, partitions: int = 1) -> KafkaError | None:
    """Try to create `name`; return the KafkaError it failed with (None on success)."""
    admin = confluent_admin(bootstrap)
    fut = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                              request_timeout=OP_TIMEOUT_S)[name]
    try:
        fut.result(timeout=OP_TIMEOUT_S)
        return None
    except Exception as e:  # noqa: BLE001 - the test inspects it
        err = kafka_error_of(e)
        assert err is not None, f"create_topics({name!r}) failed without a KafkaError: {e!r}"
        return err


def test_create_list_grow_describe(broker, topic_name):
    admin = confluent_admin(broker.bootstrap)
    create_topic(broker.bootstrap, topic_name, partitions=3)
    assert topic_partition_counts(admin)[topic_name] == 3

    fut = admin.create_partitions([NewPartitions(topic_name, 5)],
                                  request_timeout=OP_TIMEOUT_S)[topic_name]
    fut.result(timeout=OP_TIMEOUT_S)
    wait_for_topic(broker.bootstrap, topic_name, 5)

    # The new partitions take data.
    p = confluent_producer(broker.bootstrap)
    d = produce_confluent(p, topic_name, [{"key": b"k", "value": b"in-p4", "partition": 4}])
    assert d[0].error is None and d[0].partition == 4 and d[0].offset == 0, d
    recs = read_confluent(broker.bootstrap, topic_name, [4])
    assert [(r.offset, r.value) for r in recs[4]] == [(0, b"in-p4")]

    res = ConfigResource(ResourceType.TOPIC, topic_name)
    configs = admin.describe_configs([res], request_timeout=OP_TIMEOUT_S)[res].result(timeout=OP_TIMEOUT_S)
    assert configs, "describe_configs returned no entries"
    for key in ("cleanup.policy", "retention.ms", "max.message.bytes"):
        assert key in configs, f"{key} missing from describe_configs: {sorted(configs)}"
    assert configs["cleanup.policy"].value in ("delete", "compact", "delete,compact", "compact,delete")
    int(configs["retention.ms"].value)
    assert int(configs["max.message.bytes"].value) > 0


def test_topic_config_at_create_is_described(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1,
                 config={"max.message.bytes": "10000", "retention.ms": "3600000"})
    admin = confluent_admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic_name)
    configs = admin.describe_configs([res], request_timeout=OP_TIMEOUT_S)[res].result(timeout=OP_TIMEOUT_S)
    assert configs["max.message.bytes"].value == "10000"
    assert configs["retention.ms"].value == "3600000"


def test_create_existing_topic_fails(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2)
    err = _create_error(broker.bootstrap, topic_name, partitions=2)
    assert err is not None, "creating an existing topic succeeded"
    assert err.code() == KafkaError.TOPIC_ALREADY_EXISTS, err
    # and the existing topic is untouched
    assert topic_partition_counts(confluent_admin(broker.bootstrap))[topic_name] == 2


@pytest.mark.parametrize("name", ["bad/name", "x" * 250, "..", "bad name"],
                         ids=["slash", "250-chars", "dotdot", "space"])
def test_invalid_topic_names_rejected(broker, name):
    err = _create_error(broker.bootstrap, name)
    assert err is not None, f"topic {name!r} was created"
    assert err.code() == KafkaError.TOPIC_EXCEPTION, (
        f"expected INVALID_TOPIC_EXCEPTION (17) for {name!r}, got {err}")
    assert name not in topic_partition_counts(confluent_admin(broker.bootstrap))


def test_longest_valid_topic_name_accepted(broker, new_topic):
    name = (new_topic("long") + "-" + "y" * 249)[:249]
    assert _create_error(broker.bootstrap, name) is None
    wait_for_topic(broker.bootstrap, name, 1)


def test_delete_topic(broker_factory, topic_name):
    b = broker_factory(auto_create_topics=False)
    admin = confluent_admin(b.bootstrap)
    create_topic(b.bootstrap, topic_name, partitions=2)
    p = confluent_producer(b.bootstrap)
    d = produce_confluent(p, topic_name, [{"key": b"k", "value": b"before-delete", "partition": 0}])
    assert d[0].error is None, d

    admin.delete_topics([topic_name], request_timeout=OP_TIMEOUT_S)[topic_name].result(timeout=OP_TIMEOUT_S)
    wait_until(lambda: topic_name not in topic_partition_counts(admin), 15,
               what=f"{topic_name} to disappear from metadata")

    # With auto-create off, producing to the deleted topic fails and does not recreate it.
    p2 = confluent_producer(b.bootstrap, **{"message.timeout.ms": 5000})
    d = produce_confluent(p2, topic_name, [{"key": b"k", "value": b"after-delete"}], flush_timeout=20)
    assert d[0].error is not None, f"produce to a deleted topic succeeded: {d[0]}"
    assert d[0].error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                                 KafkaError._MSG_TIMED_OUT), d[0].error
    assert topic_name not in topic_partition_counts(admin), "deleted topic came back"

    # Deleting it again is UNKNOWN_TOPIC_OR_PART.
    fut = admin.delete_topics([topic_name], request_timeout=OP_TIMEOUT_S)[topic_name]
    with pytest.raises(Exception) as ei:
        fut.result(timeout=OP_TIMEOUT_S)
    err = kafka_error_of(ei.value)
    assert err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, ei.value

    # A topic re-created under the same name starts empty.
    create_topic(b.bootstrap, topic_name, partitions=1)
    assert watermarks_confluent(b.bootstrap, topic_name, [0]) == {0: (0, 0)}


def test_produce_to_missing_topic_without_auto_create_fails(broker_factory, topic_name):
    b = broker_factory(auto_create_topics=False)
    p = confluent_producer(b.bootstrap, **{"message.timeout.ms": 5000})
    d = produce_confluent(p, topic_name, [{"key": b"k", "value": b"v"}], flush_timeout=20)
    assert d[0].error is not None, f"produce to a missing topic succeeded: {d[0]}"
    assert topic_name not in topic_partition_counts(confluent_admin(b.bootstrap))


def test_describe_cluster(broker):
    admin = confluent_admin(broker.bootstrap)
    desc = admin.describe_cluster(request_timeout=OP_TIMEOUT_S).result(timeout=OP_TIMEOUT_S)
    assert [(n.id, n.host, n.port) for n in desc.nodes] == [(0, "127.0.0.1", broker.port)], desc.nodes
    assert desc.controller is not None and desc.controller.id == 0, desc.controller
    assert desc.cluster_id, "empty cluster id"


def test_metadata_and_watermarks_of_empty_topic(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=3)
    md = confluent_admin(broker.bootstrap).list_topics(timeout=10)
    assert md.brokers[0].host == "127.0.0.1" and md.brokers[0].port == broker.port, md.brokers
    t = md.topics[topic_name]
    assert sorted(t.partitions) == [0, 1, 2]
    for part in t.partitions.values():
        assert part.leader == 0 and list(part.replicas) == [0] and list(part.isrs) == [0], part
    assert watermarks_confluent(broker.bootstrap, topic_name, [0, 1, 2]) == {p: (0, 0) for p in range(3)}


# --------------------------------------------------------------- kafka-python


def test_kafka_python_admin(broker, new_topic):
    from kafka.admin import KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

    t1, t2 = new_topic("kp1"), new_topic("kp2")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="sediment-it-kp-admin",
                             request_timeout_ms=15000)
    try:
        res = admin.create_topics({t1: {"num_partitions": 2, "replication_factor": 1},
                                   t2: {"num_partitions": 1, "replication_factor": 1,
                                        "configs": {"retention.ms": "86400000"}}})
        errors = {t["name"]: t["error_code"] for t in res["topics"]}
        assert errors == {t1: 0, t2: 0}, res

        wait_until(lambda: {t1, t2} <= set(admin.list_topics()), 15, what="topics listed")
        desc = {t["name"]: t for t in admin.describe_topics([t1, t2])}
        assert len(desc[t1]["partitions"]) == 2, desc[t1]
        assert len(desc[t2]["partitions"]) == 1, desc[t2]
        assert all(p["leader_id"] == 0 for p in desc[t1]["partitions"]), desc[t1]

        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics({t1: {"num_partitions": 2, "replication_factor": 1}})

        res = admin.delete_topics([t1])
        assert [(t["name"], t["error_code"]) for t in res["topics"]] == [(t1, 0)], res
        wait_until(lambda: t1 not in admin.list_topics(), 15, what=f"{t1} to disappear")
        assert t2 in admin.list_topics()

        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_topics([t1])
    finally:
        admin.close()


def _topics_cli(bootstrap, *args):
    import subprocess

    from conftest import sediment_binary

    return subprocess.run([str(sediment_binary()), "topics", "-b", bootstrap, *args],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_cli_topics_create_list_describe_delete(broker, topic_name):
    cp = _topics_cli(broker.bootstrap, "create", topic_name, "--partitions", "4",
                     "--config", "retention.ms=86400000")
    assert cp.returncode == 0, cp.stderr
    assert _topics_cli(broker.bootstrap, "create", topic_name).returncode != 0, \
        "creating an existing topic must fail"

    listed = _topics_cli(broker.bootstrap, "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{topic_name}\t4 partitions" in listed.stdout.splitlines(), listed.stdout

    described = _topics_cli(broker.bootstrap, "describe", topic_name)
    assert described.returncode == 0, described.stderr
    assert f"topic {topic_name}: 4 partitions" in described.stdout
    assert "  retention.ms=86400000" in described.stdout.splitlines(), described.stdout
    assert "  cleanup.policy=delete" in described.stdout.splitlines(), described.stdout

    assert _topics_cli(broker.bootstrap, "delete", topic_name).returncode == 0
    gone = _topics_cli(broker.bootstrap, "delete", topic_name)
    assert gone.returncode != 0 and "UnknownTopicOrPartition" in gone.stderr, gone.stderr
    assert topic_name not in _topics_cli(broker.bootstrap, "list").stdout
