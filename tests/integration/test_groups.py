"""Consumer groups and committed offsets, with confluent-kafka and kafka-python.

Members of a group run in threads of the test (or, where the test must SIGKILL
one, in a child process); see groupkit.py for how each member commits and what
the ledger records. The broker is the coordinator of every group (classic
protocol, eager rebalances with the range/roundrobin assignors).
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)

import rawkafka as rk
from conftest import sediment_binary
from groupkit import (
    ChildMember,
    Ledger,
    Member,
    assert_balanced,
    committed_offsets,
    produce_spread,
    stop_all,
)
from kafkautil import (
    OP_TIMEOUT_S,
    confluent_admin,
    confluent_consumer,
    create_topic,
    kafka_error_of,
    wait_until,
)

CLIENTS = ["confluent", "kafka-python"]
PARTS = list(range(6))
SETTLE_S = 30.0        # bound on a group settling after a membership change
CONSUME_S = 30.0       # bound on consuming what was produced


def group_of(topic: str, suffix: str = "g") -> str:
    return f"{suffix}-{topic}"


def session_conf(client: str, session_ms: int, heartbeat_ms: int = 250) -> dict:
    if client == "confluent":
        return {"session.timeout.ms": session_ms, "heartbeat.interval.ms": heartbeat_ms}
    return {"session_timeout_ms": session_ms, "heartbeat_interval_ms": heartbeat_ms}


def end_offsets(expected: set[tuple[int, int]], partitions) -> dict[int, int]:
    return {p: 1 + max((o for q, o in expected if q == p), default=-1) for p in partitions}


# ---------------------------------------------------------------------------
# groups of 1, 2 and 3 members


@pytest.mark.timeout(90)
@pytest.mark.parametrize("members", [1, 2, 3])
@pytest.mark.parametrize("client", CLIENTS)
def test_members_split_partitions_and_consume_each_record_once(broker, topic_name, client, members):
    create_topic(broker.bootstrap, topic_name, partitions=len(PARTS))
    expected = produce_spread(broker.bootstrap, topic_name, PARTS, 25, "before")
    group = group_of(topic_name)
    ledger = Ledger(topic_name)
    ms = [Member(f"{client[:2]}{i}", client, broker.bootstrap, topic_name, group, ledger)
          for i in range(members)]
    try:
        for m in ms:
            m.start()
        # produced while the group forms and the members consume
        expected |= produce_spread(broker.bootstrap, topic_name, PARTS, 25, "during")
        assignment, _ = ledger.wait_stable([m.name for m in ms], PARTS, SETTLE_S)
        assert_balanced(assignment, PARTS)
        expected |= produce_spread(broker.bootstrap, topic_name, PARTS, 25, "stable")
        ledger.wait_delivered(expected, CONSUME_S)
        assert ledger.stable_assignment([m.name for m in ms], PARTS) == assignment, (
            f"the group rebalanced although no member came or went:\n{ledger.describe_events()}")
    finally:
        stop_all(ms)
    ledger.check_exactly_once(expected)
    ledger.check_no_overlap()
    # What was produced after the group settled went to the owners of its partitions.
    for m in ms:
        late = {d.partition for d in ledger.delivered_by(m.name) if d.value.startswith(b"stable:")}
        assert late <= assignment[m.name], (
            f"{m.name} consumed records of partitions {sorted(late - assignment[m.name])} "
            f"produced after the group settled, outside its assignment {sorted(assignment[m.name])}")
    got = committed_offsets(broker.bootstrap, group, topic_name, PARTS)
    assert got == {p: 75 for p in PARTS}, f"committed offsets after consuming everything: {got}"


# ---------------------------------------------------------------------------
# membership changes


@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", CLIENTS)
def test_member_joins_then_member_leaves_cleanly(broker, topic_name, client):
    """A third member joins a running group of two; then one member close()s. The
    session timeout is long (30 s): the rebalance after close() must come from its
    LeaveGroup, not from the session expiring."""
    create_topic(broker.bootstrap, topic_name, partitions=len(PARTS))
    group = group_of(topic_name)
    ledger = Ledger(topic_name)
    conf = session_conf(client, 30000)
    mk = lambda name: Member(name, client, broker.bootstrap, topic_name, group, ledger, conf)  # noqa: E731
    a, b, c = mk("a"), mk("b"), mk("c")
    expected = produce_spread(broker.bootstrap, topic_name, PARTS, 20, "p1")
    try:
        a.start()
        b.start()
        assignment, _ = ledger.wait_stable(["a", "b"], PARTS, SETTLE_S)
        assert_balanced(assignment, PARTS)
        expected |= produce_spread(broker.bootstrap, topic_name, PARTS, 20, "p2")
        ledger.wait_delivered(expected, CONSUME_S)

        c.start()
        assignment, _ = ledger.wait_stable(["a", "b", "c"], PARTS, SETTLE_S)
        assert_balanced(assignment, PARTS)
        expected |= produce_spread(broker.bootstrap, topic_name, PARTS, 20, "p3")
        ledger.wait_delivered(expected, CONSUME_S)
        assert {d.partition for d in ledger.delivered_by("c")} == set(assignment["c"]), (
            "the member that joined did not consume its partitions")

        t_leave = time.monotonic()
        a.stop()
        assignment, seen = ledger.wait_stable(["b", "c"], PARTS, SETTLE_S)
        took = seen - t_leave
        print(f"{client}: rebalanced {took:.2f}s after a member's close()")
        assert took < 15, (f"the group took {took:.1f}s to rebalance after a clean leave: "
                           f"LeaveGroup should not wait for the 30 s session timeout")
        assert_balanced(assignment, PARTS)
        expected |= produce_spread(broker.bootstrap, topic_name, PARTS, 20, "p4")
        ledger.wait_delivered(expected, CONSUME_S)
    finally:
        stop_all([m for m in (a, b, c) if m.thread.is_alive()])
    ledger.check_exactly_once(expected)
    ledger.check_no_overlap()
    got = committed_offsets(broker.bootstrap, group, topic_name, PARTS)
    assert got == end_offsets(expected, PARTS), got


@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", CLIENTS)
def test_killed_member_is_expelled_after_its_session_timeout(broker, topic_name, client, tmp_path):
    """A member in a child process is SIGKILLed (it cannot leave). After its session
    timeout (6 s) the group rebalances and the survivor takes over its partitions
    from the offsets it committed: nothing lost, nothing read twice."""
    session_ms, heartbeat_ms = 6000, 250
    create_topic(broker.bootstrap, topic_name, partitions=len(PARTS))
    group = group_of(topic_name)
    ledger = Ledger(topic_name)
    conf = session_conf(client, session_ms, heartbeat_ms)
    survivor = Member("survivor", client, broker.bootstrap, topic_name, group, ledger, conf)
    victim = ChildMember("victim", client, broker.bootstrap, topic_name, group, ledger, conf)
    try:
        survivor.start()
        victim.start(tmp_path)
        try:
            assignment, _ = ledger.wait_stable(["survivor", "victim"], PARTS, SETTLE_S)
            # Produced once both own partitions (a child process can take longer to start than
            # the group's initial rebalance delay), so the victim has records of its own.
            expected = produce_spread(broker.bootstrap, topic_name, PARTS, 20, "before-kill")
            ledger.wait_delivered(expected, CONSUME_S)
        except AssertionError as e:
            raise AssertionError(f"{e}\nchild stderr:\n{victim.stderr_tail()}") from None
        assert_balanced(assignment, PARTS)
        victims_parts = set(assignment["victim"])
        assert ledger.delivered_by("victim"), "the child member consumed nothing before the kill"

        # Everything produced so far is consumed and committed; the victim is idle when killed.
        killed_at = victim.kill9()
        expected |= produce_spread(broker.bootstrap, topic_name, PARTS, 20, "after-kill")
        assignment, seen = ledger.wait_stable(["survivor"], PARTS, session_ms / 1000 + SETTLE_S)
        took = seen - killed_at
        print(f"{client}: survivor took over {sorted(victims_parts)} {took:.2f}s after the SIGKILL "
              f"(session timeout {session_ms / 1000:.0f}s)")
        assert took >= (session_ms - heartbeat_ms) / 1000 - 1.0, (
            f"the dead member's partitions moved {took:.2f}s after the kill, before its "
            f"{session_ms / 1000:.0f}s session timeout could have expired")
        ledger.wait_delivered(expected, CONSUME_S)
    finally:
        stop_all([survivor, victim])
    ledger.check_exactly_once(expected)
    ledger.check_no_overlap()
    after = {d.partition for d in ledger.delivered_by("survivor") if d.value and d.value.startswith(b"after-kill")}
    assert victims_parts <= after, "the survivor did not consume the dead member's partitions"


@pytest.mark.timeout(90)
def test_static_member_restart_keeps_its_partitions_without_a_rebalance(broker, topic_name):
    """KIP-345: a member with a group.instance.id that restarts within its session
    timeout gets its partitions back and the other member is not disturbed."""
    create_topic(broker.bootstrap, topic_name, partitions=len(PARTS))
    group = group_of(topic_name)
    ledger = Ledger(topic_name)
    conf = {"session.timeout.ms": 10000, "heartbeat.interval.ms": 250}
    mk = lambda name, instance: Member(name, "confluent", broker.bootstrap, topic_name, group, ledger,  # noqa: E731
                                       {**conf, "group.instance.id": instance})
    a, b = mk("a", "instance-a"), mk("b", "instance-b")
    a2 = None
    expected = produce_spread(broker.bootstrap, topic_name, PARTS, 20, "first")
    try:
        a.start()
        b.start()
        assignment, _ = ledger.wait_stable(["a", "b"], PARTS, SETTLE_S)
        assert_balanced(assignment, PARTS)
        ledger.wait_delivered(expected, CONSUME_S)
        b_events = [e for e in ledger.events if e.member == "b" and e.kind in ("assigned", "revoked", "lost")]

        a.stop()  # a static member's close() does not leave the group
        a2 = mk("a2", "instance-a").start()
        after, _ = ledger.wait_stable(["a2", "b"], PARTS, 8.0)
        assert after["a2"] == assignment["a"], (
            f"the restarted static member got {sorted(after['a2'])}, it had {sorted(assignment['a'])}")
        b_after = [e for e in ledger.events if e.member == "b" and e.kind in ("assigned", "revoked", "lost")]
        assert b_after == b_events, (
            f"the other member went through a rebalance:\n{ledger.describe_events()}")
        expected |= produce_spread(broker.bootstrap, topic_name, PARTS, 20, "second")
        ledger.wait_delivered(expected, CONSUME_S)
    finally:
        stop_all([m for m in (a, b, a2) if m is not None and m.thread.is_alive()])
    ledger.check_exactly_once(expected)
    ledger.check_no_overlap()


# ---------------------------------------------------------------------------
# more than one group, and mixed clients


@pytest.mark.timeout(90)
def test_two_groups_each_get_every_record(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=len(PARTS))
    expected = produce_spread(broker.bootstrap, topic_name, PARTS, 30, "before")
    ledgers = {"confluent": Ledger(topic_name), "kafka-python": Ledger(topic_name)}
    members = []
    for client, ledger in ledgers.items():
        group = group_of(topic_name, client)
        members += [Member(f"{client[:2]}{i}", client, broker.bootstrap, topic_name, group, ledger)
                    for i in range(2)]
    try:
        for m in members:
            m.start()
        expected |= produce_spread(broker.bootstrap, topic_name, PARTS, 30, "during")
        for client, ledger in ledgers.items():
            assignment, _ = ledger.wait_stable([f"{client[:2]}{i}" for i in range(2)], PARTS, SETTLE_S)
            assert_balanced(assignment, PARTS)
        for ledger in ledgers.values():
            ledger.wait_delivered(expected, CONSUME_S)
    finally:
        stop_all(members)
    for client, ledger in ledgers.items():
        ledger.check_exactly_once(expected)
        ledger.check_no_overlap()
        got = committed_offsets(broker.bootstrap, group_of(topic_name, client), topic_name, PARTS)
        assert got == {p: 60 for p in PARTS}, (client, got)


@pytest.mark.timeout(90)
def test_mixed_clients_agree_on_the_common_assignor(broker, topic_name):
    """A confluent member that only offers roundrobin and a kafka-python member that
    offers range and roundrobin: the broker must pick roundrobin, the only protocol
    both support, and the two libraries then share the partitions."""
    create_topic(broker.bootstrap, topic_name, partitions=len(PARTS))
    expected = produce_spread(broker.bootstrap, topic_name, PARTS, 20, "mixed")
    group = group_of(topic_name)
    ledger = Ledger(topic_name)
    ms = [Member("cf", "confluent", broker.bootstrap, topic_name, group, ledger,
                 {"partition.assignment.strategy": "roundrobin"}),
          Member("kp", "kafka-python", broker.bootstrap, topic_name, group, ledger)]
    try:
        for m in ms:
            m.start()
        assignment, _ = ledger.wait_stable(["cf", "kp"], PARTS, SETTLE_S)
        assert_balanced(assignment, PARTS)
        admin = confluent_admin(broker.bootstrap)
        desc = admin.describe_consumer_groups([group], request_timeout=OP_TIMEOUT_S)[group].result(
            timeout=OP_TIMEOUT_S)
        assert desc.partition_assignor == "roundrobin", (
            f"group protocol {desc.partition_assignor!r}; only roundrobin is supported by every member")
        ledger.wait_delivered(expected, CONSUME_S)
    finally:
        stop_all(ms)
    ledger.check_exactly_once(expected)
    ledger.check_no_overlap()


# ---------------------------------------------------------------------------
# committed offsets across a broker restart


def _commit_with_metadata(client: str, bootstrap: str, topic: str, group: str,
                          offsets: dict[int, int], metadata: dict[int, str]) -> None:
    """Join `group`, wait for all partitions, commit `offsets` with `metadata`, close."""
    if client == "confluent":
        c = confluent_consumer(bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                             "heartbeat.interval.ms": 250})
        try:
            c.subscribe([topic])
            wait_until(lambda: (c.consume(num_messages=100, timeout=0.2), len(c.assignment()))[1] == len(offsets),
                       SETTLE_S, interval=0, what="the committing consumer's assignment")
            res = c.commit(offsets=[TopicPartition(topic, p, o, metadata[p]) for p, o in offsets.items()],
                           asynchronous=False)
            assert all(tp.error is None for tp in res), [(tp.partition, tp.error) for tp in res]
            # offsets only: confluent-kafka's .metadata is unreliable (see groupkit.committed_offsets)
            got = c.committed([TopicPartition(topic, p) for p in offsets], timeout=OP_TIMEOUT_S)
            assert {tp.partition: tp.offset for tp in got} == offsets, [(tp.partition, tp.offset) for tp in got]
        finally:
            c.close()
    else:
        from kafka import KafkaConsumer
        from kafka import TopicPartition as KTP
        from kafka.structs import OffsetAndMetadata
        c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, client_id="kp-committer",
                          enable_auto_commit=False, auto_offset_reset="earliest",
                          heartbeat_interval_ms=250, request_timeout_ms=30000)
        try:
            c.subscribe([topic])
            wait_until(lambda: (c.poll(timeout_ms=200), len(c.assignment()))[1] == len(offsets),
                       SETTLE_S, interval=0, what="the committing consumer's assignment")
            c.commit({KTP(topic, p): OffsetAndMetadata(o, metadata[p], -1) for p, o in offsets.items()})
            for p, o in offsets.items():
                got = c.committed(KTP(topic, p), metadata=True)
                assert got is not None and (got.offset, got.metadata) == (o, metadata[p]), (p, got)
        finally:
            c.close(autocommit=False)


def _read_from_committed(client: str, bootstrap: str, topic: str, group: str, ends: dict[int, int]):
    """A new member of `group` reads up to `ends`. Returns (its offsets per partition,
    committed offsets and metadata as its client reports them before reading); the
    metadata is None where the client cannot be trusted with it (confluent)."""
    out: dict[int, list[int]] = {p: [] for p in ends}
    committed: dict[int, tuple[int, str | None]] = {}
    if client == "confluent":
        c = confluent_consumer(bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                             "heartbeat.interval.ms": 250})
        try:
            committed = {tp.partition: (tp.offset, None) for tp in
                         c.committed([TopicPartition(topic, p) for p in ends], timeout=OP_TIMEOUT_S)}
            c.subscribe([topic])
            deadline = time.monotonic() + CONSUME_S
            while any((out[p][-1] + 1 if out[p] else -1) < ends[p] for p in ends):
                assert time.monotonic() < deadline, f"resumed reader stuck at {out}"
                for m in c.consume(num_messages=500, timeout=0.2):
                    assert m.error() is None, m.error()
                    out[m.partition()].append(m.offset())
        finally:
            c.close()
    else:
        from kafka import KafkaConsumer
        from kafka import TopicPartition as KTP
        c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, client_id="kp-resumer",
                          enable_auto_commit=False, auto_offset_reset="earliest",
                          heartbeat_interval_ms=250, request_timeout_ms=30000)
        try:
            for p in ends:
                got = c.committed(KTP(topic, p), metadata=True)
                committed[p] = (got.offset, got.metadata) if got is not None else (None, None)
            c.subscribe([topic])
            deadline = time.monotonic() + CONSUME_S
            while any((out[p][-1] + 1 if out[p] else -1) < ends[p] for p in ends):
                assert time.monotonic() < deadline, f"resumed reader stuck at {out}"
                for tp, recs in c.poll(timeout_ms=200).items():
                    out[tp.partition].extend(r.offset for r in recs)
        finally:
            c.close(autocommit=False)
    return out, committed


@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", CLIENTS)
def test_committed_offsets_and_metadata_survive_a_restart(broker, topic_name, client):
    from kafka.admin import KafkaAdminClient

    create_topic(broker.bootstrap, topic_name, partitions=len(PARTS))
    produce_spread(broker.bootstrap, topic_name, PARTS, 10, "before")
    group = group_of(topic_name)
    want = {p: 2 + p for p in PARTS}                    # a different offset on each partition
    meta = {p: f"{client} p{p} \u2713 checkpoint" for p in PARTS}
    _commit_with_metadata(client, broker.bootstrap, topic_name, group, want, meta)

    def as_sent(stored: dict) -> dict:
        # confluent-kafka 2.16.1 sends a metadata string with its C terminator (strlen + 1
        # bytes); the broker keeps what was sent, so drop that one NUL before comparing.
        if client != "confluent":
            return stored
        return {p: (o, m[:-1] if m and m.endswith("\x00") else m) for p, (o, m) in stored.items()}

    assert as_sent(rk.committed(broker.bootstrap, group, topic_name, PARTS)) == \
        {p: (want[p], meta[p]) for p in PARTS}, "OffsetFetch before the restart"

    assert broker.stop() == 0, "broker did not exit 0 on SIGTERM"
    broker.start()

    # records produced after the restart come after the committed ones
    produce_spread(broker.bootstrap, topic_name, PARTS, 5, "after")
    read, committed = _read_from_committed(client, broker.bootstrap, topic_name, group, {p: 15 for p in PARTS})
    assert {p: o for p, (o, _) in committed.items()} == want, (
        f"committed offsets after the restart, as {client} sees them: {committed}")
    if client == "kafka-python":
        assert {p: m for p, (_, m) in committed.items()} == meta, (
            f"committed metadata after the restart, as kafka-python sees it: {committed}")
    for p in PARTS:
        assert read[p] == list(range(want[p], 15)), (
            f"partition {p}: resumed at {read[p][:3]}..., committed offset was {want[p]}")

    # OffsetFetch for the whole group, by the admin clients: the same offsets (and metadata)
    admin = confluent_admin(broker.bootstrap)
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                            request_timeout=OP_TIMEOUT_S)[group].result(timeout=OP_TIMEOUT_S)
    got = {tp.partition: tp.offset for tp in res.topic_partitions if tp.topic == topic_name}
    assert got == want, got
    kp_admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        offs = kp_admin.list_group_offsets({group: None})[group]
    finally:
        kp_admin.close()
    got = {tp.partition: (om.offset, om.metadata) for tp, om in offs.items() if tp.topic == topic_name}
    assert as_sent(got) == {p: (want[p], meta[p]) for p in PARTS}, got
    assert as_sent(rk.committed(broker.bootstrap, group, topic_name, PARTS)) == \
        {p: (want[p], meta[p]) for p in PARTS}, "OffsetFetch after the restart"


# ---------------------------------------------------------------------------
# how fast a group settles


@pytest.mark.timeout(60)
def test_group_of_three_settles_quickly(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=len(PARTS))
    produce_spread(broker.bootstrap, topic_name, PARTS, 5, "settle")
    ledger = Ledger(topic_name)
    conf = {"heartbeat.interval.ms": 100, "session.timeout.ms": 6000}
    ms = [Member(f"s{i}", "confluent", broker.bootstrap, topic_name, group_of(topic_name), ledger, conf)
          for i in range(3)]
    try:
        for m in ms:
            m.start()
        last_joined = max(m.started_at for m in ms)
        assignment, seen = ledger.wait_stable([m.name for m in ms], PARTS, SETTLE_S)
        settle = seen - last_joined
        print(f"a group of 3 confluent consumers settled {settle:.3f}s after the last member started")
        assert_balanced(assignment, PARTS)
        assert settle < 10, f"the group took {settle:.1f}s to settle"
    finally:
        stop_all(ms)
    ledger.check_no_overlap()


# ---------------------------------------------------------------------------
# bad input over raw requests


def _join(conn, group, topic, **kw):
    """JoinGroup v5 (KIP-394: the first answer is MEMBER_ID_REQUIRED with our id)."""
    r = conn.call(rk.join_group(group, protocols=[("range", rk.subscription([topic]))], **kw), 5)
    assert r.error_code == rk.MEMBER_ID_REQUIRED and r.member_id, (
        f"JoinGroup v5 without a member id: error {r.error_code}, member id {r.member_id!r}; "
        f"expected MEMBER_ID_REQUIRED (79) and an id")
    member = r.member_id
    r = conn.call(rk.join_group(group, member_id=member, protocols=[("range", rk.subscription([topic]))], **kw), 5)
    assert r.error_code == 0, f"JoinGroup with the assigned member id: error {r.error_code}"
    return member, r


def test_raw_group_requests_get_kafka_error_codes(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2)
    expected = produce_spread(broker.bootstrap, topic_name, [0, 1], 10, "raw")
    group = group_of(topic_name)
    with rk.RawConn(broker.bootstrap) as c:
        fc = c.call(rk.find_coordinator(group), 3)
        assert (fc.error_code, fc.node_id, fc.host, fc.port) == (0, 0, "127.0.0.1", broker.port), fc

        r = c.call(rk.join_group("", protocols=[("range", rk.subscription([topic_name]))]), 5)
        assert r.error_code == rk.INVALID_GROUP_ID, f"empty group id: error {r.error_code}, expected 24"
        for timeout_ms in (10, 1800001):
            r = c.call(rk.join_group(group, session_timeout_ms=timeout_ms,
                                     protocols=[("range", rk.subscription([topic_name]))]), 5)
            assert r.error_code == rk.INVALID_SESSION_TIMEOUT, (
                f"session timeout {timeout_ms} ms: error {r.error_code}, expected 26")

        sub = rk.subscription([topic_name])
        member, joined = _join(c, group, topic_name)
        gen = joined.generation_id
        assert gen >= 1 and joined.leader == member and joined.protocol_name == "range", joined
        assert [(m.member_id, m.metadata) for m in joined.members] == [(member, sub)], (
            "the leader's JoinGroup answer must carry each member's metadata unchanged")
        mine = rk.assignment(topic_name, [0, 1])
        s = c.call(rk.sync_group(group, gen, member, {member: mine}), 5)
        assert s.error_code == 0 and s.assignment == mine, s

        def still_works(what):
            h = c.call(rk.heartbeat(group, gen, member), 4)
            assert h.error_code == 0, f"after {what}: heartbeat of the real member got error {h.error_code}"

        h = c.call(rk.heartbeat(group, gen, "no-such-member"), 4)
        assert h.error_code == rk.UNKNOWN_MEMBER_ID, f"heartbeat, unknown member: {h.error_code}, expected 25"
        still_works("an unknown member's heartbeat")
        s = c.call(rk.sync_group(group, gen, "no-such-member"), 5)
        assert s.error_code == rk.UNKNOWN_MEMBER_ID, f"sync, unknown member: {s.error_code}, expected 25"
        still_works("an unknown member's sync")
        for bad_gen in (gen + 1, gen - 1):
            h = c.call(rk.heartbeat(group, bad_gen, member), 4)
            assert h.error_code == rk.ILLEGAL_GENERATION, (
                f"heartbeat, generation {bad_gen} (current {gen}): {h.error_code}, expected 22")
            s = c.call(rk.sync_group(group, bad_gen, member, {member: mine}), 5)
            assert s.error_code == rk.ILLEGAL_GENERATION, (
                f"sync, generation {bad_gen} (current {gen}): {s.error_code}, expected 22")
        still_works("wrong generations")

        for ptype, protocols in (("connect", [("range", sub)]), ("consumer", [("no-such-assignor", sub)])):
            r = c.call(rk.join_group(group, protocol_type=ptype, protocols=protocols), 5)
            assert r.error_code == rk.INCONSISTENT_GROUP_PROTOCOL, (
                f"JoinGroup of a {ptype!r} member offering {[n for n, _ in protocols]} into a "
                f"'consumer' group using range: error {r.error_code}, expected 23")
            still_works(f"an inconsistent {ptype} join")

        # OffsetCommit inside the group: a partition that does not exist, a topic that does not
        # exist, a stale generation and a stranger.
        r = c.call(rk.offset_commit(group, {(topic_name, 0): (4, "ok"), (topic_name, 7): (1, None),
                                            ("no-such-topic-" + topic_name, 0): (1, None)},
                                    generation=gen, member_id=member), 8)
        codes = {(t.name, p.partition_index): p.error_code for t in r.topics for p in t.partitions}
        assert codes == {(topic_name, 0): 0, (topic_name, 7): rk.UNKNOWN_TOPIC_OR_PARTITION,
                         ("no-such-topic-" + topic_name, 0): rk.UNKNOWN_TOPIC_OR_PARTITION}, codes
        r = c.call(rk.offset_commit(group, {(topic_name, 0): (5, None)}, generation=gen + 1, member_id=member), 8)
        assert r.topics[0].partitions[0].error_code == rk.ILLEGAL_GENERATION, r
        r = c.call(rk.offset_commit(group, {(topic_name, 0): (5, None)}, generation=gen,
                                    member_id="no-such-member"), 8)
        assert r.topics[0].partitions[0].error_code == rk.UNKNOWN_MEMBER_ID, r
        still_works("bad commits")

        lv = c.call(rk.leave_group(group, member), 3)
        assert lv.error_code == 0 and [m.error_code for m in lv.members] == [0], lv

        # the offsets committed above, with their metadata, through OffsetFetch v8
        f = c.call(rk.offset_fetch_groups({group: {topic_name: [0, 1]}}), 8)
        [g] = f.groups
        got = {p.partition_index: (p.committed_offset, p.metadata) for t in g.topics for p in t.partitions}
        assert g.error_code == 0 and got[0] == (4, "ok") and got[1][0] == -1, got

    # A well-behaved consumer then uses the group: it resumes at the committed offset 4 on
    # partition 0 and from the start of partition 1.
    ledger = Ledger(topic_name)
    m = Member("after", "confluent", broker.bootstrap, topic_name, group, ledger)
    try:
        m.start()
        want = {(p, o) for p, o in expected if p == 1 or o >= 4}
        ledger.wait_delivered(want, CONSUME_S)
    finally:
        stop_all([m])
    ledger.check_exactly_once(want)


def test_raw_join_group_asks_for_a_member_id_from_v4(broker, topic_name):
    """KIP-394: JoinGroup v4+ with no member id is answered MEMBER_ID_REQUIRED (79) with
    an id to join with; v2 and v3 join at once."""
    create_topic(broker.bootstrap, topic_name, partitions=1)
    sub = rk.subscription([topic_name])
    with rk.RawConn(broker.bootstrap) as c:
        for v in (2, 3, 4, 7, 9):
            group = group_of(topic_name, f"v{v}")
            r = c.call(rk.join_group(group, protocols=[("range", sub)]), v)
            if v >= 4:
                assert r.error_code == rk.MEMBER_ID_REQUIRED and r.member_id, (v, r)
                r = c.call(rk.join_group(group, member_id=r.member_id, protocols=[("range", sub)]), v)
            assert r.error_code == 0 and r.member_id and r.leader == r.member_id, (v, r)
            assert r.generation_id == 1 and r.protocol_name == "range", (v, r)
            s = c.call(rk.sync_group(group, r.generation_id, r.member_id,
                                     {r.member_id: rk.assignment(topic_name, [0])}), min(v, 5))
            assert s.error_code == 0, (v, s)
            lv = c.call(rk.leave_group(group, r.member_id), 3)
            assert lv.error_code == 0, (v, lv)


def test_raw_offsets_outside_a_group_and_batched_fetch(broker, topic_name):
    """Commits by a non-member (generation -1, as admin tools do) to a group with no
    members, OffsetFetch v8 for several groups at once, and OffsetDelete."""
    create_topic(broker.bootstrap, topic_name, partitions=2)
    g1, g2, g3 = (group_of(topic_name, s) for s in ("one", "two", "none"))
    with rk.RawConn(broker.bootstrap) as c:
        r = c.call(rk.offset_commit(g1, {(topic_name, 0): (5, "m0"), (topic_name, 1): (6, None),
                                         (topic_name, 2): (1, None)}), 8)
        codes = {p.partition_index: p.error_code for t in r.topics for p in t.partitions}
        assert codes == {0: 0, 1: 0, 2: rk.UNKNOWN_TOPIC_OR_PARTITION}, codes
        r = c.call(rk.offset_commit(g2, {(topic_name, 1): (9, "m-two")}), 8)
        assert r.topics[0].partitions[0].error_code == 0, r

        f = c.call(rk.offset_fetch_groups({g1: None, g2: {topic_name: [0, 1]}, g3: {topic_name: [0]}}), 8)
        assert f.error_code == 0, f
        by_group = {g.group_id: (g.error_code, {(t.name, p.partition_index): (p.committed_offset, p.metadata, p.error_code)
                                                for t in g.topics for p in t.partitions}) for g in f.groups}
        assert by_group[g1] == (0, {(topic_name, 0): (5, "m0", 0), (topic_name, 1): (6, None, 0)}) or \
            by_group[g1] == (0, {(topic_name, 0): (5, "m0", 0), (topic_name, 1): (6, "", 0)}), by_group[g1]
        assert by_group[g2][0] == 0 and by_group[g2][1][(topic_name, 1)][:2] == (9, "m-two"), by_group[g2]
        assert by_group[g2][1][(topic_name, 0)][0] == -1, by_group[g2]
        assert by_group[g3][0] == 0 and by_group[g3][1][(topic_name, 0)][0] == -1, by_group[g3]

        d = c.call(rk.offset_delete(g1, topic_name, [0]), 0)
        assert d.error_code == 0 and d.topics[0].partitions[0].error_code == 0, d
        f = c.call(rk.offset_fetch_groups({g1: {topic_name: [0, 1]}}), 8)
        got = {p.partition_index: p.committed_offset for t in f.groups[0].topics for p in t.partitions}
        assert got == {0: -1, 1: 6}, f"after OffsetDelete of partition 0: {got}"


def test_group_id_of_300_characters_works_end_to_end(broker, topic_name):
    """Kafka accepts any non-empty group id; a 300-character one works like any other."""
    create_topic(broker.bootstrap, topic_name, partitions=2)
    expected = produce_spread(broker.bootstrap, topic_name, [0, 1], 10, "long")
    group = ("long-group-" + topic_name + "-" + "x" * 300)[:300]
    assert len(group) == 300
    ledger = Ledger(topic_name)
    m = Member("long", "confluent", broker.bootstrap, topic_name, group, ledger)
    try:
        m.start()
        ledger.wait_delivered(expected, CONSUME_S)
        admin = confluent_admin(broker.bootstrap)
        listed = admin.list_consumer_groups(request_timeout=OP_TIMEOUT_S).result(timeout=OP_TIMEOUT_S)
        assert group in {g.group_id for g in listed.valid}, "the 300-character group is not listed"
        desc = admin.describe_consumer_groups([group], request_timeout=OP_TIMEOUT_S)[group].result(
            timeout=OP_TIMEOUT_S)
        assert desc.group_id == group and len(desc.members) == 1, desc
    finally:
        stop_all([m])
    ledger.check_exactly_once(expected)
    assert committed_offsets(broker.bootstrap, group, topic_name, [0, 1]) == {0: 10, 1: 10}


# ---------------------------------------------------------------------------
# admin APIs


def _fail_code(future) -> int | None:
    try:
        future.result(timeout=OP_TIMEOUT_S)
        return None
    except KafkaException as e:
        err = kafka_error_of(e)
        assert err is not None, repr(e)
        return err.code()


@pytest.mark.timeout(90)
def test_confluent_admin_lists_describes_and_deletes_groups(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=3)
    expected = produce_spread(broker.bootstrap, topic_name, [0, 1, 2], 10, "adm")
    active, simple = group_of(topic_name, "active"), group_of(topic_name, "simple")
    admin = confluent_admin(broker.bootstrap)

    # a "simple" group: offsets committed by a consumer that only assign()s
    c = confluent_consumer(broker.bootstrap, **{"group.id": simple})
    try:
        res = c.commit(offsets=[TopicPartition(topic_name, 0, 3)], asynchronous=False)
        assert all(tp.error is None for tp in res), res
    finally:
        c.close()

    ledger = Ledger(topic_name)
    ms = [Member(f"adm{i}", "confluent", broker.bootstrap, topic_name, active, ledger) for i in range(2)]
    try:
        for m in ms:
            m.start()
        assignment, _ = ledger.wait_stable(["adm0", "adm1"], [0, 1, 2], SETTLE_S)
        ledger.wait_delivered(expected, CONSUME_S)

        listed = admin.list_consumer_groups(request_timeout=OP_TIMEOUT_S).result(timeout=OP_TIMEOUT_S)
        assert not listed.errors, listed.errors
        by_id = {g.group_id: g for g in listed.valid}
        assert active in by_id and simple in by_id, sorted(by_id)
        assert by_id[active].state == ConsumerGroupState.STABLE, by_id[active]
        assert not by_id[active].is_simple_consumer_group, by_id[active]
        assert by_id[simple].state == ConsumerGroupState.EMPTY, by_id[simple]
        simple_listing = by_id[simple]  # checked last, see the end of the test
        stable_only = admin.list_consumer_groups(states={ConsumerGroupState.STABLE},
                                                 request_timeout=OP_TIMEOUT_S).result(timeout=OP_TIMEOUT_S)
        ids = {g.group_id for g in stable_only.valid}
        assert active in ids and simple not in ids, f"ListGroups filtered on Stable: {sorted(ids)}"

        desc = admin.describe_consumer_groups([active], request_timeout=OP_TIMEOUT_S)[active].result(
            timeout=OP_TIMEOUT_S)
        assert desc.state == ConsumerGroupState.STABLE and not desc.is_simple_consumer_group, desc
        assert desc.partition_assignor == "range", desc.partition_assignor
        assert desc.coordinator.id == 0, desc.coordinator
        described = {mb.client_id: {tp.partition for tp in mb.assignment.topic_partitions} for mb in desc.members}
        assert described == {k: set(v) for k, v in assignment.items()}, (
            f"DescribeGroups assignments {described} differ from what the members report {assignment}")
        assert all(mb.member_id and "127.0.0.1" in mb.host for mb in desc.members), desc.members

        offs = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(active)],
                                                 request_timeout=OP_TIMEOUT_S)[active].result(timeout=OP_TIMEOUT_S)
        assert {tp.partition: tp.offset for tp in offs.topic_partitions} == {0: 10, 1: 10, 2: 10}, offs
        offs = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(active, [TopicPartition(topic_name, 1)])],
            request_timeout=OP_TIMEOUT_S)[active].result(timeout=OP_TIMEOUT_S)
        assert [(tp.partition, tp.offset) for tp in offs.topic_partitions] == [(1, 10)], offs

        code = _fail_code(admin.delete_consumer_groups([active], request_timeout=OP_TIMEOUT_S)[active])
        assert code == KafkaError.NON_EMPTY_GROUP, f"deleting a group with members: {code}, expected 68"
    finally:
        stop_all(ms)
    ledger.check_exactly_once(expected)

    desc = admin.describe_consumer_groups([active], request_timeout=OP_TIMEOUT_S)[active].result(
        timeout=OP_TIMEOUT_S)
    assert desc.state == ConsumerGroupState.EMPTY and not desc.members, desc
    deleted = admin.delete_consumer_groups([active, simple], request_timeout=OP_TIMEOUT_S)
    assert (_fail_code(deleted[active]), _fail_code(deleted[simple])) == (None, None)
    listed = admin.list_consumer_groups(request_timeout=OP_TIMEOUT_S).result(timeout=OP_TIMEOUT_S)
    ids = {g.group_id for g in listed.valid}
    assert active not in ids and simple not in ids, f"deleted groups still listed: {sorted(ids)}"
    got = committed_offsets(broker.bootstrap, active, topic_name, [0, 1, 2])
    assert got == {0: -1001, 1: -1001, 2: -1001}, (
        f"a deleted group still has committed offsets: {got}")
    code = _fail_code(admin.delete_consumer_groups([active], request_timeout=OP_TIMEOUT_S)[active])
    assert code == KafkaError.GROUP_ID_NOT_FOUND, f"deleting a missing group: {code}, expected 69"

    # As in Kafka, a group that never had a member (only offsets committed from outside
    # it) has an empty protocol type, which is what makes librdkafka call it "simple".
    assert simple_listing.is_simple_consumer_group, (
        "ListGroups gave a protocol type to a group that only has committed offsets "
        "(Kafka lists it with protocol type \"\")")


@pytest.mark.timeout(90)
def test_kafka_python_admin_groups(broker, topic_name):
    from kafka import TopicPartition as KTP
    from kafka.admin import KafkaAdminClient

    create_topic(broker.bootstrap, topic_name, partitions=3)
    expected = produce_spread(broker.bootstrap, topic_name, [0, 1, 2], 10, "kpadm")
    group = group_of(topic_name)
    ledger = Ledger(topic_name)
    m = Member("kpadm", "kafka-python", broker.bootstrap, topic_name, group, ledger)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="sediment-it-kp-admin",
                             request_timeout_ms=15000)
    try:
        m.start()
        ledger.wait_stable(["kpadm"], [0, 1, 2], SETTLE_S)
        ledger.wait_delivered(expected, CONSUME_S)

        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert group in listed and listed[group]["protocol_type"] == "consumer", listed.get(group)

        desc = admin.describe_groups([group])[group]
        assert desc["error"] is None, desc
        assert desc["group_state"] == "Stable" and desc["protocol_type"] == "consumer", desc
        assert desc["protocol_data"] in ("range", "roundrobin"), desc["protocol_data"]
        [member] = desc["members"]
        assert member["client_id"] == "kpadm", member
        assignment = member["member_assignment"]
        parts = assignment.partitions() if hasattr(assignment, "partitions") else [
            KTP(t["topic"], p) for t in assignment["assigned_partitions"] for p in t["partitions"]]
        assert sorted((tp.topic, tp.partition) for tp in parts) == [(topic_name, p) for p in (0, 1, 2)], parts

        offsets = admin.list_group_offsets({group: None})[group]
        assert {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic_name} == \
            {0: 10, 1: 10, 2: 10}, offsets

        assert admin.delete_groups([group]) == {group: "NonEmptyGroupError"}
    finally:
        stop_all([m])
    try:
        desc = admin.describe_groups([group])[group]
        assert desc["group_state"] == "Empty" and not desc["members"], desc
        assert admin.delete_groups([group]) == {group: "OK"}
        assert group not in {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()
    ledger.check_exactly_once(expected)


# ---------------------------------------------------------------------------
# the sediment CLI

COLUMNS = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "MEMBER-ID", "CLIENT-ID"]


def cli(bootstrap: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(sediment_binary()), "groups", *args, "-b", bootstrap]
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"`{' '.join(cmd[1:])}` did not finish in 30s\n{e.stdout}\n{e.stderr}") from None
    if check and cp.returncode != 0:
        raise AssertionError(f"`{' '.join(cmd[1:])}` exited {cp.returncode}\nstdout:\n{cp.stdout}\n"
                             f"stderr:\n{cp.stderr}")
    return cp


def describe_rows(bootstrap: str, group: str, topic: str) -> tuple[dict[int, dict[str, str]], str]:
    """Parse `sediment groups describe`: {partition: {column: value}} and the whole output."""
    out = cli(bootstrap, "describe", group).stdout
    lines = out.splitlines()
    header = next((i for i, line in enumerate(lines) if line.split()[:len(COLUMNS)] == COLUMNS), None)
    assert header is not None, f"no header {' '.join(COLUMNS)} in:\n{out}"
    rows = {}
    for line in lines[header + 1:]:
        cells = line.split()
        if len(cells) >= 6 and cells[0] == group and cells[1] == topic:
            cells += ["-"] * (len(COLUMNS) - len(cells))
            rows[int(cells[2])] = dict(zip(COLUMNS, cells))
    return rows, out


def offsets_in(rows) -> dict[int, tuple[int, int, int]]:
    """{partition: (current, log end, lag)}; '-' (nothing committed) reads as -1."""
    def num(s):
        return -1 if s == "-" else int(s)
    return {p: (num(r["CURRENT-OFFSET"]), num(r["LOG-END-OFFSET"]), num(r["LAG"])) for p, r in rows.items()}


def read_group_once(bootstrap: str, topic: str, group: str, want: set[tuple[int, int]]) -> None:
    """A new member of `group` reads exactly `want` (and commits it)."""
    ledger = Ledger(topic)
    m = Member("cli-reader", "confluent", bootstrap, topic, group, ledger)
    try:
        m.start()
        ledger.wait_delivered(want, CONSUME_S)
        time.sleep(0.5)  # anything before `want` would have come first; give extras a moment
    finally:
        stop_all([m])
    ledger.check_exactly_once(want)


@pytest.mark.timeout(120)
def test_cli_groups_list_describe_reset_and_delete(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=3)
    sizes = {0: 10, 1: 20, 2: 30}
    for p, n in sizes.items():
        produce_spread(broker.bootstrap, topic_name, [p], n, f"cli{p}")
    group = group_of(topic_name, "cli")
    committed = {0: 4, 1: 20, 2: 7}

    c = confluent_consumer(broker.bootstrap, **{"group.id": group, "client.id": "cli-member",
                                               "auto.offset.reset": "earliest", "heartbeat.interval.ms": 250})
    try:
        c.subscribe([topic_name])
        wait_until(lambda: (c.consume(num_messages=1, timeout=0.2), len(c.assignment()))[1] == 3,
                   SETTLE_S, interval=0, what="the consumer's assignment")
        res = c.commit(offsets=[TopicPartition(topic_name, p, o) for p, o in committed.items()],
                       asynchronous=False)
        assert all(tp.error is None for tp in res), res
        member_id = c.memberid()

        assert group in cli(broker.bootstrap, "list").stdout.split(), "group missing from `groups list`"
        rows, out = describe_rows(broker.bootstrap, group, topic_name)
        assert offsets_in(rows) == {p: (committed[p], sizes[p], sizes[p] - committed[p]) for p in sizes}, out
        assert all(r["MEMBER-ID"] == member_id and r["CLIENT-ID"] == "cli-member" for r in rows.values()), out
        assert re.search(r"\bstable\b", out, re.I), f"group state Stable not shown:\n{out}"

        # refused while the group has an active member; nothing changes
        for args in (["--to-earliest"], ["--to-latest"], ["--to-offset", "1"]):
            cp = cli(broker.bootstrap, "reset-offsets", group, "--topic", topic_name, *args, check=False)
            assert cp.returncode != 0, f"reset-offsets {args} succeeded on a group with an active member"
            assert re.search(r"member|active|empty", cp.stdout + cp.stderr, re.I), (
                f"reset-offsets refused without saying why:\n{cp.stdout}\n{cp.stderr}")
        cp = cli(broker.bootstrap, "delete", group, check=False)
        assert cp.returncode != 0, "deleting a group with an active member succeeded"
        rows, out = describe_rows(broker.bootstrap, group, topic_name)
        assert {p: v[0] for p, v in offsets_in(rows).items()} == committed, out
    finally:
        c.close()

    rows, out = describe_rows(broker.bootstrap, group, topic_name)
    assert offsets_in(rows) == {p: (committed[p], sizes[p], sizes[p] - committed[p]) for p in sizes}, out
    assert all(r["MEMBER-ID"] in ("-", "") for r in rows.values()), f"a member shown after close():\n{out}"
    assert re.search(r"\bempty\b", out, re.I), f"group state Empty not shown:\n{out}"

    cli(broker.bootstrap, "reset-offsets", group, "--topic", topic_name, "--to-earliest")
    rows, out = describe_rows(broker.bootstrap, group, topic_name)
    assert offsets_in(rows) == {p: (0, sizes[p], sizes[p]) for p in sizes}, out
    read_group_once(broker.bootstrap, topic_name, group, {(p, o) for p in sizes for o in range(sizes[p])})

    cli(broker.bootstrap, "reset-offsets", group, "--topic", topic_name, "--to-offset", "5")
    rows, out = describe_rows(broker.bootstrap, group, topic_name)
    assert offsets_in(rows) == {p: (5, sizes[p], sizes[p] - 5) for p in sizes}, out
    read_group_once(broker.bootstrap, topic_name, group, {(p, o) for p in sizes for o in range(5, sizes[p])})

    cli(broker.bootstrap, "reset-offsets", group, "--topic", topic_name, "--to-offset", "2")
    cli(broker.bootstrap, "reset-offsets", group, "--topic", topic_name, "--to-latest")
    rows, out = describe_rows(broker.bootstrap, group, topic_name)
    assert offsets_in(rows) == {p: (sizes[p], sizes[p], 0) for p in sizes}, out
    produce_spread(broker.bootstrap, topic_name, [0, 1, 2], 1, "new")
    read_group_once(broker.bootstrap, topic_name, group, {(p, sizes[p]) for p in sizes})

    cli(broker.bootstrap, "delete", group)
    assert group not in cli(broker.bootstrap, "list").stdout.split(), "deleted group still listed"
