"""The broker against a real S3-compatible server (LocalStack, started without Docker by
localstack/start.sh), configured the way AWS tools are: AWS_* environment variables."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from conftest import free_port, sediment_binary, set_aws_env
from kafkautil import confluent_producer, create_topic, produce_confluent, read_confluent


def test_broker_uses_an_s3_bucket_from_aws_settings(localstack, broker_factory, topic_name, monkeypatch):
    endpoint, bucket = localstack
    set_aws_env(monkeypatch, endpoint)
    b = broker_factory(extra_args=["--object-store", f"s3://{bucket}/archive"])
    assert b.health() == 200
    # The start-up check wrote its probe object under the prefix, in the bucket.
    with urllib.request.urlopen(f"{endpoint}/{bucket}/archive/_sediment/probe", timeout=10) as r:
        assert r.read() == b"ok"
    create_topic(b.bootstrap, topic_name, partitions=1)
    d = produce_confluent(confluent_producer(b.bootstrap), topic_name,
                          [{"key": b"k", "value": f"v{i}".encode()} for i in range(20)])
    assert all(x.error is None for x in d)
    assert [r.value for r in read_confluent(b.bootstrap, topic_name, [0])[0]] == \
        [f"v{i}".encode() for i in range(20)]


def test_a_missing_bucket_stops_the_broker_with_a_clear_error(localstack, tmp_path: Path, monkeypatch):
    endpoint, _ = localstack
    set_aws_env(monkeypatch, endpoint)
    cp = subprocess.run(
        [str(sediment_binary()), "serve", "--data-dir", str(tmp_path / "data"),
         "--kafka-addr", f"127.0.0.1:{free_port()}", "--http-addr", f"127.0.0.1:{free_port()}",
         "--object-store", "s3://no-such-bucket-here/x"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert cp.returncode != 0
    assert "s3://no-such-bucket-here/x is not usable" in cp.stderr, cp.stderr[-2000:]
    assert "NoSuchBucket" in cp.stderr
