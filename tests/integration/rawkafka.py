"""Raw Kafka requests over a plain socket, for cases no client library will send.

The request and response classes (and their encoders and decoders) are
kafka-python's own (kafka.protocol.*); this module only frames them on a
socket and matches answers to requests. Each call names the API version, so
a test says exactly what goes on the wire.
"""

from __future__ import annotations

import itertools
import socket
import struct
import time

from kafka.protocol.consumer import (
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    OffsetCommitRequest,
    OffsetDeleteRequest,
    OffsetFetchRequest,
    SyncGroupRequest,
)
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment, ConsumerProtocolSubscription
from kafka.protocol.metadata import FindCoordinatorRequest
from kafka.protocol.producer import InitProducerIdRequest, ProduceRequest
from kafka.record.default_records import DefaultRecordBatchBuilder

# Kafka error codes used by the tests (org.apache.kafka.common.protocol.Errors).
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69
MEMBER_ID_REQUIRED = 79


class RawConn:
    """One TCP connection to a broker; `call()` sends a request and returns its decoded answer."""

    def __init__(self, bootstrap: str, client_id: str = "sediment-it-raw", timeout: float = 15.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.client_id = client_id
        self.timeout = timeout
        self._corr = itertools.count(1)

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        deadline = time.monotonic() + self.timeout
        while len(buf) < n:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no complete answer within {self.timeout:.0f}s")
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"broker closed the connection after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def call(self, request, version: int):
        corr = next(self._corr)
        request.with_header(correlation_id=corr, client_id=self.client_id)
        self.sock.sendall(bytes(request.encode(version=version, header=True, framed=True)))
        size = struct.unpack(">i", self._recv_exact(4))[0]
        body = self._recv_exact(size)
        response = request.header.get_response_class().decode(body, header=True)
        got = response.header.correlation_id
        assert got == corr, f"answer to correlation id {got}, expected {corr}"
        return response

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------ builders


def subscription(topics: list[str]) -> bytes:
    """The consumer protocol's subscription metadata (what a real consumer sends in JoinGroup)."""
    return bytes(ConsumerProtocolSubscription(0, list(topics), b"").encode())


def assignment(topic: str, partitions: list[int]) -> bytes:
    return bytes(ConsumerProtocolAssignment(0, [(topic, list(partitions))], b"").encode())


def find_coordinator(group: str) -> FindCoordinatorRequest:
    return FindCoordinatorRequest(key=group, key_type=0)


def join_group(group: str, member_id: str = "", protocol_type: str = "consumer",
               protocols: list[tuple[str, bytes]] | None = None, session_timeout_ms: int = 10000,
               rebalance_timeout_ms: int = 10000) -> JoinGroupRequest:
    P = JoinGroupRequest.JoinGroupRequestProtocol
    return JoinGroupRequest(
        group_id=group, session_timeout_ms=session_timeout_ms,
        rebalance_timeout_ms=rebalance_timeout_ms, member_id=member_id, group_instance_id=None,
        protocol_type=protocol_type,
        protocols=[P(name=n, metadata=m) for n, m in (protocols or [("range", b"")])])


def sync_group(group: str, generation: int, member_id: str,
               assignments: dict[str, bytes] | None = None) -> SyncGroupRequest:
    A = SyncGroupRequest.SyncGroupRequestAssignment
    return SyncGroupRequest(
        group_id=group, generation_id=generation, member_id=member_id, group_instance_id=None,
        protocol_type="consumer", protocol_name="range",
        assignments=[A(member_id=m, assignment=a) for m, a in (assignments or {}).items()])


def heartbeat(group: str, generation: int, member_id: str) -> HeartbeatRequest:
    return HeartbeatRequest(group_id=group, generation_id=generation, member_id=member_id,
                            group_instance_id=None)


def leave_group(group: str, member_id: str) -> LeaveGroupRequest:
    M = LeaveGroupRequest.MemberIdentity
    return LeaveGroupRequest(group_id=group, member_id=member_id,
                             members=[M(member_id=member_id, group_instance_id=None)])


def offset_commit(group: str, offsets: dict[tuple[str, int], tuple[int, str | None]],
                  generation: int = -1, member_id: str = "") -> OffsetCommitRequest:
    """`offsets`: {(topic, partition): (offset, metadata)}."""
    T = OffsetCommitRequest.OffsetCommitRequestTopic
    P = T.OffsetCommitRequestPartition
    by_topic: dict[str, list] = {}
    for (topic, part), (off, meta) in offsets.items():
        by_topic.setdefault(topic, []).append(
            P(partition_index=part, committed_offset=off, committed_leader_epoch=-1,
              committed_metadata=meta))
    return OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=generation, member_id=member_id,
        group_instance_id=None, retention_time_ms=-1,
        topics=[T(name=t, partitions=ps) for t, ps in by_topic.items()])


def offset_fetch_groups(groups: dict[str, dict[str, list[int]] | None]) -> OffsetFetchRequest:
    """OffsetFetch v8+ (several groups in one request); None = all of that group's offsets."""
    G = OffsetFetchRequest.OffsetFetchRequestGroup
    GT = G.OffsetFetchRequestTopics
    return OffsetFetchRequest(
        groups=[G(group_id=g, topics=None if topics is None else
                  [GT(name=t, partition_indexes=ps) for t, ps in topics.items()])
                for g, topics in groups.items()],
        require_stable=False)


def offset_delete(group: str, topic: str, partitions: list[int]) -> OffsetDeleteRequest:
    T = OffsetDeleteRequest.OffsetDeleteRequestTopic
    P = T.OffsetDeleteRequestPartition
    return OffsetDeleteRequest(group_id=group, topics=[T(name=topic, partitions=[
        P(partition_index=p) for p in partitions])])


def init_producer_id() -> InitProducerIdRequest:
    return InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000,
                                 producer_id=-1, producer_epoch=-1)


def idempotent_batch(producer_id: int, epoch: int, base_sequence: int,
                     values: list[bytes]) -> bytes:
    """A v2 record batch carrying producer id, epoch and base sequence."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=producer_id, producer_epoch=epoch,
                                  base_sequence=base_sequence, batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=None, key=None, value=v, headers=[])
    return bytes(b.build())


def produce(topic: str, partition: int, batch: bytes, acks: int = -1) -> ProduceRequest:
    T = ProduceRequest.TopicProduceData
    P = T.PartitionProduceData
    return ProduceRequest(transactional_id=None, acks=acks, timeout_ms=10000,
                          topic_data=[T(name=topic, partition_data=[P(index=partition, records=batch)])])


def produce_result(response) -> tuple[int, int]:
    """(error code, base offset) of a one-partition ProduceResponse."""
    [t] = response.responses
    [p] = t.partition_responses
    return p.error_code, p.base_offset


def committed(bootstrap: str, group: str, topic: str, partitions) -> dict[int, tuple[int, str | None]]:
    """{partition: (committed offset, metadata)} of one group, by an OffsetFetch v8 of our own."""
    with RawConn(bootstrap) as c:
        f = c.call(offset_fetch_groups({group: {topic: list(partitions)}}), 8)
    [g] = f.groups
    assert g.error_code == 0, f"OffsetFetch for {group}: error {g.error_code}"
    out = {}
    for t in g.topics:
        for p in t.partitions:
            assert p.error_code == 0, f"OffsetFetch {group} {t.name}/{p.partition_index}: error {p.error_code}"
            out[p.partition_index] = (p.committed_offset, p.metadata)
    return out
