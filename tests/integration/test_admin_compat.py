"""Admin calls that librdkafka's own test suite makes and a Kafka broker answers: the legacy
AlterConfigs API (confluent-kafka's `alter_configs`), and authorized operations in
DescribeCluster / DescribeTopics when asked (with no authorizer: everything)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AclOperation, ConfigResource, ResourceType

from kafkautil import OP_TIMEOUT_S, confluent_admin, create_topic


def _describe(admin, topic: str) -> dict:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res])[res].result(timeout=OP_TIMEOUT_S)


def test_alter_configs_replaces_the_topic_configs(broker, topic_name):
    create_topic(broker.bootstrap, topic_name,
                 config={"retention.ms": "1000", "max.message.bytes": "2000"})
    admin = confluent_admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic_name, set_config={"retention.ms": "5000"})
    admin.alter_configs([res])[res].result(timeout=OP_TIMEOUT_S)
    configs = _describe(admin, topic_name)
    assert configs["retention.ms"].value == "5000"
    # AlterConfigs replaces the whole set: what was not given goes back to the default.
    assert configs["max.message.bytes"].value == "1048588"

    bad = ConfigResource(ResourceType.TOPIC, topic_name, set_config={"cleanup.policy": "compact"})
    with pytest.raises(KafkaException) as info:
        admin.alter_configs([bad])[bad].result(timeout=OP_TIMEOUT_S)
    assert "not supported" in str(info.value)
    assert _describe(admin, topic_name)["retention.ms"].value == "5000", "the refusal changed nothing"


def test_authorized_operations_are_reported_when_asked(broker, topic_name):
    create_topic(broker.bootstrap, topic_name)
    admin = confluent_admin(broker.bootstrap)
    cluster = admin.describe_cluster(include_authorized_operations=True).result(timeout=OP_TIMEOUT_S)
    ops = set(cluster.authorized_operations or [])
    assert {AclOperation.DESCRIBE, AclOperation.ALTER, AclOperation.IDEMPOTENT_WRITE} <= ops, ops
    topics = admin.describe_topics(TopicCollection([topic_name]), include_authorized_operations=True)
    desc = topics[topic_name].result(timeout=OP_TIMEOUT_S)
    tops = set(desc.authorized_operations or [])
    assert {AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE,
            AclOperation.DESCRIBE_CONFIGS} <= tops, tops
