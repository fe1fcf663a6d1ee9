"""Every topic config Kafka 4.x defines, through confluent-kafka's admin client: each is accepted
with Kafka's meaning or refused with INVALID_CONFIG and a reason; IncrementalAlterConfigs
APPEND / SUBTRACT on list configs; dynamic broker configs (the broker-level defaults of topic
configs) that change what topics do at once and survive a restart; timestamp bounds."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, ResourceType


from kafkautil import OP_TIMEOUT_S, confluent_admin, confluent_producer, create_topic, kafka_error_of

# Topic configs of Apache Kafka 4.x with a valid non-default value Sediment honours, stores
# (acts only under a policy the topic does not have) or meets by always syncing.
ACCEPTED = {
    "compression.gzip.level": "5",
    "compression.lz4.level": "12",
    "compression.zstd.level": "10",
    "delete.retention.ms": "900",
    "flush.messages": "10",
    "flush.ms": "12345678",
    "max.compaction.lag.ms": "3600000",
    "max.message.bytes": "200000",
    "message.timestamp.after.max.ms": "600000",
    "message.timestamp.before.max.ms": "86400000",
    "message.timestamp.type": "LogAppendTime",
    "min.cleanable.dirty.ratio": "0.25",
    "min.compaction.lag.ms": "1000",
    "remote.log.delete.on.disable": "true",
    "retention.bytes": "1000000000",
    "retention.ms": "86400000",
    "segment.bytes": "2097152",
    "segment.ms": "3600000",
    "unclean.leader.election.enable": "true",
}
# Valid in Kafka, but their effect is one Sediment lacks: refused, never ignored.
REFUSED = {
    "cleanup.policy": "compact",
    "compression.type": "gzip",
    "file.delete.delay.ms": "60000",
    "follower.replication.throttled.replicas": "0:1",
    "index.interval.bytes": "100",
    "leader.replication.throttled.replicas": "*",
    "local.retention.bytes": "1000",
    "local.retention.ms": "1000",
    "preallocate": "true",
    "remote.copy.lag.bytes": "10",
    "remote.copy.lag.ms": "10",
    "remote.log.copy.disable": "true",
    "remote.storage.enable": "false",
    "segment.index.bytes": "4096",
    "segment.jitter.ms": "100",
}


def described(admin, rtype, name: str) -> dict:
    res = ConfigResource(rtype, name)
    return admin.describe_configs([res], request_timeout=OP_TIMEOUT_S)[res].result(timeout=OP_TIMEOUT_S)


def source(entry) -> int:
    return getattr(entry.source, "value", entry.source)


def incremental(admin, rtype, name: str, *ops: tuple[str, str, AlterConfigOpType]):
    res = ConfigResource(rtype, name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for k, v, op in ops])
    return admin.incremental_alter_configs([res], request_timeout=OP_TIMEOUT_S)[res].result(
        timeout=OP_TIMEOUT_S)


def error_of(fn) -> KafkaError:
    with pytest.raises(Exception) as info:
        fn()
    err = kafka_error_of(info.value)
    assert err is not None, f"not a KafkaError: {info.value!r}"
    return err


def test_every_kafka_topic_config_is_accepted_or_refused_with_a_reason(broker, new_topic):
    admin = confluent_admin(broker.bootstrap)
    name = new_topic("all")
    create_topic(broker.bootstrap, name, config=ACCEPTED)
    cfg = described(admin, ResourceType.TOPIC, name)
    for k, v in ACCEPTED.items():
        assert cfg[k].value == v, f"{k}: described {cfg[k].value!r}, set {v!r}"
        assert source(cfg[k]) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, k
    for k in REFUSED:
        assert k in cfg, f"{k} is not described"
    for k, v in REFUSED.items():
        err = error_of(lambda: create_topic(broker.bootstrap, new_topic("refused"), config={k: v}))
        assert err.code() == KafkaError.INVALID_CONFIG, f"{k}={v}: {err}"
        assert "not supported" in err.str(), f"{k}={v}: no reason given: {err.str()!r}"
    # Kafka 4 removed message.format.version; it is unknown to Kafka 4 and to Sediment.
    err = error_of(lambda: create_topic(broker.bootstrap, new_topic("old"),
                                        config={"message.format.version": "0.10.0.0"}))
    assert err.code() == KafkaError.INVALID_CONFIG and "unknown" in err.str(), err
    # Kafka's ranges: segment.bytes is at least 1 MiB, the dirty ratio within [0, 1].
    for k, v in [("segment.bytes", "1000"), ("min.cleanable.dirty.ratio", "2")]:
        err = error_of(lambda: create_topic(broker.bootstrap, new_topic("range"), config={k: v}))
        assert err.code() == KafkaError.INVALID_CONFIG, f"{k}={v}: {err}"


def test_append_and_subtract_on_list_configs(broker, topic_name):
    admin = confluent_admin(broker.bootstrap)
    create_topic(broker.bootstrap, topic_name)
    # APPEND of an item already there changes nothing and succeeds.
    incremental(admin, ResourceType.TOPIC, topic_name, ("cleanup.policy", "delete", AlterConfigOpType.APPEND))
    assert described(admin, ResourceType.TOPIC, topic_name)["cleanup.policy"].value == "delete"
    # APPEND compact would make it delete,compact: refused, since compaction is not built.
    err = error_of(lambda: incremental(admin, ResourceType.TOPIC, topic_name,
                                       ("cleanup.policy", "compact", AlterConfigOpType.APPEND)))
    assert err.code() == KafkaError.INVALID_CONFIG and "compaction" in err.str(), err
    # SUBTRACT of an item that is not there is a no-op, as in Kafka.
    incremental(admin, ResourceType.TOPIC, topic_name, ("cleanup.policy", "compact", AlterConfigOpType.SUBTRACT))
    assert described(admin, ResourceType.TOPIC, topic_name)["cleanup.policy"].value == "delete"
    # SUBTRACT of the last item leaves an empty list, which Kafka's validator refuses too.
    err = error_of(lambda: incremental(admin, ResourceType.TOPIC, topic_name,
                                       ("cleanup.policy", "delete", AlterConfigOpType.SUBTRACT)))
    assert err.code() == KafkaError.INVALID_CONFIG, err
    # APPEND on a config that is not a list is refused.
    err = error_of(lambda: incremental(admin, ResourceType.TOPIC, topic_name,
                                       ("retention.ms", "5", AlterConfigOpType.APPEND)))
    assert err.code() == KafkaError.INVALID_CONFIG and "list" in err.str(), err
    # The alters that failed changed nothing.
    assert described(admin, ResourceType.TOPIC, topic_name)["cleanup.policy"].value == "delete"


def produce_one(bootstrap: str, topic: str, value: bytes, **kw):
    p = confluent_producer(bootstrap, **{"message.max.bytes": 10_000_000})
    out = []
    p.produce(topic, value=value, partition=0, on_delivery=lambda err, msg: out.append(err), **kw)
    assert p.flush(OP_TIMEOUT_S) == 0
    return out[0]


def test_dynamic_broker_configs_apply_at_once_and_survive_a_restart(broker_factory, new_topic):
    """This broker's dynamic configs (resource name "0"; the cluster-wide default, name "",
    is refused by both Python clients and is covered by the Rust tests)."""
    b = broker_factory()
    admin = confluent_admin(b.bootstrap)
    plain, own = new_topic("plain"), new_topic("own")
    create_topic(b.bootstrap, plain)
    create_topic(b.bootstrap, own, config={"max.message.bytes": "3000000"})
    assert produce_one(b.bootstrap, plain, b"x" * 200_000) is None

    # Every topic without its own value follows at once; a topic's own value wins.
    incremental(admin, ResourceType.BROKER, "0", ("message.max.bytes", "100000", AlterConfigOpType.SET),
                ("log.retention.ms", "3600000", AlterConfigOpType.SET))
    err = produce_one(b.bootstrap, plain, b"x" * 200_000)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    assert produce_one(b.bootstrap, own, b"x" * 200_000) is None, "the topic's own value must win"
    cfg = described(admin, ResourceType.TOPIC, plain)
    assert cfg["max.message.bytes"].value == "100000"
    assert source(cfg["max.message.bytes"]) == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert cfg["retention.ms"].value == "3600000"
    assert described(admin, ResourceType.TOPIC, own)["max.message.bytes"].value == "3000000"
    bcfg = described(admin, ResourceType.BROKER, "0")
    assert bcfg["log.retention.ms"].value == "3600000"
    assert source(bcfg["log.retention.ms"]) == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert bcfg["message.max.bytes"].value == "100000"
    # max.connections is dynamic too (the listener's limit; open connections stay).
    incremental(admin, ResourceType.BROKER, "0", ("max.connections", "500", AlterConfigOpType.SET))
    bcfg = described(admin, ResourceType.BROKER, "0")
    assert bcfg["max.connections"].value == "500"
    assert source(bcfg["max.connections"]) == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    incremental(admin, ResourceType.BROKER, "0", ("max.connections", "", AlterConfigOpType.DELETE))
    assert source(described(admin, ResourceType.BROKER, "0")["max.connections"]) == \
        ConfigSource.STATIC_BROKER_CONFIG.value

    # Settings that are not topic defaults are static, values are validated, compaction refused.
    for k, v in [("background.threads", "9"), ("log.retention.ms", "soon"), ("log.cleanup.policy", "compact")]:
        err = error_of(lambda: incremental(admin, ResourceType.BROKER, "0", (k, v, AlterConfigOpType.SET)))
        assert err.code() == KafkaError.INVALID_CONFIG, f"{k}={v}: {err}"
    assert described(admin, ResourceType.TOPIC, plain)["retention.ms"].value == "3600000"

    # Stored in the metadata store: a restart keeps them.
    b.restart()
    admin = confluent_admin(b.bootstrap)
    cfg = described(admin, ResourceType.TOPIC, plain)
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["max.message.bytes"].value == "100000"
    err = produce_one(b.bootstrap, plain, b"x" * 200_000)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err

    # DELETE goes back to the static setting.
    incremental(admin, ResourceType.BROKER, "0", ("message.max.bytes", "", AlterConfigOpType.DELETE),
                ("log.retention.ms", "", AlterConfigOpType.DELETE))
    cfg = described(admin, ResourceType.TOPIC, plain)
    assert cfg["retention.ms"].value == "604800000"
    assert produce_one(b.bootstrap, plain, b"x" * 200_000) is None


def test_timestamps_outside_the_topic_bounds_get_invalid_timestamp(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, config={"message.timestamp.before.max.ms": "60000"})
    now = int(time.time() * 1000)
    assert produce_one(broker.bootstrap, topic_name, b"now", timestamp=now) is None
    err = produce_one(broker.bootstrap, topic_name, b"old", timestamp=now - 3_600_000)
    assert err is not None and err.code() == KafkaError.INVALID_TIMESTAMP, err
    # Kafka 4's default message.timestamp.after.max.ms is one hour.
    err = produce_one(broker.bootstrap, topic_name, b"future", timestamp=now + 2 * 3_600_000)
    assert err is not None and err.code() == KafkaError.INVALID_TIMESTAMP, err
    assert produce_one(broker.bootstrap, topic_name, b"soon", timestamp=now + 60_000) is None
