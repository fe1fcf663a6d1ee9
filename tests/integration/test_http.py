"""The broker's HTTP side: /health and /metrics."""

from __future__ import annotations

import re
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
