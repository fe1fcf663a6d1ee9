"""Cluster mode: three real brokers on one real etcd (clusterkit), real clients, real faults.

What is checked against what clients were told: every record a producer got an
acknowledgement for is read back, exactly once, at the offset it was acknowledged with.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import NewTopic

import rawkafka
from clusterkit import cluster_factory  # noqa: F401  (fixture)
from kafkautil import (assert_dense, confluent_admin, confluent_consumer, confluent_producer,
                       read_confluent, wait_until)


def create(cluster, topic: str, partitions: int = 1, rf: int = 3, config: dict | None = None,
           via=None) -> None:
    via = via or cluster.brokers[1]
    admin = confluent_admin(via.bootstrap)
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=rf,
                                        config=config or {})], request_timeout=15)
    fut[topic].result(timeout=20)


def produce_acked(bootstrap: str, topic: str, values: list[bytes], **conf) -> dict[bytes, tuple[int, int]]:
    """Produce `values` (also used as keys); {value: (partition, offset)} of those acknowledged."""
    acked: dict[bytes, tuple[int, int]] = {}
    errors: list = []

    def cb(err, msg):
        if err is None:
            acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            errors.append(err)

    p = confluent_producer(bootstrap, **conf)
    for v in values:
        while True:
            try:
                p.produce(topic, key=v, value=v, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    p.flush(60)
    return acked


class BackgroundProducer:
    """An idempotent acks=all producer (confluent-kafka) sending records `<prefix><n>` every
    few ms on a thread until stopped; `acked` maps each acknowledged value to (partition,
    offset), `failed` holds every delivery error."""

    def __init__(self, bootstrap: str, topic: str, prefix: str):
        import threading
        self.acked: dict[bytes, tuple[int, int]] = {}
        self.failed: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(bootstrap, topic, prefix))
        self._thread.start()

    def _cb(self, err, msg):
        if err is None:
            self.acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            self.failed.append(err)

    def _run(self, bootstrap, topic, prefix):
        p = confluent_producer(bootstrap, **{"enable.idempotence": True, "linger.ms": 5})
        i = 0
        while not self._stop.is_set():
            p.produce(topic, key=str(i % 7).encode(), value=f"{prefix}{i:06d}".encode(),
                      on_delivery=self._cb)
            p.poll(0)
            i += 1
            time.sleep(0.003)
        p.flush(60)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(90)


def read_exactly_once(bootstrap: str, topic: str, partitions) -> dict[bytes, tuple[int, int]]:
    """Every record of the topic, as {value: (partition, offset)}; fails on a value read twice."""
    read = read_confluent(bootstrap, topic, partitions, timeout=60)
    assert_dense(read)
    got = {}
    for recs in read.values():
        for r in recs:
            assert r.value not in got, f"{r.value!r} read twice"
            got[r.value] = (r.partition, r.offset)
    return got


def test_topic_created_through_one_broker_is_placed_and_served_by_every_broker(cluster_factory, new_topic):
    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=3, rf=3, via=c.brokers[2])
    # Visible through every broker within a second or so (watch-fed).
    for b in c.brokers.values():
        wait_until(lambda b=b: topic in c.metadata(b).topics, 5, what=f"{topic} at {b.name}")
    md = c.metadata(c.brokers[3], topic)
    parts = md.topics[topic].partitions
    assert len(md.brokers) == 3
    leaders = set()
    for p in parts.values():
        assert sorted(p.replicas) == [1, 2, 3], p.replicas
        assert sorted(p.isrs) == [1, 2, 3], p.isrs
        leaders.add(p.leader)
    assert leaders == {1, 2, 3}, f"leaders not spread over the brokers: {leaders}"

    values = [f"v{i}".encode() for i in range(300)]
    acked = produce_acked(c.brokers[1].bootstrap, topic, values)
    assert len(acked) == len(values)
    got = read_confluent(c.brokers[3].bootstrap, topic, range(3))
    assert_dense(got)
    read = {r.value: (r.partition, r.offset) for recs in got.values() for r in recs}
    assert read == acked

    def lags(b):
        return [line for line in b.metrics().splitlines()
                if line.startswith("sediment_replica_lag_offsets{")]
    # Every leader reports its two followers, caught up.
    for b in c.brokers.values():
        wait_until(lambda b=b: len(lags(b)) == 2 and all(line.endswith(" 0") for line in lags(b)), 10,
                   what=f"{b.name}'s followers caught up in replica_lag_offsets")
        assert "sediment_under_replicated_partitions 0\n" in b.metrics()


def broker_configs(bootstrap: str, broker_id: int) -> dict:
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(ConfigResource.Type.BROKER, str(broker_id))
    admin = confluent_admin(bootstrap)
    return admin.describe_configs([res])[res].result(timeout=30)


def test_broker_configs_name_the_rack_and_the_default_replication_factor(cluster_factory):
    """DescribeConfigs of a broker says its broker.rack and the replication factor topics get
    by default (librdkafka's 0101 checks broker.rack against what it set)."""
    c = cluster_factory(2, extra_args=["--rack", "rack-a"])
    got = broker_configs(c.brokers[1].bootstrap, 1)
    assert got["broker.rack"].value == "rack-a"
    assert got["default.replication.factor"].value == "2", "min(3, live brokers)"
    c2 = cluster_factory(1, extra_args=["--default-replication-factor", "1"])
    got = broker_configs(c2.brokers[1].bootstrap, 1)
    assert got["broker.rack"].value is None, "no rack set: no value, as Kafka lists it"
    assert got["default.replication.factor"].value == "1"


def test_a_broker_that_does_not_lead_refuses_produce_and_fetch(cluster_factory, new_topic):
    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=1, rf=3)
    leader = c.wait_leader(topic)
    follower = next(b for i, b in c.brokers.items() if i != leader)
    with rawkafka.RawConn(follower.bootstrap) as conn:
        batch = rawkafka.idempotent_batch(-1, -1, -1, [b"x"])
        code, _ = rawkafka.produce_result(conn.call(rawkafka.produce(topic, 0, batch), 7))
        assert code == KafkaError.NOT_LEADER_FOR_PARTITION, code
    with rawkafka.RawConn(c.brokers[leader].bootstrap) as conn:
        code, off = rawkafka.produce_result(conn.call(rawkafka.produce(topic, 0, batch), 7))
        assert code == 0 and off == 0


def test_acks_all_needs_min_insync_replicas(cluster_factory, new_topic):
    c = cluster_factory(3, extra_args=["--replica-lag-time-max-ms", "2000"])
    topic = new_topic()
    create(c, topic, partitions=1, rf=3)
    leader = c.wait_leader(topic)
    acked = produce_acked(c.bootstrap, topic, [b"a", b"b"])
    assert len(acked) == 2
    # Two of three down: the ISR shrinks to the leader alone, below min.insync.replicas=2
    # (the default for three replicas).
    others = [i for i in c.brokers if i != leader]
    for i in others:
        c.brokers[i].kill9()
    c.wait_isr(topic, 0, {leader})
    wait_until(lambda: "sediment_under_replicated_partitions 1\n" in c.brokers[leader].metrics(), 5,
               what="the leader's under-replicated gauge to count the partition")
    errors = []
    p = confluent_producer(c.brokers[leader].bootstrap, **{"message.timeout.ms": 5000, "retries": 0})
    p.produce(topic, value=b"refused", on_delivery=lambda e, m: errors.append(e))
    p.flush(15)
    assert errors and errors[0] is not None, "acks=all with one in-sync replica was acknowledged"
    assert errors[0].code() == KafkaError.NOT_ENOUGH_REPLICAS, errors[0]
    # acks=1 is still served, and nothing acknowledged went.
    got = produce_acked(c.brokers[leader].bootstrap, topic, [b"c"], acks=1)
    assert len(got) == 1
    read = read_confluent(c.brokers[leader].bootstrap, topic, [0])[0]
    assert [r.value for r in read] == [b"a", b"b", b"c"]


def test_acknowledged_records_survive_ten_leader_kills(cluster_factory, new_topic):
    """An idempotent acks=all producer while the leader is SIGKILLed ten times (each restarted):
    every acknowledged record is read exactly once at its acknowledged offset, offsets dense,
    order kept."""
    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=1, rf=3)
    acked: dict[bytes, int] = {}
    failed: list = []

    def cb(err, msg):
        if err is None:
            acked[msg.value()] = msg.offset()
        else:
            failed.append((msg.value(), err))

    p = confluent_producer(c.bootstrap, **{"enable.idempotence": True, "linger.ms": 2,
                                           "message.timeout.ms": 60000})
    n = 0

    def send(count):
        nonlocal n
        for _ in range(count):
            v = f"r{n:06d}".encode()
            n += 1
            p.produce(topic, value=v, on_delivery=cb)
            p.poll(0)
            time.sleep(0.002)

    for round_ in range(10):
        # Each kill starts from a full ISR, so another replica can always take over.
        c.wait_isr(topic, 0, {1, 2, 3})
        send(100)
        leader = c.wait_leader(topic)
        c.brokers[leader].kill9()
        send(100)  # while there is no leader: queued, retried by the producer
        c.wait_leader(topic, not_broker=leader, timeout=30)
        c.brokers[leader].start()
    send(100)
    assert p.flush(90) == 0, "records still unacknowledged after 90 s"
    assert not failed, f"{len(failed)} records failed, first: {failed[:3]}"
    assert len(acked) == n
    read = read_confluent(c.bootstrap_of_running(), topic, [0], timeout=60)[0]
    assert_dense({0: read})
    offsets = [r.offset for r in read]
    assert len(offsets) == len(set(offsets))
    by_value = {}
    for r in read:
        assert r.value not in by_value, f"{r.value!r} read twice (offsets {by_value[r.value]}, {r.offset})"
        by_value[r.value] = r.offset
    assert by_value == acked, "what was read differs from what was acknowledged"
    # Producer order kept: values were sent in increasing order.
    assert [r.value for r in read] == sorted(acked)


def test_a_returning_leader_truncates_what_it_never_replicated(cluster_factory, new_topic):
    """The old leader appends a record (acks=1) its followers never get, dies; on its return
    it truncates that record, and every replica ends with the same log."""
    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=1, rf=3)
    acked = produce_acked(c.bootstrap, topic, [b"a", b"b"])
    assert len(acked) == 2
    old = c.wait_leader(topic)
    followers = [i for i in c.brokers if i != old]
    for i in followers:
        c.pause(i)
    # A fetch the followers had parked at the leader is answered (empty) within its 500 ms
    # wait; after that none is outstanding, so what the leader appends now reaches nobody.
    time.sleep(1.0)
    try:
        lost = produce_acked(c.brokers[old].bootstrap, topic, [b"lost"], acks=1)
        assert lost == {b"lost": (0, 2)}, lost
    finally:
        c.brokers[old].kill9()
        for i in followers:
            c.resume(i)
    new = c.wait_leader(topic, not_broker=old, timeout=30)
    more = produce_acked(c.brokers[new].bootstrap, topic, [b"c", b"d"])
    assert more == {b"c": (0, 2), b"d": (0, 3)}, more
    c.brokers[old].start()
    c.wait_isr(topic, 0, {1, 2, 3})
    # Leave only the returned broker: it leads now, and must serve the new leader's log.
    for i in followers:
        c.brokers[i].kill9()
    c.wait_leader(topic, not_broker=new, timeout=30)
    assert c.wait_leader(topic) == old
    read = read_confluent(c.brokers[old].bootstrap, topic, [0])[0]
    assert [(r.offset, r.value) for r in read] == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]


def test_a_consumer_group_has_one_coordinator_and_commits_survive_restarts(cluster_factory, new_topic):
    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=3, rf=3)
    values = [f"g{i}".encode() for i in range(90)]
    assert len(produce_acked(c.bootstrap, topic, values)) == 90
    group = f"grp-{topic}"
    with rawkafka.RawConn(c.brokers[1].bootstrap) as conn:
        coordinators = set()
        for b in c.brokers.values():
            with rawkafka.RawConn(b.bootstrap) as cb:
                r = cb.call(rawkafka.find_coordinator(group), 2)
                assert r.error_code == 0
                coordinators.add(r.node_id)
        assert len(coordinators) == 1, f"brokers disagree on the coordinator: {coordinators}"
    cons = confluent_consumer(c.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                             "enable.auto.commit": False,
                                             "enable.auto.offset.store": True})
    cons.subscribe([topic])
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < 90 and time.monotonic() < deadline:
        for m in cons.consume(100, timeout=0.5):
            assert m.error() is None, m.error()
            seen.append(m.value())
    cons.commit(asynchronous=False)
    cons.close()
    assert sorted(seen) == sorted(values)
    for b in c.brokers.values():
        assert b.stop() == 0
    for b in c.brokers.values():
        b.start()
    c.wait_brokers(3)
    cons = confluent_consumer(c.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest"})
    tps = [TopicPartition(topic, p) for p in range(3)]
    committed = wait_until(lambda: _committed(cons, tps), 30, what="committed offsets")
    cons.close()
    assert sum(committed) == 90, committed


def _committed(cons, tps):
    try:
        got = cons.committed(tps, timeout=5)
    except Exception:  # noqa: BLE001 (coordinator moving after the restart)
        return None
    offs = [t.offset for t in got]
    return offs if all(o >= 0 for o in offs) else None


def test_a_paused_leader_acknowledges_nothing_and_rejoins_as_follower(cluster_factory, new_topic):
    """SIGSTOP the leader past its session: another replica leads; a Produce sent straight to
    the paused one is refused or times out, its record is never readable, and once resumed it
    follows the new leader and is back in the ISR."""
    import threading
    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=1, rf=3)
    assert len(produce_acked(c.bootstrap, topic, [b"a", b"b"])) == 2
    old = c.wait_leader(topic)
    conn = rawkafka.RawConn(c.brokers[old].bootstrap, timeout=40)
    c.pause(old)
    outcome = {}
    try:
        new = c.wait_leader(topic, not_broker=old, timeout=30)

        def send():
            batch = rawkafka.idempotent_batch(-1, -1, -1, [b"ghost"])
            try:
                outcome["result"] = rawkafka.produce_result(conn.call(rawkafka.produce(topic, 0, batch), 7))
            except Exception as e:  # noqa: BLE001 (a timeout or a closed connection is a refusal)
                outcome["error"] = e

        t = threading.Thread(target=send)
        t.start()
        time.sleep(0.5)
    finally:
        c.resume(old)
    t.join(45)
    conn.close()
    assert "error" in outcome or outcome["result"][0] != 0, f"the deposed leader acknowledged: {outcome}"
    assert len(produce_acked(c.brokers[new].bootstrap, topic, [b"c"])) == 1
    c.wait_isr(topic, 0, {1, 2, 3})
    read = read_confluent(c.bootstrap, topic, [0])[0]
    assert [r.value for r in read] == [b"a", b"b", b"c"]
    log = c.brokers[old].log_tail(400)
    assert "registered again" in log, "the paused broker did not register anew after losing its lease"


def test_a_wiped_broker_rejoins_and_nothing_is_lost(cluster_factory, new_topic):
    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=1, rf=3)
    values = [f"w{i}".encode() for i in range(200)]
    acked = produce_acked(c.bootstrap, topic, values)
    assert len(acked) == 200
    leader = c.wait_leader(topic)
    victim = next(i for i in c.brokers if i != leader)
    c.brokers[victim].kill9()
    shutil.rmtree(c.brokers[victim].data_dir)
    c.brokers[victim].data_dir.mkdir()
    more = produce_acked(c.bootstrap_of_running(), topic, [f"x{i}".encode() for i in range(50)])
    assert len(more) == 50
    acked.update(more)
    c.brokers[victim].start()
    c.wait_isr(topic, 0, {1, 2, 3})
    # Only the wiped broker left: it must lead, and serve everything acknowledged.
    for i in c.brokers:
        if i != victim:
            c.brokers[i].kill9()
    assert c.wait_leader(topic, timeout=30) == victim
    read = read_confluent(c.brokers[victim].bootstrap, topic, [0])[0]
    assert {r.value: (r.partition, r.offset) for r in read} == acked


def test_a_rolling_restart_gives_clients_only_retriable_errors(cluster_factory, new_topic):
    """SIGTERM every broker in turn (each restarted) under an idempotent acks=all producer:
    no record fails, every acknowledged one is read exactly once."""
    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=3, rf=3)
    producer = BackgroundProducer(c.bootstrap, topic, "rr")
    try:
        for b in c.brokers.values():
            for p in range(3):
                c.wait_isr(topic, p, {1, 2, 3})
            time.sleep(1)
            assert b.stop() == 0
            b.start()
        time.sleep(1)
    finally:
        producer.stop()
    assert not producer.failed, f"{len(producer.failed)} records failed: {producer.failed[:3]}"
    assert producer.acked, "nothing was acknowledged"
    assert read_exactly_once(c.bootstrap, topic, range(3)) == producer.acked

def test_every_client_produces_and_consumes_through_any_broker(cluster_factory, new_topic):
    """kcat, kafka-python and kafkajs, each bootstrapped from a different broker, on a topic
    created through yet another."""
    import json
    import subprocess
    from kafkautil import kp_consumer, kp_producer
    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=2, rf=3, via=c.brokers[3])
    # kcat through broker 1.
    lines = "\n".join(f"k{i}:kcat{i}" for i in range(20)) + "\n"
    cp = subprocess.run(["kcat", "-b", c.brokers[1].bootstrap, "-P", "-t", topic, "-K:",
                         "-X", "acks=all"], input=lines.encode(), capture_output=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    # kafka-python through broker 2.
    p = kp_producer(c.brokers[2].bootstrap)
    futs = [p.send(topic, key=f"k{i}".encode(), value=f"kp{i}".encode()) for i in range(20)]
    p.flush(30)
    assert all(f.get(timeout=30) for f in futs)
    p.close()
    # kafkajs (its idempotent producer script) through broker 3.
    js_dir = Path(__file__).parent / "js"
    cp = subprocess.run(["node", str(js_dir / "produce.js"), c.brokers[3].bootstrap, topic, "20", "2"],
                        cwd=js_dir, capture_output=True, timeout=90)
    assert cp.returncode == 0, cp.stderr.decode()[-2000:]
    # Everything, read back with kcat through broker 2 and kafka-python through broker 3.
    cp = subprocess.run(["kcat", "-b", c.brokers[2].bootstrap, "-C", "-t", topic, "-e", "-q",
                         "-f", "%s\n"], capture_output=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    values = sorted(cp.stdout.decode().split())
    want = sorted([f"kcat{i}" for i in range(20)] + [f"kp{i}" for i in range(20)]
                  + [f"kjs-{i:05d}" for i in range(20)])
    assert values == want
    cons = kp_consumer(c.brokers[3].bootstrap, auto_offset_reset="earliest",
                       group_id=f"kp-{topic}", consumer_timeout_ms=8000)
    cons.subscribe([topic])
    seen = sorted(m.value.decode() for m in cons)
    cons.close()
    assert seen == want, json.dumps(seen[:10])


def test_leader_epochs_fence_stale_requests_and_answer_offset_for_leader_epoch(cluster_factory, new_topic):
    """KIP-320 and KIP-101 after a failover: a Fetch or ListOffsets naming the old leader
    epoch gets FENCED_LEADER_EPOCH, a future one UNKNOWN_LEADER_EPOCH; OffsetForLeaderEpoch
    answers where each epoch ends; a follower answers NOT_LEADER_OR_FOLLOWER."""
    from kafka.protocol.consumer import FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest
    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=1, rf=3)
    assert len(produce_acked(c.bootstrap, topic, [b"a", b"b"])) == 2
    old = c.wait_leader(topic)
    c.brokers[old].kill9()
    new = c.wait_leader(topic, not_broker=old, timeout=30)
    assert produce_acked(c.brokers[new].bootstrap, topic, [b"c"]) == {b"c": (0, 2)}
    # One election since the topic was created at epoch 0: the leader epoch is 1 now.
    F = FetchRequest.FetchTopic
    L = ListOffsetsRequest.ListOffsetsTopic
    O = OffsetForLeaderEpochRequest.OffsetForLeaderTopic

    def fetch(conn, current):
        req = FetchRequest(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20,
                           isolation_level=0, session_id=0, session_epoch=-1,
                           topics=[F(topic=topic, partitions=[F.FetchPartition(
                               partition=0, current_leader_epoch=current, fetch_offset=0,
                               log_start_offset=-1, partition_max_bytes=1 << 20)])],
                           forgotten_topics_data=[], rack_id="")
        return conn.call(req, 12).responses[0].partitions[0].error_code

    def list_offsets(conn, current):
        req = ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[L(
            name=topic, partitions=[L.ListOffsetsPartition(
                partition_index=0, current_leader_epoch=current, timestamp=-1)])])
        return conn.call(req, 4).topics[0].partitions[0].error_code

    def epoch_end(conn, current, leader_epoch):
        req = OffsetForLeaderEpochRequest(replica_id=-1, topics=[O(topic=topic, partitions=[
            O.OffsetForLeaderPartition(partition=0, current_leader_epoch=current,
                                       leader_epoch=leader_epoch)])])
        p = conn.call(req, 3).topics[0].partitions[0]
        return p.error_code, p.leader_epoch, p.end_offset

    FENCED, UNKNOWN, NOT_LEADER = 74, 75, 6
    with rawkafka.RawConn(c.brokers[new].bootstrap) as conn:
        assert fetch(conn, 1) == 0
        assert fetch(conn, -1) == 0
        assert fetch(conn, 0) == FENCED
        assert fetch(conn, 2) == UNKNOWN
        assert list_offsets(conn, 1) == 0
        assert list_offsets(conn, 0) == FENCED
        assert list_offsets(conn, 7) == UNKNOWN
        assert epoch_end(conn, 1, 0) == (0, 0, 2), "epoch 0 ends where epoch 1 began"
        assert epoch_end(conn, 1, 1) == (0, 1, 3), "the current epoch ends at the log end"
        assert epoch_end(conn, 0, 0)[0] == FENCED
    follower = next(b for i, b in c.brokers.items() if i not in (old, new))
    with rawkafka.RawConn(follower.bootstrap) as conn:
        assert fetch(conn, 1) == NOT_LEADER
        assert list_offsets(conn, 1) == NOT_LEADER
        assert epoch_end(conn, 1, 0)[0] == NOT_LEADER


def test_the_cluster_keeps_serving_when_an_etcd_member_dies(cluster_factory, new_topic):
    """Three etcd members; one is SIGKILLed under load: produce goes on, nothing acknowledged
    is lost, and metadata changes (a new topic) still work through the remaining quorum."""
    c = cluster_factory(3, etcd_members=3)
    topic = new_topic()
    create(c, topic, partitions=2, rf=3)
    producer = BackgroundProducer(c.bootstrap, topic, "e")
    try:
        time.sleep(2)
        c.etcd.members[0].kill9()
        time.sleep(8)  # longer than a broker session: leases are renewed through the others
        other = new_topic("after")
        create(c, other, partitions=1, rf=3, via=c.brokers[2])
        for b in c.brokers.values():
            wait_until(lambda b=b: other in c.metadata(b).topics, 10, what=f"{other} at {b.name}")
    finally:
        producer.stop()
    assert not producer.failed, f"{len(producer.failed)} records failed: {producer.failed[:3]}"
    assert all(b.is_running() for b in c.brokers.values())
    assert len(c.metadata().brokers) == 3, "a broker lost its registration"
    assert read_exactly_once(c.bootstrap, topic, range(2)) == producer.acked


def test_unclean_election_only_where_the_topic_allows_it(cluster_factory, new_topic):
    """Two replicas; the follower is paused out of the ISR, then the leader dies: with
    unclean.leader.election.enable=true the follower takes over (losing what it lacked), with
    the default the partition stays offline."""
    c = cluster_factory(3)
    clean, unclean = new_topic("clean"), new_topic("unclean")
    for t, conf in ((clean, {}), (unclean, {"unclean.leader.election.enable": "true"})):
        admin = confluent_admin(c.brokers[1].bootstrap)
        fut = admin.create_topics([NewTopic(t, num_partitions=1, replica_assignment=[[1, 2]], config=conf)],
                                  request_timeout=15)
        fut[t].result(timeout=20)
        assert len(produce_acked(c.bootstrap, t, [b"a"])) == 1
    c.pause(2)
    try:
        c.wait_isr(clean, 0, {1})
        c.wait_isr(unclean, 0, {1})
    finally:
        c.brokers[1].kill9()
        c.resume(2)
    assert c.wait_leader(unclean, timeout=30) == 2
    time.sleep(4)  # the session timeout and more: nobody may take the clean topic
    leader, _, isr = c.partition(clean, 0)
    assert leader == -1, f"{clean} got leader {leader} (isr {isr}) without unclean election"


def test_a_group_survives_its_coordinator_being_killed(cluster_factory, new_topic):
    """Three members of one group consume while the group's coordinator is SIGKILLed: another
    broker takes the group over, the members rejoin, every record is consumed, and what was
    committed before the kill is still committed."""
    import threading
    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=3, rf=3)
    values = [f"c{i:05d}".encode() for i in range(600)]
    assert len(produce_acked(c.bootstrap, topic, values)) == len(values)
    group = f"grp-{topic}"
    with rawkafka.RawConn(c.brokers[1].bootstrap) as conn:
        r = conn.call(rawkafka.find_coordinator(group), 2)
        assert r.error_code == 0
        coordinator = r.node_id
    seen: list[bytes] = []
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def member():
        cons = confluent_consumer(c.bootstrap, **{
            "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": True,
            "enable.auto.offset.store": True, "auto.commit.interval.ms": 200,
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        cons.subscribe([topic])
        try:
            while not stop.is_set():
                for m in cons.consume(50, timeout=0.2):
                    if m.error() is None:
                        with lock:
                            seen.append(m.value())
                    elif not m.error().retriable():
                        errors.append(m.error())
                time.sleep(0.02)  # consume slowly, so the kill lands mid-way
        finally:
            cons.close()

    threads = [threading.Thread(target=member) for _ in range(3)]
    for t in threads:
        t.start()
    alive = next(b for i, b in c.brokers.items() if i != coordinator)

    def all_committed():
        # Asked of the group's coordinator as the live brokers name it (the killed one until
        # its session ends): None while that is not answerable.
        try:
            with rawkafka.RawConn(alive.bootstrap) as conn:
                r = conn.call(rawkafka.find_coordinator(group), 2)
            if r.error_code != 0:
                return None
            got = rawkafka.committed(f"{r.host}:{r.port}", group, topic, range(3))
        except (OSError, AssertionError):
            return None
        return sum(o for o, _ in got.values()) == len(values)

    try:
        wait_until(lambda: len(seen) >= 100, 60, what="the group to consume")
        c.brokers[coordinator].kill9()
        wait_until(lambda: set(values) <= set(seen), 90, what="every record consumed after the kill")
        # The members commit through the new coordinator, into the same offsets in etcd.
        wait_until(lambda: all_committed() is True, 60, what="committed offsets at the log end")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:3]


def test_a_broker_gone_too_long_has_its_replicas_reassigned(cluster_factory, new_topic):
    """With --replica-replace-after-ms 2000: a replica on a dead broker moves to the live broker
    that had none, which catches up and joins the ISR; it can then take over with everything."""
    c = cluster_factory(3, extra_args=["--replica-replace-after-ms", "2000"])
    topic = new_topic()
    admin = confluent_admin(c.brokers[1].bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[1, 2]])],
                        request_timeout=15)[topic].result(timeout=20)
    acked = produce_acked(c.bootstrap, topic, [f"m{i}".encode() for i in range(100)])
    assert len(acked) == 100
    c.brokers[2].kill9()

    def moved():
        try:
            _, replicas, isr = c.partition(topic, 0)
        except Exception:  # noqa: BLE001
            return False
        return sorted(replicas) == [1, 3] and sorted(isr) == [1, 3]
    wait_until(moved, 30, what="replicas [1, 3] with both in sync")
    c.brokers[1].kill9()
    assert c.wait_leader(topic, timeout=30) == 3
    read = read_confluent(c.brokers[3].bootstrap, topic, [0])[0]
    assert {r.value: (r.partition, r.offset) for r in read} == acked


def test_a_follower_behind_the_leaders_log_start_starts_over_there(cluster_factory, new_topic):
    """A follower away while DeleteRecords moves the log start past its log end: on its return
    it starts its log at the leader's log start, catches up, and can then lead."""
    from confluent_kafka import TopicPartition as TP
    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=1, rf=3)
    leader = c.wait_leader(topic)
    victim = next(i for i in c.brokers if i != leader)
    c.brokers[victim].kill9()
    acked = produce_acked(c.bootstrap_of_running(), topic, [f"d{i:03d}".encode() for i in range(100)])
    assert len(acked) == 100
    admin = confluent_admin(c.brokers[leader].bootstrap)
    res = admin.delete_records([TP(topic, 0, 80)], request_timeout=15)
    for f in res.values():
        f.result(timeout=20)
    c.brokers[victim].start()
    c.wait_isr(topic, 0, {1, 2, 3})
    log = c.brokers[victim].log_tail(400)
    assert "behind the leader's log start" in log
    # Its WAL replays the same log after a restart (the start-over record, then the batch
    # that holds the new log start).
    assert c.brokers[victim].stop() == 0
    c.brokers[victim].start()
    c.wait_isr(topic, 0, {1, 2, 3})
    for i in c.brokers:
        if i != victim:
            c.brokers[i].kill9()
    assert c.wait_leader(topic, timeout=30) == victim
    read = read_confluent(c.brokers[victim].bootstrap, topic, [0], start=80)[0]
    assert [(r.offset, r.value) for r in read] == [(o, f"d{o:03d}".encode()) for o in range(80, 100)]


def metric_value(b, name: str) -> float:
    for line in b.metrics().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in {b.name}'s /metrics")


def test_segment_ms_archives_a_replicated_partition(cluster_factory, new_topic):
    """On a leader the high watermark moves with its followers' confirmations, not its own
    sync: segment.ms must start counting there too, or a quiet replicated partition is never
    archived (and its WAL never released)."""
    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=1, rf=3, config={"segment.ms": "1500"})
    acked = produce_acked(c.brokers[1].bootstrap, topic, [f"v{i}".encode() for i in range(100)])
    assert len(acked) == 100
    md = c.metadata(c.brokers[1], topic)
    leader = c.brokers[md.topics[topic].partitions[0].leader]
    wait_until(lambda: metric_value(leader, "sediment_segments_uploaded_total") >= 1, 20,
               what=f"the leader ({leader.name}) archiving the segment.ms=1500 partition")
    wait_until(lambda: metric_value(leader, "sediment_upload_lag_bytes") == 0, 20,
               what="nothing left to archive on the leader")
    # Nothing is lost on the way, and a new consumer reads it all.
    got = read_confluent(c.brokers[2].bootstrap, topic, [0])
    assert [r.value for r in got[0]] == [f"v{i}".encode() for i in range(100)]


def test_groups_describe_through_any_broker_finds_the_coordinator_and_every_leader(
        cluster_factory, new_topic):
    import subprocess

    from conftest import sediment_binary

    c = cluster_factory(3)
    topic = new_topic()
    create(c, topic, partitions=3, rf=3)
    produce_acked(c.brokers[1].bootstrap, topic, [f"v{i}".encode() for i in range(30)])
    cons = confluent_consumer(c.brokers[1].bootstrap, **{"group.id": "cli-g", "enable.auto.commit": False})
    cons.assign([TopicPartition(topic, p, 0) for p in range(3)])
    cons.commit(offsets=[TopicPartition(topic, p, 4) for p in range(3)], asynchronous=False)
    cons.close()
    for b in c.brokers.values():
        cp = subprocess.run([str(sediment_binary()), "groups", "-b", b.bootstrap, "describe", "cli-g"],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, (b.name, cp.stderr)
        rows = [l.split() for l in cp.stdout.splitlines() if l.split()[1:2] == [topic]]
        assert len(rows) == 3, cp.stdout
        # group, topic, partition, committed, log end, lag: each log end from its leader.
        assert sum(int(r[4]) for r in rows) == 30, cp.stdout
        assert all(r[3] == "4" and int(r[5]) == int(r[4]) - 4 for r in rows), cp.stdout
    # Output into a closed pipe ends quietly (no panic).
    cp = subprocess.run(f"{sediment_binary()} topics -b {c.brokers[1].bootstrap} describe {topic} | head -1",
                        shell=True, capture_output=True, text=True, timeout=60)
    assert "panicked" not in cp.stderr, cp.stderr
