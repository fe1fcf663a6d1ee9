"""Hostile frames against the real binary: the connection closes, the broker keeps serving."""

from __future__ import annotations

import socket
import struct

from confluent_kafka.admin import AdminClient


def _send_and_expect_close(bootstrap: str, frame: bytes) -> None:
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(frame)
        s.settimeout(10)
        assert s.recv(64) == b"", "the broker answered a frame it cannot decode"


def _request(api_key: int, version: int, body: bytes) -> bytes:
    header = struct.pack(">hhih", api_key, version, 7, 1) + b"t"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def test_array_length_claims_cannot_exhaust_memory(broker):
    # Metadata v0/v1 whose topic array claims tens of millions / 2^31-1 entries in a few
    # bytes: decoding must fail cleanly instead of trying to allocate it.
    for version, count in [(0, 0x033C0C00), (1, 0x7FFFFFFF)]:
        _send_and_expect_close(broker.bootstrap, _request(3, version, struct.pack(">i", count) + b"\x00\x01x"))
    # Produce v3 claiming 2^31-1 topics.
    _send_and_expect_close(broker.bootstrap,
                           _request(0, 3, struct.pack(">hhii", -1, -1, 1000, 0x7FFFFFFF)))
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    assert md.brokers, "the broker stopped answering"
    assert broker.health() == 200
