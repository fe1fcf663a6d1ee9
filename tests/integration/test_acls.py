"""The ACL authorizer (--authorizer acl): Kafka's StandardAuthorizer rules, with real clients.

The main broker of this module runs `--authorizer acl --super-users 'User:admin;User:ANONYMOUS'`
with the fixture's PLAINTEXT listener (--kafka-addr, principal User:ANONYMOUS: a super user, so
the tests create topics, users and ACLs through it) and a SASL_PLAINTEXT listener where the test
principals log in with SCRAM-SHA-512 users of their own (User:<name>). Each test uses principals,
topics and groups of its own, so that the ACLs of one test cannot grant anything another test
checks. A second broker runs with `--allow-everyone-if-no-acl-found true`; one without
--authorizer answers the ACL APIs with SECURITY_DISABLED; a three-broker cluster checks that an
ACL made through one broker is enforced by the others within the 1 s refresh.

Clients: confluent-kafka (producer, consumer group, AdminClient create/describe/delete_acls),
kafka-python, kafkajs (js/acl.js), kcat on both librdkafka versions, the `sediment acls` CLI,
and raw requests (kafka-python's protocol classes over test_security's SaslConn, which can also
connect from a chosen source address for the host filters).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from contextlib import contextmanager

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion)
from kafka.protocol.admin import (CreateAclsRequest, DeleteGroupsRequest, DeleteRecordsRequest,
                                  DescribeAclsRequest, DescribeClusterRequest, DescribeGroupsRequest,
                                  DescribeUserScramCredentialsRequest, ListGroupsRequest)
from kafka.protocol.consumer import FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest
from kafka.protocol.metadata import MetadataRequest

import rawkafka
from clusterkit import cluster_factory  # noqa: F401  (fixture)
from conftest import Broker, sediment_binary
from kafkautil import (confluent_admin, confluent_producer, create_topic, kafka_error_of,
                       produce_confluent, read_confluent, wait_until, watermarks_confluent)
from test_kafkajs import node, run_node  # noqa: F401  (node is a fixture)
from test_kcat import kcat  # noqa: F401  (fixture: system and bundled librdkafka)
from test_security import Endpoint, SaslConn, Secured, distinct_ports, port_accepts, sasl_login, upsert

# Kafka error codes (org.apache.kafka.common.protocol.Errors)
NONE = 0
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31
INVALID_REQUEST = 42
SECURITY_DISABLED = 54

MECH = "SCRAM-SHA-512"
SUPER_USERS = "User:admin;User:ANONYMOUS"
# Every SASL user any test of this module logs in as; password "<name>-pw".
USERS = ["admin", "mallory", "alice", "pat", "wendy", "lita", "dennis", "bob", "hank", "ida",
         "ron", "ivy", "sam", "fol", "carol", "gus", "tina", "impl-read", "impl-write",
         "impl-delete", "impl-alter", "impl-create", "impl-dconf", "cli-user", "cli-other"]
OPEN_USERS = ["olga", "oscar"]

# confluent-kafka's enums (AclBinding) by the names the tests use
T, G, C = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER  # BROKER is Kafka's CLUSTER (4)
LIT, PRE = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
OP = AclOperation


def pw(user: str) -> str:
    return f"{user}-pw"


def uid() -> str:
    return uuid.uuid4().hex[:8]


# ================================================================ brokers


class AclBroker(Secured):
    """A broker with PLAINTEXT (super user ANONYMOUS) and a SASL_PLAINTEXT listener."""

    def __init__(self, broker: Broker, args: list[str]):
        super().__init__(broker, ["SASL_PLAINTEXT"], None)
        broker.options += args

    @property
    def sasl(self) -> str:
        return self.ep("SASL_PLAINTEXT").bootstrap

    def user(self, name: str) -> Endpoint:
        return self.ep("SASL_PLAINTEXT").login(MECH, name, pw(name))

    def conf(self, name: str) -> dict:
        return {"bootstrap.servers": self.sasl, **self.user(name).confluent()}

    def admin(self, name: str | None = None) -> AdminClient:
        """AdminClient as `name` over SASL, or as the super user over PLAINTEXT (one per name,
        kept: a client that is garbage-collected fails its pending futures)."""
        admins = self.__dict__.setdefault("_admins", {})
        if name not in admins:
            admins[name] = confluent_admin(self.plaintext) if name is None else AdminClient(
                {**self.conf(name), "client.id": f"sediment-it-acl-{name}"})
        return admins[name]

    @contextmanager
    def raw(self, name: str, source_ip: str | None = None):
        """A raw connection logged in as `name` (from `source_ip`)."""
        with SaslConn(self.sasl, source_ip=source_ip) as c:
            login = sasl_login(c, MECH, name, pw(name))
            assert login.error_code == 0, f"login as {name}: {login}"
            yield c

    def topics(self) -> set[str]:
        """Every topic, as the super user sees it (Metadata for all topics: creates nothing)."""
        return set(confluent_admin(self.plaintext).list_topics(timeout=10).topics)


def _start(tmp_path_factory, name: str, args: list[str], users: list[str]) -> AclBroker:
    b = Broker(sediment_binary(), tmp_path_factory.mktemp(f"sediment-{name}"), name=name)
    s = AclBroker(b, args)
    s.start()
    upsert(s.plaintext, {u: {MECH: (pw(u), 4096)} for u in users})
    return s


def _attach(request, *brokers: Broker) -> None:
    lst = getattr(request.node, "_sediment_brokers", None)
    if lst is None:
        lst = request.node._sediment_brokers = []
    lst.extend(brokers)


BASE_ARGS = ["--group-initial-rebalance-delay-ms", "0",
             "--max-failed-authentications-per-minute", "100000"]


@pytest.fixture(scope="module")
def _acl_broker(tmp_path_factory):
    s = _start(tmp_path_factory, "acl", ["--authorizer", "acl", "--super-users", SUPER_USERS,
                                         *BASE_ARGS], USERS)
    try:
        yield s
    finally:
        s.__dict__.pop("_admins", None)  # destroy the clients before their broker goes
        s.broker.close()


@pytest.fixture
def acl(request, _acl_broker) -> AclBroker:
    _attach(request, _acl_broker.broker)
    assert _acl_broker.broker.is_running(), "the shared ACL broker died in an earlier test"
    return _acl_broker


@pytest.fixture(scope="module")
def _open_broker(tmp_path_factory):
    s = _start(tmp_path_factory, "acl-open",
               ["--authorizer", "acl", "--super-users", "User:ANONYMOUS",
                "--allow-everyone-if-no-acl-found", "true", *BASE_ARGS], OPEN_USERS)
    try:
        yield s
    finally:
        s.__dict__.pop("_admins", None)  # destroy the clients before their broker goes
        s.broker.close()


@pytest.fixture
def open_broker(request, _open_broker) -> AclBroker:
    _attach(request, _open_broker.broker)
    assert _open_broker.broker.is_running()
    return _open_broker


# ================================================================ helpers


def grant(bootstrap: str, principal: str, ops, rtype, name: str, pattern=LIT, permission=ALLOW,
          host: str = "*") -> None:
    """CreateAcls through confluent-kafka's AdminClient (as the super user over PLAINTEXT)."""
    bindings = [AclBinding(rtype, name, pattern, principal, host, op, permission) for op in ops]
    admin = confluent_admin(bootstrap)
    futs = admin.create_acls(bindings, request_timeout=15)
    for b, f in futs.items():
        assert f.result(timeout=20) is None, b


def acls_cli(bootstrap: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cp = subprocess.run([str(sediment_binary()), "acls", *args, "-b", bootstrap],
                        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if check:
        assert cp.returncode == 0, (f"sediment acls {' '.join(args)} exited {cp.returncode}:\n"
                                    f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
    return cp


def future_error(fut, timeout: float = 20.0) -> KafkaError | None:
    """The KafkaError an admin future fails with (None if it succeeds)."""
    try:
        fut.result(timeout=timeout)
    except KafkaException as e:
        err = kafka_error_of(e)
        assert err is not None, f"not a KafkaError: {e!r}"
        return err
    return None


def code_of(err) -> int | None:
    return None if err is None else err.code()


def produce_as(acl: AclBroker, user: str, topic: str, values: list[bytes], **conf) -> list:
    """Produce to partition 0 with confluent-kafka as `user`; the delivery errors (None = ok)."""
    p = confluent_producer(acl.sasl, **acl.user(user).confluent(),
                           **{"message.timeout.ms": 10000, **conf})
    ds = produce_confluent(p, topic, [{"value": v, "partition": 0} for v in values], flush_timeout=20)
    return [d.error for d in ds]


def values_of(bootstrap: str, topic: str, partitions=(0,)) -> list[bytes]:
    """The values of `topic` read over PLAINTEXT (the super user)."""
    recs = read_confluent(bootstrap, topic, list(partitions))
    return [r.value for p in sorted(recs) for r in recs[p]]


def end_offset(acl: AclBroker, topic: str, partition: int = 0) -> int:
    return watermarks_confluent(acl.plaintext, topic, [partition])[partition][1]


def seed_topic(acl: AclBroker, topic: str, partitions: int = 1, count: int = 5) -> list[bytes]:
    """Create `topic` over PLAINTEXT and produce `count` records to partition 0."""
    create_topic(acl.plaintext, topic, partitions=partitions)
    values = [f"{topic}-{i}".encode() for i in range(count)]
    ds = produce_confluent(confluent_producer(acl.plaintext), topic,
                           [{"value": v, "partition": 0} for v in values])
    assert [d.error for d in ds] == [None] * count
    return values


def user_values(acl: AclBroker, user: str, topic: str) -> list[bytes]:
    """The values of `topic`/0 as `user` reads them with kafka-python (no group: no group ACL)."""
    from kafkautil import read_kp
    return [r.value for r in read_kp(acl.sasl, topic, [0], consumer_conf=acl.user(user).kp())[0]]


# ---------------------------------------------------------------- raw requests


def raw_produce(conn, topic: str, values: list[bytes], partition: int = 0) -> int:
    batch = rawkafka.idempotent_batch(-1, -1, -1, values)
    return rawkafka.produce_result(conn.call(rawkafka.produce(topic, partition, batch), 8))[0]


def raw_metadata(conn, topics: list[str] | None, auto_create: bool = False) -> dict[str, int]:
    """{topic: error code} of a Metadata v8 answer."""
    T_ = MetadataRequest.MetadataRequestTopic
    r = conn.call(MetadataRequest(topics=None if topics is None else [T_(name=t) for t in topics],
                                  allow_auto_topic_creation=auto_create,
                                  include_cluster_authorized_operations=False,
                                  include_topic_authorized_operations=False), 8)
    return {t.name: t.error_code for t in r.topics}


def raw_fetch(conn, topic: str, partitions, replica_id: int = -1) -> dict[int, tuple[int, bytes]]:
    """{partition: (error code, record bytes)} of a Fetch v12 from offset 0."""
    F = FetchRequest.FetchTopic
    req = FetchRequest(replica_id=replica_id, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20,
                       isolation_level=0, session_id=0, session_epoch=-1,
                       topics=[F(topic=topic, partitions=[F.FetchPartition(
                           partition=p, current_leader_epoch=-1, fetch_offset=0, log_start_offset=-1,
                           partition_max_bytes=1 << 20) for p in partitions])],
                       forgotten_topics_data=[], rack_id="")
    r = conn.call(req, 12)
    out = {}
    for t in r.responses:
        assert t.topic == topic, t
        for p in t.partitions:
            out[p.partition_index] = (p.error_code, bytes(p.records or b""))
    return out


def raw_list_offsets(conn, topic: str, partitions) -> dict[int, int]:
    L = ListOffsetsRequest.ListOffsetsTopic
    r = conn.call(ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[L(
        name=topic, partitions=[L.ListOffsetsPartition(partition_index=p, current_leader_epoch=-1,
                                                       timestamp=-1) for p in partitions])]), 4)
    return {p.partition_index: p.error_code for t in r.topics for p in t.partitions}


def raw_epoch_end(conn, topic: str, partitions) -> dict[int, int]:
    O = OffsetForLeaderEpochRequest.OffsetForLeaderTopic
    r = conn.call(OffsetForLeaderEpochRequest(replica_id=-1, topics=[O(topic=topic, partitions=[
        O.OffsetForLeaderPartition(partition=p, current_leader_epoch=-1, leader_epoch=0)
        for p in partitions])]), 3)
    return {p.partition: p.error_code for t in r.topics for p in t.partitions}


def raw_offset_fetch(conn, group: str, topics: dict[str, list[int]] | None):
    """OffsetFetch v8 of one group: (group error, {(topic, partition): (error, offset)})."""
    [g] = conn.call(rawkafka.offset_fetch_groups({group: topics}), 8).groups
    return g.error_code, {(t.name, p.partition_index): (p.error_code, p.committed_offset)
                          for t in g.topics for p in t.partitions}


def raw_offset_commit(conn, group: str, offsets: dict[tuple[str, int], int]) -> dict:
    r = conn.call(rawkafka.offset_commit(group, {k: (v, None) for k, v in offsets.items()}), 8)
    return {(t.name, p.partition_index): p.error_code for t in r.topics for p in t.partitions}


def raw_list_groups(conn) -> tuple[int, set[str]]:
    r = conn.call(ListGroupsRequest(states_filter=[]), 4)
    return r.error_code, {g.group_id for g in r.groups}


def raw_describe_groups(conn, groups: list[str]) -> dict[str, int]:
    r = conn.call(DescribeGroupsRequest(groups=groups, include_authorized_operations=False), 5)
    return {g.group_id: g.error_code for g in r.groups}


def raw_delete_groups(conn, groups: list[str]) -> dict[str, int]:
    r = conn.call(DeleteGroupsRequest(groups_names=groups), 2)
    return {g.group_id: g.error_code for g in r.results}


def raw_init_producer_id(conn) -> int:
    return conn.call(rawkafka.init_producer_id(), 4).error_code


def raw_delete_records(conn, topic: str, partition: int, offset: int) -> int:
    D = DeleteRecordsRequest.DeleteRecordsTopic
    r = conn.call(DeleteRecordsRequest(topics=[D(name=topic, partitions=[D.DeleteRecordsPartition(
        partition_index=partition, offset=offset)])], timeout_ms=10000), 2)
    return r.topics[0].partitions[0].error_code


def raw_describe_acls(bootstrap: str, principal: str | None = None, name: str | None = None,
                      conn=None) -> tuple[int, list[tuple]]:
    """DescribeAcls v3 (ANY of everything but the principal): (error, [(type, name, pattern,
    principal, host, operation, permission)])."""
    req = DescribeAclsRequest(resource_type_filter=1, resource_name_filter=name, pattern_type_filter=1,
                              principal_filter=principal, host_filter=None, operation=1,
                              permission_type=1)
    if conn is None:
        with rawkafka.RawConn(bootstrap) as c:
            r = c.call(req, 3)
    else:
        r = conn.call(req, 3)
    return r.error_code, [(x.resource_type, x.resource_name, x.pattern_type, a.principal, a.host,
                           a.operation, a.permission_type) for x in r.resources for a in x.acls]


def raw_create_acls(bootstrap: str, creations: list[dict]) -> list[tuple[int, str | None]]:
    A = CreateAclsRequest.AclCreation
    with rawkafka.RawConn(bootstrap) as c:
        r = c.call(CreateAclsRequest(creations=[A(**x) for x in creations]), 3)
    return [(x.error_code, x.error_message) for x in r.results]


def make_group(bootstrap: str, group: str, topic: str) -> None:
    """A consumer group that exists (it committed an offset of `topic`/0)."""
    with rawkafka.RawConn(bootstrap) as c:
        assert raw_offset_commit(c, group, {(topic, 0): 1}) == {(topic, 0): NONE}


# ================================================================ 1. a principal with no ACLs


@pytest.fixture(scope="module")
def seeded(_acl_broker):
    """A topic (2 partitions, 5 records in partition 0) and a group with a committed offset,
    made by the super user; nobody but the super users has ACLs on them."""
    acl = _acl_broker
    topic, group = f"seeded-{uid()}", f"seeded-group-{uid()}"
    values = seed_topic(acl, topic, partitions=2)
    # a real consumer group over PLAINTEXT: join, read, commit
    c = Consumer({"bootstrap.servers": acl.plaintext, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < len(values) and time.monotonic() < deadline:
            for m in c.consume(10, timeout=0.5):
                assert m.error() is None, m.error()
                got.append(m.value())
        assert sorted(got) == sorted(values)
        c.commit(asynchronous=False)
    finally:
        c.close()
    with rawkafka.RawConn(acl.plaintext) as conn:
        assert group in raw_list_groups(conn)[1]
    return {"topic": topic, "group": group, "values": values}


def test_no_acls_metadata_lists_no_topic_for_any_client(acl, seeded, node):
    assert seeded["topic"] in acl.topics()
    # (no test leaves an ACL for User:* behind: test_deny_beats_allow deletes its own)
    # confluent-kafka
    md = acl.admin("mallory").list_topics(timeout=10)
    assert set(md.topics) == set(), f"mallory sees {set(md.topics)}"
    assert md.brokers, "Metadata without brokers"
    md = acl.admin("mallory").list_topics(topic=seeded["topic"], timeout=10)
    err = md.topics[seeded["topic"]].error
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # kafka-python
    from kafka import KafkaConsumer
    kc = KafkaConsumer(bootstrap_servers=acl.sasl, request_timeout_ms=15000, **acl.user("mallory").kp())
    try:
        assert kc.topics() == set(), kc.topics()
    finally:
        kc.close()
    # kafkajs
    s = run_node(node, "acl.js", json.dumps({"bootstrap": acl.sasl, "mode": "topics",
                                              "sasl": acl.user("mallory").kafkajs()["sasl"]}))
    assert s["ok"], s
    assert set(s["topics"]) == set(), s
    # raw: all topics, a named one, a named one that does not exist (auto-create asked for)
    new = f"mallory-md-{uid()}"
    with acl.raw("mallory") as c:
        assert set(raw_metadata(c, None)) == set()
        assert raw_metadata(c, [seeded["topic"]]) == {seeded["topic"]: TOPIC_AUTHORIZATION_FAILED}
        assert raw_metadata(c, [new], auto_create=True) == {new: TOPIC_AUTHORIZATION_FAILED}
    assert new not in acl.topics(), "Metadata without CREATE auto-created the topic"


def test_no_acls_cannot_produce(acl, seeded, node):
    topic = seeded["topic"]
    before = end_offset(acl, topic)
    # confluent-kafka
    errs = produce_as(acl, "mallory", topic, [b"m1", b"m2"])
    assert [code_of(e) for e in errs] == [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 2, errs
    # kafka-python: the producer refuses once Metadata says the topic is not authorized
    from kafka import KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError
    kp = KafkaProducer(bootstrap_servers=acl.sasl, max_block_ms=10000, request_timeout_ms=10000,
                       **acl.user("mallory").kp())
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            kp.send(topic, value=b"kp", partition=0).get(timeout=15)
    finally:
        kp.close(timeout=5)
    # kafkajs
    s = run_node(node, "acl.js", json.dumps({"bootstrap": acl.sasl, "mode": "produce", "topic": topic,
                                              "count": 2, "sasl": acl.user("mallory").kafkajs()["sasl"]}))
    assert s["ok"] is False, s
    assert "TOPIC_AUTHORIZATION_FAILED" in json.dumps(s["error"]), s
    # raw Produce
    with acl.raw("mallory") as c:
        assert raw_produce(c, topic, [b"raw"]) == TOPIC_AUTHORIZATION_FAILED
    assert end_offset(acl, topic) == before, "a refused produce appended records"


def test_no_acls_kcat_cannot_produce_consume_or_list(acl, seeded, kcat):
    topic = seeded["topic"]
    before = end_offset(acl, topic)
    args = ["-b", acl.sasl, *acl.user("mallory").kcat_args()]
    cp = kcat.run(*args, "-t", topic, "-P", "-p", "0", input="k1\nk2\n", check=False, timeout=40)
    assert "authorization failed" in (cp.stdout + cp.stderr).lower(), (cp.returncode, cp.stderr[-2000:])
    assert end_offset(acl, topic) == before
    cp = kcat.run(*args, "-t", topic, "-C", "-p", "0", "-o", "beginning", "-e", check=False, timeout=40)
    assert cp.stdout.strip() == "", f"kcat consumed as mallory: {cp.stdout[:500]}"
    assert "authorization failed" in cp.stderr.lower(), (cp.returncode, cp.stderr[-2000:])
    out = kcat.run(*args, "-L").stdout
    assert f'topic "{topic}"' not in out, out


def test_no_acls_cannot_consume(acl, seeded):
    topic = seeded["topic"]
    # confluent-kafka, assigned partitions (no group protocol). librdkafka does not fetch a
    # partition whose Metadata is TOPIC_AUTHORIZATION_FAILED and reports nothing for it; the only
    # error is the coordinator lookup of its group.id (GROUP_AUTHORIZATION_FAILED).
    c = Consumer({**acl.conf("mallory"), "group.id": f"mallory-assign-{uid()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        errors, records = [], []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            for m in c.consume(10, timeout=0.5):
                (errors if m.error() else records).append(m.error() or m.value())
    finally:
        c.close()
    assert not records, records
    assert {e.code() for e in errors} <= {KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                          KafkaError.GROUP_AUTHORIZATION_FAILED}, errors
    # kafka-python, no group: nothing either
    from kafka import KafkaConsumer, TopicPartition as KTP
    kc = KafkaConsumer(bootstrap_servers=acl.sasl, group_id=None, request_timeout_ms=10000,
                       **acl.user("mallory").kp())
    try:
        kc.assign([KTP(topic, 0)])
        kc.seek(KTP(topic, 0), 0)
        assert kc.poll(timeout_ms=2000) == {}
    finally:
        kc.close()
    # raw: Fetch, ListOffsets, OffsetForLeaderEpoch
    with acl.raw("mallory") as conn:
        got = raw_fetch(conn, topic, [0, 1])
        assert got == {0: (TOPIC_AUTHORIZATION_FAILED, b""), 1: (TOPIC_AUTHORIZATION_FAILED, b"")}
        assert raw_list_offsets(conn, topic, [0, 1]) == {0: TOPIC_AUTHORIZATION_FAILED,
                                                         1: TOPIC_AUTHORIZATION_FAILED}
        assert raw_epoch_end(conn, topic, [0, 1]) == {0: TOPIC_AUTHORIZATION_FAILED,
                                                      1: TOPIC_AUTHORIZATION_FAILED}


def test_no_acls_cannot_join_commit_or_see_groups(acl, seeded, node):
    topic, group = seeded["topic"], seeded["group"]
    with acl.raw("mallory") as c:
        r = c.call(rawkafka.find_coordinator(group), 2)
        assert r.error_code == GROUP_AUTHORIZATION_FAILED, r
        assert c.call(rawkafka.join_group(group, protocols=[("range", rawkafka.subscription([topic]))]),
                      5).error_code == GROUP_AUTHORIZATION_FAILED
        assert c.call(rawkafka.sync_group(group, 1, "m-1"), 5).error_code == GROUP_AUTHORIZATION_FAILED
        assert c.call(rawkafka.heartbeat(group, 1, "m-1"), 4).error_code == GROUP_AUTHORIZATION_FAILED
        assert c.call(rawkafka.leave_group(group, "m-1"), 4).error_code == GROUP_AUTHORIZATION_FAILED
        r = c.call(rawkafka.offset_commit(group, {(topic, 0): (3, None)}), 8)
        assert [p.error_code for t in r.topics for p in t.partitions] == [GROUP_AUTHORIZATION_FAILED], r
        assert raw_offset_fetch(c, group, None)[0] == GROUP_AUTHORIZATION_FAILED
        assert raw_describe_groups(c, [group]) == {group: GROUP_AUTHORIZATION_FAILED}
        assert raw_delete_groups(c, [group]) == {group: GROUP_AUTHORIZATION_FAILED}
        err, groups = raw_list_groups(c)
        assert err == NONE and groups == set(), f"mallory lists groups {groups}"
        r = c.call(rawkafka.offset_delete(group, topic, [0]), 0)
        assert r.error_code == GROUP_AUTHORIZATION_FAILED, r
    # the group and its offset are untouched
    assert rawkafka.committed(acl.plaintext, group, topic, [0]) == {0: (5, "")}
    # confluent-kafka: a subscribing consumer hears GROUP_AUTHORIZATION_FAILED
    cons = Consumer({**acl.conf("mallory"), "group.id": group, "auto.offset.reset": "earliest"})
    try:
        cons.subscribe([topic])
        errors = []
        deadline = time.monotonic() + 10
        while not errors and time.monotonic() < deadline:
            errors += [m.error() for m in cons.consume(10, timeout=0.5) if m.error()]
    finally:
        cons.close()
    assert any(e.code() == KafkaError.GROUP_AUTHORIZATION_FAILED for e in errors), errors
    res = acl.admin("mallory").list_consumer_groups(request_timeout=10).result(timeout=15)
    assert group not in {g.group_id for g in res.valid}, res.valid
    # kafkajs (it asks for the subscribed topic's metadata first: TOPIC_AUTHORIZATION_FAILED;
    # test_cli_grants_read_write_and_describe_follows sees its GROUP_AUTHORIZATION_FAILED)
    s = run_node(node, "acl.js", json.dumps({"bootstrap": acl.sasl, "mode": "consume", "topic": topic,
                                              "groupId": group, "count": 1, "timeoutMs": 10000,
                                              "sasl": acl.user("mallory").kafkajs()["sasl"]}))
    assert not s["records"] and s["errors"], s
    assert all(e.get("type") in ("TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED")
               for e in s["errors"]), s


def test_no_acls_cannot_create_delete_or_describe_topics(acl, seeded):
    topic = seeded["topic"]
    admin = acl.admin("mallory")
    new = f"mallory-new-{uid()}"
    futs = admin.create_topics([NewTopic(new, num_partitions=1, replication_factor=1)], request_timeout=15)
    assert code_of(future_error(futs[new])) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # auto-creation by a produce to a topic that does not exist
    auto = f"mallory-auto-{uid()}"
    errs = produce_as(acl, "mallory", auto, [b"x"])
    assert errs[0] is not None, "mallory produced to a topic that did not exist"
    assert code_of(errs[0]) == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs
    time.sleep(0.5)
    assert not {new, auto} & acl.topics(), "a topic was created for a principal without CREATE"
    # DeleteTopics: refused, the topic survives
    futs = admin.delete_topics([topic], request_timeout=15)
    assert code_of(future_error(futs[topic])) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert topic in acl.topics()
    # DescribeConfigs: topic 29, broker 31
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    assert code_of(future_error(admin.describe_configs([res], request_timeout=15)[res])) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    res = ConfigResource(ConfigResource.Type.BROKER, "0")
    assert code_of(future_error(admin.describe_configs([res], request_timeout=15)[res])) == \
        KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # IncrementalAlterConfigs, CreatePartitions, DeleteRecords on the topic
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "1234", incremental_operation=AlterConfigOpType.SET)])
    assert code_of(future_error(admin.incremental_alter_configs([res], request_timeout=15)[res])) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    futs = admin.create_partitions([NewPartitions(topic, 4)], request_timeout=15)
    assert code_of(future_error(futs[topic])) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # DeleteRecords raw (librdkafka stops at the unauthorized Metadata: "No leaders found")
    with acl.raw("mallory") as c:
        assert raw_delete_records(c, topic, 0, 2) == TOPIC_AUTHORIZATION_FAILED
    # DescribeCluster: 31 (raw: librdkafka's describe_cluster sends Metadata, not DescribeCluster)
    with acl.raw("mallory") as c:
        r = c.call(DescribeClusterRequest(include_cluster_authorized_operations=False), 0)
        assert r.error_code == CLUSTER_AUTHORIZATION_FAILED and not r.brokers, r
    # nothing changed
    md = confluent_admin(acl.plaintext).list_topics(topic=topic, timeout=10).topics[topic]
    assert len(md.partitions) == 2
    assert watermarks_confluent(acl.plaintext, topic, [0])[0] == (0, 5)
    cfg = acl.admin().describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, topic)], request_timeout=15)
    [f] = cfg.values()
    assert f.result(timeout=20)["retention.ms"].value != "1234"


# ================================================================ 2. grants with the CLI


def test_cli_grants_read_write_and_describe_follows(acl, node):
    topic, group = f"alice-{uid()}", f"alice-group-{uid()}"
    values = seed_topic(acl, topic, count=10)
    errs = produce_as(acl, "alice", topic, [b"early"])
    assert code_of(errs[0]) == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs
    assert topic not in acl.admin("alice").list_topics(timeout=10).topics

    acls_cli(acl.plaintext, "create", "--principal", "User:alice", "--operation", "read", "--topic", topic)
    # READ on the topic but not yet on the group: the group is refused
    s = run_node(node, "acl.js", json.dumps({"bootstrap": acl.sasl, "mode": "consume", "topic": topic,
                                              "groupId": group, "count": 1, "timeoutMs": 10000,
                                              "sasl": acl.user("alice").kafkajs()["sasl"]}))
    # (kafkajs turns the refused FindCoordinator into KafkaJSGroupCoordinatorNotFound and logs
    # the broker's error)
    assert not s["records"] and s["errors"], s
    assert "GROUP_AUTHORIZATION_FAILED" in s["loggedErrorTypes"], s
    assert "TOPIC_AUTHORIZATION_FAILED" not in s["loggedErrorTypes"], s
    with acl.raw("alice") as c:
        assert c.call(rawkafka.find_coordinator(group), 2).error_code == GROUP_AUTHORIZATION_FAILED
    acls_cli(acl.plaintext, "create", "--principal", "User:alice", "--operation", "read", "--group", group)
    with acl.raw("alice") as c:  # READ on a group implies DESCRIBE (FindCoordinator)
        assert c.call(rawkafka.find_coordinator(group), 2).error_code == NONE
    # a consumer group reads every record and commits
    c = Consumer({**acl.conf("alice"), "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < len(values) and time.monotonic() < deadline:
            for m in c.consume(10, timeout=0.5):
                assert m.error() is None, f"alice's consumer: {m.error()}"
                got.append(m.value())
        assert got == values
        offsets = c.commit(asynchronous=False)
        assert [(o.partition, o.offset, o.error) for o in offsets] == [(0, 10, None)], offsets
    finally:
        c.close()
    assert rawkafka.committed(acl.plaintext, group, topic, [0])[0][0] == 10
    # READ implies DESCRIBE: alice sees the topic, mallory does not
    assert topic in acl.admin("alice").list_topics(timeout=10).topics
    assert topic not in acl.admin("mallory").list_topics(timeout=10).topics
    # READ is not WRITE
    errs = produce_as(acl, "alice", topic, [b"still-no"])
    assert code_of(errs[0]) == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs

    acls_cli(acl.plaintext, "create", "--principal", "User:alice", "--operation", "write", "--topic", topic)
    assert produce_as(acl, "alice", topic, [b"a1", b"a2"]) == [None, None]
    assert user_values(acl, "alice", topic) == values + [b"a1", b"a2"]
    assert topic not in acl.admin("mallory").list_topics(timeout=10).topics


@pytest.mark.parametrize("op,visible", [("read", True), ("write", True), ("delete", True),
                                        ("alter", True), ("create", False), ("dconf", False)])
def test_describe_is_implied_by_read_write_delete_alter_only(acl, op, visible):
    topic = f"impl-{op}-{uid()}"
    create_topic(acl.plaintext, topic)
    user = f"impl-{op}"
    operation = {"read": OP.READ, "write": OP.WRITE, "delete": OP.DELETE, "alter": OP.ALTER,
                 "create": OP.CREATE, "dconf": OP.DESCRIBE_CONFIGS}[op]
    grant(acl.plaintext, f"User:{user}", [operation], T, topic)
    with acl.raw(user) as c:
        listed = topic in raw_metadata(c, None)
        named = raw_metadata(c, [topic])[topic]
        offsets = raw_list_offsets(c, topic, [0])[0]
    assert listed == visible, f"{op}: topic listed {listed}"
    assert named == (NONE if visible else TOPIC_AUTHORIZATION_FAILED), f"{op}: Metadata error {named}"
    assert offsets == (NONE if visible else TOPIC_AUTHORIZATION_FAILED), f"{op}: ListOffsets {offsets}"


# ================================================================ 3. prefixed and wildcard names


def test_prefixed_acl_matches_names_starting_with_the_prefix(acl):
    u = uid()
    prefix = f"logs-{u}-"
    ok = [f"{prefix}a", f"{prefix}b"]
    refused = [f"other-{u}-a", f"logs-{u}", f"x{prefix}a"]
    for t in ok + refused:
        create_topic(acl.plaintext, t)
    acls_cli(acl.plaintext, "create", "--principal", "User:pat", "--operation", "write",
             "--topic", prefix, "--prefixed")
    for t in ok:
        assert produce_as(acl, "pat", t, [b"p"]) == [None], t
    with acl.raw("pat") as c:
        for t in refused:
            assert raw_produce(c, t, [b"p"]) == TOPIC_AUTHORIZATION_FAILED, t
        listed = set(raw_metadata(c, None))
    assert set(ok) <= listed and not set(refused) & listed, listed


def test_auto_creation_needs_create_on_the_topic(acl):
    prefix = f"autoc-{uid()}-"
    grant(acl.plaintext, "User:pat", [OP.WRITE], T, prefix, pattern=PRE)
    new1, new2 = f"{prefix}auto1", f"{prefix}auto2"
    with acl.raw("pat") as c:
        assert raw_metadata(c, [new1], auto_create=True)[new1] != NONE
        assert raw_produce(c, new1, [b"p"]) != NONE
    time.sleep(0.3)
    assert new1 not in acl.topics(), "auto-created without CREATE"
    grant(acl.plaintext, "User:pat", [OP.CREATE], T, prefix, pattern=PRE)
    assert produce_as(acl, "pat", new2, [b"auto"]) == [None]  # Metadata (librdkafka) auto-creates
    assert new2 in acl.topics()
    assert values_of(acl.plaintext, new2) == [b"auto"]
    with acl.raw("pat") as c:
        assert raw_metadata(c, [new1], auto_create=True) == {new1: NONE}
    assert new1 in acl.topics()


def test_auto_creation_refused_for_a_describable_name_is_topic_authorization_failed(acl):
    """Kafka (KafkaApis.handleTopicMetadataRequest): a missing topic the principal may DESCRIBE
    but not CREATE, with auto-creation asked for, is answered TOPIC_AUTHORIZATION_FAILED, and a
    producer fails at once with that error instead of waiting for the topic to appear."""
    prefix = f"autod-{uid()}-"
    grant(acl.plaintext, "User:pat", [OP.WRITE], T, prefix, pattern=PRE)
    new = f"{prefix}x"
    with acl.raw("pat") as c:
        assert raw_metadata(c, [new], auto_create=True) == {new: TOPIC_AUTHORIZATION_FAILED}
    assert code_of(produce_as(acl, "pat", new, [b"p"])[0]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert new not in acl.topics()


def test_literal_wildcard_topic_matches_every_topic_but_a_literal_star_suffix_does_not(acl):
    u = uid()
    a, b = f"wild-{u}-a", f"other-{u}-b"
    create_topic(acl.plaintext, a)
    create_topic(acl.plaintext, b)
    grant(acl.plaintext, "User:wendy", [OP.WRITE], T, "*")
    assert produce_as(acl, "wendy", a, [b"w"]) == [None]
    assert produce_as(acl, "wendy", b, [b"w"]) == [None]
    with acl.raw("wendy") as c:
        assert {a, b} <= set(raw_metadata(c, None))
        # CREATE on the cluster lets her auto-create (she may DESCRIBE every name)
        new = f"wild-{u}-new"
        assert raw_metadata(c, [new], auto_create=True)[new] != NONE
        assert new not in acl.topics()
        grant(acl.plaintext, "User:wendy", [OP.CREATE], C, "kafka-cluster")
        assert raw_metadata(c, [new], auto_create=True) == {new: NONE}
    assert new in acl.topics()
    # a LITERAL name ending in '*' is just that name
    grant(acl.plaintext, "User:lita", [OP.WRITE], T, f"wild-{u}*")
    with acl.raw("lita") as c:
        assert raw_produce(c, a, [b"l"]) == TOPIC_AUTHORIZATION_FAILED


# ================================================================ 4. deny wins


def test_deny_beats_allow(acl):
    topic = f"deny-{uid()}"
    values = seed_topic(acl, topic, count=3)
    grant(acl.plaintext, "User:*", [OP.ALL], T, topic)
    try:
        _deny_beats_allow(acl, topic, values)
    finally:
        # the ALLOW for User:* would grant every later test's principals WRITE on a topic (and
        # so InitProducerId) and a topic to see: delete it
        f = AclBindingFilter(T, topic, LIT, None, None, OP.ANY, AclPermissionType.ANY)
        [fut] = acl.admin().delete_acls([f], request_timeout=15).values()
        fut.result(timeout=20)


def _deny_beats_allow(acl, topic, values):
    grant(acl.plaintext, "User:dennis", [OP.WRITE], T, topic, permission=DENY)
    # dennis reads (ALL covers READ and DESCRIBE) but cannot write
    with acl.raw("dennis") as c:
        [(err, records)] = raw_fetch(c, topic, [0]).values()
        assert err == NONE and values[0] in records
        assert raw_metadata(c, [topic]) == {topic: NONE}
        assert raw_produce(c, topic, [b"d"]) == TOPIC_AUTHORIZATION_FAILED
    assert user_values(acl, "dennis", topic) == values
    errs = produce_as(acl, "dennis", topic, [b"d"])
    assert code_of(errs[0]) == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs
    # everyone else writes
    assert produce_as(acl, "bob", topic, [b"b"]) == [None]
    assert values_of(acl.plaintext, topic) == values + [b"b"]


# ================================================================ 5. host filters


def test_host_filter_compares_the_client_address(acl):
    topic, topic2 = f"host-{uid()}", f"host2-{uid()}"
    create_topic(acl.plaintext, topic)
    create_topic(acl.plaintext, topic2)
    grant(acl.plaintext, "User:hank", [OP.WRITE], T, topic, host="127.0.0.2")
    with acl.raw("hank", source_ip="127.0.0.1") as c:
        assert raw_produce(c, topic, [b"from-1"]) == TOPIC_AUTHORIZATION_FAILED
    with acl.raw("hank", source_ip="127.0.0.2") as c:
        assert raw_produce(c, topic, [b"from-2"]) == NONE
    assert code_of(produce_as(acl, "hank", topic, [b"c"])[0]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert values_of(acl.plaintext, topic) == [b"from-2"]
    # a deny for one address
    grant(acl.plaintext, "User:hank", [OP.WRITE], T, topic2)
    grant(acl.plaintext, "User:hank", [OP.WRITE], T, topic2, permission=DENY, host="127.0.0.2")
    with acl.raw("hank", source_ip="127.0.0.1") as c:
        assert raw_produce(c, topic2, [b"from-1"]) == NONE
    with acl.raw("hank", source_ip="127.0.0.2") as c:
        assert raw_produce(c, topic2, [b"from-2"]) == TOPIC_AUTHORIZATION_FAILED
    assert values_of(acl.plaintext, topic2) == [b"from-1"]


# ================================================================ 6. allow.everyone.if.no.acl.found


def test_allow_everyone_if_no_acl_found(open_broker):
    ob = open_broker
    topic, group = f"open-{uid()}", f"open-group-{uid()}"
    create_topic(ob.plaintext, topic)
    # no ACL names the topic (or the group): anyone authenticated may use it
    assert produce_as(ob, "olga", topic, [b"o1", b"o2"]) == [None, None]
    c = Consumer({**ob.conf("olga"), "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            for m in c.consume(10, timeout=0.5):
                assert m.error() is None, m.error()
                got.append(m.value())
        c.commit(asynchronous=False)
    finally:
        c.close()
    assert got == [b"o1", b"o2"]
    with ob.raw("olga") as conn:
        assert topic in raw_metadata(conn, None)
    # an ACL naming the topic for oscar: now the others are refused
    grant(ob.plaintext, "User:oscar", [OP.READ], T, topic)
    errs = produce_as(ob, "olga", topic, [b"o3"])
    assert code_of(errs[0]) == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs
    with ob.raw("olga") as conn:
        assert raw_fetch(conn, topic, [0]) == {0: (TOPIC_AUTHORIZATION_FAILED, b"")}
        assert topic not in raw_metadata(conn, None)
    with ob.raw("oscar") as conn:
        err, records = raw_fetch(conn, topic, [0])[0]
        assert err == NONE and b"o2" in records
        assert raw_produce(conn, topic, [b"x"]) == TOPIC_AUTHORIZATION_FAILED  # only READ
    assert values_of(ob.plaintext, topic) == [b"o1", b"o2"]
    # ACLs live in the metadata store: a restart keeps them
    ob.broker.restart()
    wait_until(lambda: port_accepts(ob.ports["SASL_PLAINTEXT"]), 10, what="SASL listener back")
    with ob.raw("olga") as conn:
        assert raw_fetch(conn, topic, [0]) == {0: (TOPIC_AUTHORIZATION_FAILED, b"")}
    with ob.raw("oscar") as conn:
        err, records = raw_fetch(conn, topic, [0])[0]
        assert err == NONE and b"o2" in records


# ================================================================ 7. the ACL APIs


def _filter_for(principal: str) -> AclBindingFilter:
    return AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal, None,
                            AclOperation.ANY, AclPermissionType.ANY)


def _key(b: AclBinding) -> tuple:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
            b.permission_type)


def test_admin_client_acl_round_trip_as_super_user(acl):
    u = uid()
    principal = f"User:rt-{u}"
    bindings = [AclBinding(T, f"rt-{u}", LIT, principal, "*", OP.READ, ALLOW),
                AclBinding(T, f"rt-{u}-", PRE, principal, "*", OP.WRITE, ALLOW),
                AclBinding(G, f"rt-group-{u}", LIT, principal, "127.0.0.2", OP.READ, DENY),
                AclBinding(C, "kafka-cluster", LIT, principal, "*", OP.IDEMPOTENT_WRITE, ALLOW)]
    for admin in (acl.admin(), acl.admin("admin")):  # User:ANONYMOUS and User:admin (SASL)
        futs = admin.create_acls(bindings, request_timeout=15)
        assert all(f.result(timeout=20) is None for f in futs.values())
        got = admin.describe_acls(_filter_for(principal), request_timeout=15).result(timeout=20)
        assert sorted(map(_key, got)) == sorted(map(_key, bindings)), got  # creating twice: no duplicate
        # a filter for one resource
        f = AclBindingFilter(T, f"rt-{u}", LIT, None, None, OP.ANY, AclPermissionType.ANY)
        assert [_key(b) for b in admin.describe_acls(f, request_timeout=15).result(timeout=20)] == \
            [_key(bindings[0])]
        # delete the prefixed one, then the rest
        f = AclBindingFilter(T, f"rt-{u}-", PRE, principal, None, OP.ANY, AclPermissionType.ANY)
        [fut] = admin.delete_acls([f], request_timeout=15).values()
        assert [_key(b) for b in fut.result(timeout=20)] == [_key(bindings[1])]
        left = admin.describe_acls(_filter_for(principal), request_timeout=15).result(timeout=20)
        assert sorted(map(_key, left)) == sorted(map(_key, [bindings[0], bindings[2], bindings[3]]))
        [fut] = admin.delete_acls([_filter_for(principal)], request_timeout=15).values()
        assert len(fut.result(timeout=20)) == 3
        assert admin.describe_acls(_filter_for(principal), request_timeout=15).result(timeout=20) == []


def test_describe_acls_match_filter_finds_every_acl_that_applies_to_a_name(acl):
    u = uid()
    principal = f"User:match-{u}"
    name = f"match-{u}-abc"
    applies = [AclBinding(T, name, LIT, principal, "*", OP.READ, ALLOW),
               AclBinding(T, f"match-{u}-", PRE, principal, "*", OP.WRITE, ALLOW),
               AclBinding(T, "*", LIT, principal, "*", OP.DESCRIBE, DENY)]
    others = [AclBinding(T, f"match-{u}-other", LIT, principal, "*", OP.READ, ALLOW),
              AclBinding(T, f"match-{u}-abcd", PRE, principal, "*", OP.READ, ALLOW),
              AclBinding(G, name, LIT, principal, "*", OP.READ, ALLOW)]
    admin = acl.admin()
    try:
        for f in admin.create_acls(applies + others, request_timeout=15).values():
            f.result(timeout=20)
        f = AclBindingFilter(T, name, ResourcePatternType.MATCH, principal, None, OP.ANY,
                             AclPermissionType.ANY)
        got = admin.describe_acls(f, request_timeout=15).result(timeout=20)
        assert sorted(map(_key, got)) == sorted(map(_key, applies)), got
    finally:
        [fut] = admin.delete_acls([_filter_for(principal)], request_timeout=15).values()
        assert len(fut.result(timeout=20)) == 6


def test_super_users_are_allowed_despite_a_deny(acl):
    topic = f"super-{uid()}"
    create_topic(acl.plaintext, topic)
    grant(acl.plaintext, "User:admin", [OP.ALL], T, topic, permission=DENY)
    grant(acl.plaintext, "User:admin", [OP.ALL], C, "kafka-cluster", permission=DENY)
    assert produce_as(acl, "admin", topic, [b"s"]) == [None]
    with acl.raw("admin") as c:
        assert raw_fetch(c, topic, [0])[0][0] == NONE
        assert raw_init_producer_id(c) == NONE
        assert raw_describe_acls(acl.sasl, "User:admin", conn=c)[0] == NONE
    f = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:admin", None,
                         OP.ANY, AclPermissionType.ANY)
    [fut] = acl.admin().delete_acls([f], request_timeout=15).values()
    assert len(fut.result(timeout=20)) == 2


def test_acl_apis_need_cluster_describe_and_alter(acl):
    u = uid()
    binding = AclBinding(T, f"carol-{u}", LIT, "User:carol", "*", OP.READ, ALLOW)
    admin = acl.admin("carol")
    [f] = admin.create_acls([binding], request_timeout=15).values()
    assert code_of(future_error(f)) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # DescribeAcls refused: checked raw, since librdkafka 2.16 drops DescribeAcls' request-level
    # error (its describe_acls future returns [] for an answer with error 31 or 54)
    with acl.raw("carol") as c:
        assert raw_describe_acls(acl.sasl, "User:carol", conn=c) == (CLUSTER_AUTHORIZATION_FAILED, [])
    [f] = admin.delete_acls([_filter_for("User:carol")], request_timeout=15).values()
    assert code_of(future_error(f)) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert acl.admin().describe_acls(_filter_for("User:carol"), request_timeout=15).result(timeout=20) == []
    # DESCRIBE on the cluster: DescribeAcls only
    grant(acl.plaintext, "User:carol", [OP.DESCRIBE], C, "kafka-cluster")
    got = admin.describe_acls(_filter_for("User:carol"), request_timeout=15).result(timeout=20)
    assert [(b.restype, b.operation) for b in got] == [(C, OP.DESCRIBE)], got
    [f] = admin.create_acls([binding], request_timeout=15).values()
    assert code_of(future_error(f)) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # ALTER on the cluster: CreateAcls and DeleteAcls
    grant(acl.plaintext, "User:carol", [OP.ALTER], C, "kafka-cluster")
    [f] = admin.create_acls([binding], request_timeout=15).values()
    assert future_error(f) is None
    f = AclBindingFilter(T, f"carol-{u}", LIT, None, None, OP.ANY, AclPermissionType.ANY)
    [fut] = admin.delete_acls([f], request_timeout=15).values()
    assert [_key(b) for b in fut.result(timeout=20)] == [_key(binding)]


def test_acl_apis_without_authorizer_are_security_disabled(broker_factory):
    b = broker_factory()
    admin = confluent_admin(b.bootstrap)
    binding = AclBinding(T, "t", LIT, "User:alice", "*", OP.READ, ALLOW)
    [f] = admin.create_acls([binding], request_timeout=15).values()
    assert code_of(future_error(f)) == KafkaError.SECURITY_DISABLED
    assert raw_describe_acls(b.bootstrap) == (SECURITY_DISABLED, [])  # raw: see above
    [f] = admin.delete_acls([_filter_for("User:alice")], request_timeout=15).values()
    assert code_of(future_error(f)) == KafkaError.SECURITY_DISABLED
    cp = acls_cli(b.bootstrap, "create", "--principal", "User:alice", "--operation", "read",
                  "--topic", "t", check=False)
    assert cp.returncode != 0 and "securitydisabled" in (cp.stdout + cp.stderr).lower().replace("_", ""), cp


def test_invalid_acls_are_refused_with_invalid_request(acl):
    u = uid()
    good = dict(resource_type=2, resource_name=f"inv-{u}", resource_pattern_type=3,
                principal=f"User:inv-{u}", host="*", operation=3, permission_type=3)
    bad = {
        "principal without a type": {**good, "principal": f"inv-{u}"},
        "PREFIXED '*'": {**good, "resource_name": "*", "resource_pattern_type": 4},
        "pattern ANY": {**good, "resource_pattern_type": 1},
        "operation ANY": {**good, "operation": 1},
        "permission ANY": {**good, "permission_type": 1},
        "resource type ANY": {**good, "resource_type": 1},
    }
    results = raw_create_acls(acl.plaintext, [good, *bad.values()])
    assert results[0][0] == NONE, results[0]
    for (what, _), (code, message) in zip(bad.items(), results[1:]):
        assert code == INVALID_REQUEST, f"{what}: error {code} ({message})"
    stored = acl.admin().describe_acls(AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
        AclPermissionType.ANY), request_timeout=15).result(timeout=20)
    mine = [b for b in stored if b.principal in (f"User:inv-{u}", f"inv-{u}") or b.name == "*"
            and b.resource_pattern_type == PRE]
    assert [(b.name, b.principal) for b in mine] == [(f"inv-{u}", f"User:inv-{u}")], mine


# ================================================================ 8. idempotent producers


def test_idempotent_producer_needs_write_or_idempotent_write(acl):
    topic = f"idem-{uid()}"
    create_topic(acl.plaintext, topic)
    grant(acl.plaintext, "User:ida", [OP.WRITE], T, topic)
    grant(acl.plaintext, "User:ron", [OP.READ], T, topic)
    grant(acl.plaintext, "User:ivy", [OP.IDEMPOTENT_WRITE], C, "kafka-cluster")
    # WRITE on a topic: the idempotent producer works
    errors = []
    assert produce_as(acl, "ida", topic, [b"i1", b"i2", b"i3"], **{
        "enable.idempotence": True, "error_cb": errors.append}) == [None] * 3
    assert not errors, errors
    assert values_of(acl.plaintext, topic) == [b"i1", b"i2", b"i3"]
    # READ only: InitProducerId is refused with CLUSTER_AUTHORIZATION_FAILED, which librdkafka
    # makes a fatal error (confluent-kafka raises it from flush())
    p = confluent_producer(acl.sasl, **acl.user("ron").confluent(), **{
        "enable.idempotence": True, "message.timeout.ms": 8000})
    results = []
    p.produce(topic, value=b"r1", partition=0, on_delivery=lambda e, m: results.append(e))
    raised = None
    try:
        p.flush(15)
    except Exception as e:  # noqa: BLE001 (KafkaException, or SystemError wrapping it)
        raised = e
    chain = [raised, getattr(raised, "__cause__", None), getattr(raised, "__context__", None)]
    fatal = [kafka_error_of(x) for x in chain if isinstance(x, KafkaException)]
    assert fatal and fatal[0].fatal() and fatal[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, (
        f"flush raised {raised!r}; deliveries {results}")
    assert all(e is not None for e in results), f"ron's idempotent produce succeeded: {results}"
    assert values_of(acl.plaintext, topic) == [b"i1", b"i2", b"i3"]
    # raw InitProducerId
    for user, want in (("ida", NONE), ("ivy", NONE), ("ron", CLUSTER_AUTHORIZATION_FAILED),
                       ("mallory", CLUSTER_AUTHORIZATION_FAILED)):
        with acl.raw(user) as c:
            assert raw_init_producer_id(c) == want, user


# ================================================================ 9. SCRAM credentials


def test_scram_credentials_need_cluster_alter_and_describe(acl):
    admin = acl.admin("sam")
    victim = f"victim-{uid()}"
    up = UserScramCredentialUpsertion(victim, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"x")
    futs = admin.alter_user_scram_credentials([up], request_timeout=15)
    assert code_of(future_error(futs[victim])) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # DescribeUserScramCredentials refused: checked raw, since librdkafka 2.16 aborts the process
    # ("munmap_chunk(): invalid pointer") when it parses any answer with a request-level error
    with acl.raw("sam") as c:
        for users in (None, [DescribeUserScramCredentialsRequest.UserName(name="sam")]):
            r = c.call(DescribeUserScramCredentialsRequest(users=users), 0)
            assert r.error_code == CLUSTER_AUTHORIZATION_FAILED, r
            assert all(x.error_code == CLUSTER_AUTHORIZATION_FAILED for x in r.results), r
            assert not any(x.credential_infos for x in r.results), r
    all_users = acl.admin().describe_user_scram_credentials(request_timeout=15).result(timeout=20)
    assert victim not in all_users and "sam" in all_users
    grant(acl.plaintext, "User:sam", [OP.ALTER], C, "kafka-cluster")
    futs = admin.alter_user_scram_credentials([up], request_timeout=15)
    assert future_error(futs[victim]) is None
    grant(acl.plaintext, "User:sam", [OP.DESCRIBE], C, "kafka-cluster")
    assert victim in admin.describe_user_scram_credentials(request_timeout=15).result(timeout=20)


# ================================================================ 10. follower fetch


def test_follower_fetch_needs_cluster_action(acl):
    topic = f"follower-{uid()}"
    values = seed_topic(acl, topic, partitions=2, count=4)
    grant(acl.plaintext, "User:fol", [OP.READ], T, topic)
    with acl.raw("fol") as c:
        consumer = raw_fetch(c, topic, [0, 1])
        assert consumer[0][0] == NONE and values[0] in consumer[0][1], consumer
        follower = raw_fetch(c, topic, [0, 1], replica_id=1)
        assert follower == {0: (TOPIC_AUTHORIZATION_FAILED, b""), 1: (TOPIC_AUTHORIZATION_FAILED, b"")}, \
            follower
    grant(acl.plaintext, "User:fol", [OP.CLUSTER_ACTION], C, "kafka-cluster")
    with acl.raw("fol") as c:
        follower = raw_fetch(c, topic, [0, 1], replica_id=1)
    assert all(err != TOPIC_AUTHORIZATION_FAILED for err, _ in follower.values()), follower


# ================================================================ groups, partial grants


def test_group_acls_per_group_and_per_topic(acl):
    u = uid()
    group, other_group = f"gus-{u}", f"gus-other-{u}"
    readable, hidden = f"gus-read-{u}", f"gus-hidden-{u}"
    seed_topic(acl, readable, count=3)
    seed_topic(acl, hidden, count=3)
    make_group(acl.plaintext, other_group, readable)
    grant(acl.plaintext, "User:gus", [OP.READ], G, group)
    grant(acl.plaintext, "User:gus", [OP.READ], T, readable)
    with acl.raw("gus") as c:
        assert c.call(rawkafka.find_coordinator(group), 2).error_code == NONE
        assert c.call(rawkafka.find_coordinator(other_group), 2).error_code == GROUP_AUTHORIZATION_FAILED
        # OffsetCommit: READ on the group, and on each topic
        assert raw_offset_commit(c, group, {(readable, 0): 2, (hidden, 0): 2}) == {
            (readable, 0): NONE, (hidden, 0): TOPIC_AUTHORIZATION_FAILED}
        # OffsetFetch: named unauthorized topics 29, "all topics" only the describable ones
        err, got = raw_offset_fetch(c, group, {readable: [0], hidden: [0]})
        assert err == NONE and got[(readable, 0)] == (NONE, 2), got
        assert got[(hidden, 0)][0] == TOPIC_AUTHORIZATION_FAILED, got
        err, got = raw_offset_fetch(c, group, None)
        assert err == NONE and set(got) == {(readable, 0)}, got
        assert raw_offset_fetch(c, other_group, None)[0] == GROUP_AUTHORIZATION_FAILED
        assert raw_describe_groups(c, [group, other_group]) == {group: NONE,
                                                                other_group: GROUP_AUTHORIZATION_FAILED}
        err, groups = raw_list_groups(c)
        assert err == NONE and groups == {group}, groups
        assert raw_delete_groups(c, [group]) == {group: GROUP_AUTHORIZATION_FAILED}  # no DELETE
    # the super user committed nothing for gus's hidden topic
    with rawkafka.RawConn(acl.plaintext) as c:
        err, got = raw_offset_fetch(c, group, None)
        assert err == NONE and set(got) == {(readable, 0)}, got
    # DESCRIBE on the cluster: ListGroups lists every group
    grant(acl.plaintext, "User:gus", [OP.DESCRIBE], C, "kafka-cluster")
    grant(acl.plaintext, "User:gus", [OP.DELETE], G, group)
    with acl.raw("gus") as c:
        err, groups = raw_list_groups(c)
        assert err == NONE and {group, other_group} <= groups, groups
        # OffsetDelete: DELETE on the group and READ on the topic
        r = c.call(rawkafka.offset_delete(group, hidden, [0]), 0)
        assert r.error_code == NONE, r
        assert [p.error_code for t in r.topics for p in t.partitions] == [TOPIC_AUTHORIZATION_FAILED], r
        r = c.call(rawkafka.offset_delete(group, readable, [0]), 0)
        assert r.error_code == NONE and [p.error_code for t in r.topics for p in t.partitions] == [NONE], r
        assert raw_offset_fetch(c, group, {readable: [0]})[1][(readable, 0)] == (NONE, -1)
        # commit again (so that the group surely exists), then DeleteGroups with DELETE
        assert raw_offset_commit(c, group, {(readable, 0): 3}) == {(readable, 0): NONE}
        assert raw_delete_groups(c, [group]) == {group: NONE}
    with rawkafka.RawConn(acl.plaintext) as c:
        assert group not in raw_list_groups(c)[1]


def test_topic_admin_apis_with_their_grants(acl):
    u = uid()
    mine, theirs = f"tina-{u}-a", f"notina-{u}"
    grant(acl.plaintext, "User:tina", [OP.CREATE], T, f"tina-{u}-", pattern=PRE)
    admin = acl.admin("tina")
    futs = admin.create_topics([NewTopic(mine, 1, 1), NewTopic(theirs, 1, 1)], request_timeout=15)
    assert future_error(futs[mine]) is None
    assert code_of(future_error(futs[theirs])) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    topics = acl.topics()
    assert mine in topics and theirs not in topics
    res = ConfigResource(ConfigResource.Type.TOPIC, mine)
    assert code_of(future_error(admin.describe_configs([res], request_timeout=15)[res])) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(acl.plaintext, "User:tina", [OP.DESCRIBE_CONFIGS, OP.ALTER_CONFIGS, OP.ALTER, OP.DELETE, OP.WRITE],
          T, mine)
    assert admin.describe_configs([res], request_timeout=15)[res].result(timeout=20)["retention.ms"]
    inc = ConfigResource(ConfigResource.Type.TOPIC, mine, incremental_configs=[
        ConfigEntry("retention.ms", "4321", incremental_operation=AlterConfigOpType.SET)])
    assert future_error(admin.incremental_alter_configs([inc], request_timeout=15)[inc]) is None
    assert admin.describe_configs([res], request_timeout=15)[res].result(timeout=20)["retention.ms"].value == "4321"
    assert future_error(admin.create_partitions([NewPartitions(mine, 2)], request_timeout=15)[mine]) is None
    assert produce_as(acl, "tina", mine, [b"1", b"2", b"3"]) == [None] * 3
    [f] = admin.delete_records([TopicPartition(mine, 0, 2)], request_timeout=15).values()
    assert future_error(f) is None
    assert watermarks_confluent(acl.plaintext, mine, [0])[0] == (2, 3)
    assert future_error(admin.delete_topics([mine], request_timeout=15)[mine]) is None
    wait_until(lambda: mine not in acl.topics(), 10, what=f"{mine} deleted")


# ================================================================ 11. a cluster


def test_cluster_acl_made_on_one_broker_applies_on_the_others(cluster_factory, new_topic):
    c = cluster_factory(3, extra_args=["--authorizer", "acl", "--super-users", "User:ANONYMOUS"],
                        start=False)
    used = {p for b in c.brokers.values() for p in (b.port, b.http_port)}
    sasl_ports = dict(zip(sorted(c.brokers), distinct_ports(3, used)))
    for i, b in c.brokers.items():
        b.options += ["--listener", f"SASL_PLAINTEXT://127.0.0.1:{sasl_ports[i]}"]
    c.start()
    wait_until(lambda: all(port_accepts(p) for p in sasl_ports.values()), 10, what="SASL listeners")
    upsert(c.brokers[1].bootstrap, {"cu": {MECH: ("cu-pw", 4096)}})

    def ep(i):
        return Endpoint(f"127.0.0.1:{sasl_ports[i]}", "SASL_PLAINTEXT").login(MECH, "cu", "cu-pw")

    topic = new_topic()
    admin = confluent_admin(c.brokers[1].bootstrap)
    admin.create_topics([NewTopic(topic, 1, 3)], request_timeout=20)[topic].result(timeout=30)
    leader = c.wait_leader(topic)
    via = next(i for i in sorted(c.brokers) if i != leader)  # the ACL goes through another broker

    def produce_raw(i):
        with SaslConn(ep(i).bootstrap) as conn:
            assert sasl_login(conn, MECH, "cu", "cu-pw").error_code == 0
            return raw_produce(conn, topic, [b"probe"])

    assert produce_raw(leader) == TOPIC_AUTHORIZATION_FAILED
    grant(c.brokers[via].bootstrap, "User:cu", [OP.WRITE], T, topic)
    t0 = time.monotonic()
    wait_until(lambda: produce_raw(leader) == NONE, 5, interval=0.1,
               what=f"broker {leader} to allow cu's produce after the ACL was made on broker {via}")
    took = time.monotonic() - t0
    print(f"ACL made on broker {via} enforced by broker {leader} after {took:.2f}s")
    assert took < 3.5, f"the ACL took {took:.1f}s to reach broker {leader}"
    # every broker shows cu the topic (WRITE implies DESCRIBE)
    for i in c.brokers:
        wait_until(lambda: topic in AdminClient({"bootstrap.servers": ep(i).bootstrap, **ep(i).confluent()})
                   .list_topics(timeout=10).topics, 5, what=f"broker {i} to list {topic} for cu")
    # acks=all through the ACL'd principal; RF 3 still replicates (followers are super users)
    boot = ",".join(ep(i).bootstrap for i in sorted(c.brokers))
    values = [f"c{i}".encode() for i in range(20)]
    ds = produce_confluent(confluent_producer(boot, **ep(1).confluent(), acks="all"), topic,
                           [{"value": v, "partition": 0} for v in values], flush_timeout=60)
    assert [d.error for d in ds] == [None] * 20, [d.error for d in ds if d.error][:3]
    c.wait_isr(topic, 0, {1, 2, 3})
    assert values_of(c.bootstrap, topic)[-20:] == values
    # deleting it through a third broker revokes it everywhere
    third = next(i for i in sorted(c.brokers) if i not in (leader, via))
    f = AclBindingFilter(T, topic, LIT, "User:cu", None, OP.ANY, AclPermissionType.ANY)
    third_admin = confluent_admin(c.brokers[third].bootstrap)
    [fut] = third_admin.delete_acls([f], request_timeout=15).values()
    assert len(fut.result(timeout=20)) == 1
    wait_until(lambda: produce_raw(leader) == TOPIC_AUTHORIZATION_FAILED, 5, interval=0.1,
               what=f"broker {leader} to refuse cu after the ACL was deleted on broker {third}")


# ================================================================ 12. the CLI


def _cli_lines(cp: subprocess.CompletedProcess) -> set[str]:
    return {line.strip() for line in cp.stdout.splitlines() if line.strip()}


def test_cli_list_prints_the_acls(acl):
    u = uid()
    topic, prefix, group = f"cli-{u}", f"cli-{u}-", f"cli-group-{u}"
    acls_cli(acl.plaintext, "create", "--principal", "User:cli-user", "--operation", "read,write",
             "--topic", topic)
    acls_cli(acl.plaintext, "create", "--principal", "User:cli-user", "--operation", "write",
             "--topic", prefix, "--prefixed")
    acls_cli(acl.plaintext, "create", "--principal", "User:cli-other", "--operation", "read",
             "--group", group, "--deny", "--host", "127.0.0.2")
    mine = {f"topic {topic} allow User:cli-user read from *",
            f"topic {topic} allow User:cli-user write from *",
            f"topic {prefix}* allow User:cli-user write from *",
            f"group {group} deny User:cli-other read from 127.0.0.2"}
    # the same ACLs as the admin API sees them
    got = acl.admin().describe_acls(_filter_for("User:cli-user"), request_timeout=15).result(timeout=20)
    assert sorted((b.name, b.resource_pattern_type, b.operation) for b in got) == sorted(
        [(topic, LIT, OP.READ), (topic, LIT, OP.WRITE), (prefix, PRE, OP.WRITE)]), got
    listed = _cli_lines(acls_cli(acl.plaintext, "list"))
    assert mine <= listed, f"`acls list` printed {sorted(listed)[:20]}"
    assert _cli_lines(acls_cli(acl.plaintext, "list", "--topic", topic)) == {
        f"topic {topic} allow User:cli-user read from *", f"topic {topic} allow User:cli-user write from *"}
    assert _cli_lines(acls_cli(acl.plaintext, "list", "--topic", prefix, "--prefixed")) == {
        f"topic {prefix}* allow User:cli-user write from *"}
    assert _cli_lines(acls_cli(acl.plaintext, "list", "--principal", "User:cli-other")) == {
        f"group {group} deny User:cli-other read from 127.0.0.2"}


def test_cli_delete_prints_the_count_and_takes_effect(acl):
    u = uid()
    topic = f"clidel-{u}"
    create_topic(acl.plaintext, topic)
    principal = f"User:clidel-{u}"
    acls_cli(acl.plaintext, "create", "--principal", "User:cli-user", "--operation", "read,write",
             "--topic", topic)
    acls_cli(acl.plaintext, "create", "--principal", principal, "--operation", "read", "--topic", topic)
    assert produce_as(acl, "cli-user", topic, [b"before"]) == [None]
    cp = acls_cli(acl.plaintext, "delete", "--topic", topic, "--principal", "User:cli-user",
                  "--operation", "write")
    assert cp.stdout.strip() == "1 ACLs deleted", cp.stdout
    assert code_of(produce_as(acl, "cli-user", topic, [b"after"])[0]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with acl.raw("cli-user") as c:
        assert raw_fetch(c, topic, [0])[0][0] == NONE  # READ is still there
    # without --principal: every ACL of the topic
    cp = acls_cli(acl.plaintext, "delete", "--topic", topic)
    assert cp.stdout.strip() == "2 ACLs deleted", cp.stdout
    with acl.raw("cli-user") as c:
        assert raw_fetch(c, topic, [0])[0][0] == TOPIC_AUTHORIZATION_FAILED
    f = AclBindingFilter(T, topic, LIT, None, None, OP.ANY, AclPermissionType.ANY)
    assert acl.admin().describe_acls(f, request_timeout=15).result(timeout=20) == []
    cp = acls_cli(acl.plaintext, "delete", "--topic", topic)
    assert cp.stdout.strip() == "0 ACLs deleted", cp.stdout


def test_cli_delete_by_principal_alone(acl):
    u = uid()
    principal = f"User:clip-{u}"
    acls_cli(acl.plaintext, "create", "--principal", principal, "--operation", "read", "--topic", f"clip-{u}")
    acls_cli(acl.plaintext, "create", "--principal", principal, "--operation", "read", "--group", f"clip-{u}")
    cp = acls_cli(acl.plaintext, "delete", "--principal", principal)
    assert cp.stdout.strip() == "2 ACLs deleted", cp.stdout
    assert acl.admin().describe_acls(_filter_for(principal), request_timeout=15).result(timeout=20) == []
