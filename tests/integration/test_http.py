"""The broker's HTTP side: /health and /metrics."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request

from kafkautil import confluent_producer, create_topic, produce_confluent

# A Prometheus text-format sample line: name{labels} value [timestamp]
SAMPLE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+0-9.eEinfaN]+( -?[0-9]+)?$")


def test_health_and_metrics(broker, topic_name):
    assert broker.health() == 200
    create_topic(broker.bootstrap, topic_name, partitions=1)
    d = produce_confluent(confluent_producer(broker.bootstrap), topic_name,
                          [{"key": b"k", "value": b"v"}])
    assert d[0].error is None, d

    with urllib.request.urlopen(broker.http_base + "/metrics", timeout=5) as resp:
        assert resp.status == 200
        ctype = resp.headers.get("Content-Type", "")
        body = resp.read().decode()
    # Either exposition format that Prometheus scrapes: the classic text format
    # (text/plain; version=0.0.4) or OpenMetrics text, which must end with "# EOF".
    if ctype.startswith("application/openmetrics-text"):
        assert body.rstrip("\n").splitlines()[-1] == "# EOF", f"OpenMetrics body without '# EOF':\n{body[-500:]}"
    else:
        assert ctype.startswith("text/plain"), f"Content-Type {ctype!r}"
    samples = [line for line in body.splitlines() if line and not line.startswith("#")]
    assert samples, f"/metrics has no samples:\n{body[:2000]}"
    bad = [line for line in samples if not SAMPLE.match(line)]
    assert not bad, f"lines that are not Prometheus samples: {bad[:5]}"


def parse_metrics(body: str) -> dict[str, float]:
    """Every sample as {'name{labels}': value}."""
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def sample(metrics: dict[str, float], name: str, **labels) -> float:
    """The one sample of `name` whose labels include `labels`."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    hits = [v for k, v in metrics.items()
            if (k == name or k.startswith(name + "{")) and all(w in k for w in want)]
    assert len(hits) == 1, f"{name} {labels}: {len(hits)} samples in " + \
        str(sorted(k for k in metrics if k.startswith(name))[:20])
    return hits[0]


def test_operator_metrics_count_what_clients_did(broker, topic_name):
    """Per-API latency histograms, per-topic bytes and records in and out, WAL sync latency
    and group-commit size, per-partition upload lag, connections by listener, and consumer
    group lag: each matches what the test's clients did."""
    from confluent_kafka import TopicPartition

    from kafkautil import confluent_consumer

    create_topic(broker.bootstrap, topic_name, partitions=2)
    msgs = [{"key": f"k{i}".encode(), "value": b"x" * 100, "partition": i % 2} for i in range(40)]
    d = produce_confluent(confluent_producer(broker.bootstrap, acks="all"), topic_name, msgs)
    assert all(r.error is None for r in d), d

    # Consume partition 0 only, in a group, and commit after 15 of its 20 records.
    c = confluent_consumer(broker.bootstrap, **{"group.id": "lag-g", "enable.auto.commit": False})
    c.assign([TopicPartition(topic_name, 0, 0)])
    got = []
    deadline = time.time() + 30
    while len(got) < 20 and time.time() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            got.append(m)
    assert len(got) == 20, len(got)
    c.commit(offsets=[TopicPartition(topic_name, 0, 15)], asynchronous=False)

    m = parse_metrics(broker.metrics())
    c.close()
    # Requests by API, with a latency histogram whose count is the request count.
    produce_count = sample(m, "sediment_request_seconds_count", api="Produce")
    assert produce_count >= 1
    assert sample(m, "sediment_requests_total", api="Produce") == produce_count
    assert sample(m, "sediment_request_seconds_count", api="OffsetCommit") == 1
    assert sample(m, "sediment_request_seconds_bucket", api="Produce", le="+Inf") == produce_count
    # Per topic: every record in once; out at least partition 0's 20 records.
    assert sample(m, "sediment_topic_records_in_total", topic=topic_name) == 40
    bytes_in = sample(m, "sediment_topic_bytes_in_total", topic=topic_name)
    assert bytes_in >= 40 * 100
    assert sample(m, "sediment_topic_records_out_total", topic=topic_name) >= 20
    assert sample(m, "sediment_topic_bytes_out_total", topic=topic_name) >= 20 * 100
    # The WAL synced (acks=all), each sync timed, each group commit counted.
    syncs = sample(m, "sediment_wal_sync_seconds_count")
    assert syncs >= 1
    assert sample(m, "sediment_wal_group_commit_entries_count") == syncs
    assert sample(m, "sediment_wal_group_commit_entries_sum") >= 1
    # Per partition upload lag exists for both partitions.
    for p in (0, 1):
        assert sample(m, "sediment_partition_upload_lag_bytes", topic=topic_name, partition=p) >= 0
    # Connections by listener.
    assert sample(m, "sediment_listener_connections", listener="PLAINTEXT") >= 1
    # Group lag: partition 0's high watermark is 20, the commit 15.
    assert sample(m, "sediment_group_lag_offsets", group="lag-g", topic=topic_name, partition=0) == 5


def test_json_logs_are_one_object_per_line(broker_factory):
    b = broker_factory(extra_args=["--log-format", "json"])
    b.stop()
    # The harness writes its own "===== start #N: <command>" line before each start.
    lines = [l for l in b.log_path.read_text().splitlines()
             if l.strip() and not l.startswith("===== ")]
    assert lines, "no log lines"
    events = [json.loads(l) for l in lines]  # raises on any line that is not JSON
    serving = [e for e in events if e.get("fields", {}).get("message") == "sediment is serving"]
    assert serving, [e.get("fields") for e in events[:10]]
    assert serving[0]["level"] == "INFO" and "timestamp" in serving[0]
    # Every listener, as NAME://bound (protocol, advertised address).
    assert f"PLAINTEXT://{b.bootstrap} (PLAINTEXT, advertised {b.bootstrap})" in \
        serving[0]["fields"]["listeners"], serving[0]["fields"]


def test_an_unknown_log_format_is_refused(tmp_path):
    from conftest import sediment_binary

    cp = subprocess.run([str(sediment_binary()), "serve", "--log-format", "xml",
                         "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert cp.returncode != 0
    assert "invalid value 'xml' for '--log-format" in cp.stderr, cp.stderr
