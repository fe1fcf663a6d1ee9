"""Transactions are not implemented: a transactional producer must learn it at once, with a
fatal error, not after retrying until its timeout."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaException, Producer


def test_init_transactions_fails_fast_and_fatally(broker, topic_name):
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "txn-1"})
    start = time.monotonic()
    with pytest.raises(KafkaException) as info:
        p.init_transactions(30)
    took = time.monotonic() - start
    err = info.value.args[0]
    assert took < 5, f"init_transactions took {took:.1f} s to fail (it retried a retriable error)"
    assert err.fatal() or not err.retriable(), f"{err}: a client would keep retrying"
    assert "TRANSACTIONAL_ID_AUTHORIZATION_FAILED" in err.name() or \
        "transactional" in err.str().lower(), err
