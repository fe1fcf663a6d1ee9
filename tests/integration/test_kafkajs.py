"""kafkajs against Sediment: a consumer group and an idempotent producer.

The node scripts live in tests/integration/js (kafkajs pinned in package.json and
package-lock.json; tests/run.sh runs `npm ci` there). A missing node or kafkajs
fails the tests, it does not skip them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from groupkit import committed_offsets, produce_spread
from kafkautil import assert_dense, create_topic, read_confluent

JS_DIR = Path(__file__).resolve().parent / "js"
NODE_TIMEOUT_S = 90


@pytest.fixture
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not installed (tests/run.sh installs nodejs)", pytrace=False)
    if not (JS_DIR / "node_modules" / "kafkajs" / "package.json").is_file():
        pytest.fail(f"kafkajs is not installed in {JS_DIR}: run `npm ci` there (tests/run.sh does it)",
                    pytrace=False)
    return path


def run_node(node: str, script: str, *args) -> dict:
    """Run a script in js/ and return the JSON summary it prints on stdout."""
    cmd = [node, str(JS_DIR / script), *map(str, args)]
    env = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1")
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=NODE_TIMEOUT_S, cwd=JS_DIR,
                            env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"`{script}` did not finish within {NODE_TIMEOUT_S}s\n"
                             f"stdout: {e.stdout!r}\nstderr tail: {(e.stderr or '')[-3000:]}") from None
    lines = [line for line in cp.stdout.splitlines() if line.startswith("{")]
    assert lines, f"`{script}` printed no summary (exit {cp.returncode})\nstdout: {cp.stdout}\n" \
                  f"stderr tail:\n{cp.stderr[-3000:]}"
    summary = json.loads(lines[-1])
    assert "fatal" not in summary and cp.returncode == 0, (
        f"`{script}` exited {cp.returncode}: {summary.get('fatal') or ''}\n"
        f"summary: {json.dumps(summary)[:3000]}\nstderr tail:\n{cp.stderr[-3000:]}")
    return summary


@pytest.mark.timeout(120)
def test_kafkajs_group_reads_every_record_once(broker, topic_name, node):
    parts = list(range(6))
    create_topic(broker.bootstrap, topic_name, partitions=len(parts))
    expected = produce_spread(broker.bootstrap, topic_name, parts, 50, "js")
    group = f"kafkajs-{topic_name}"
    s = run_node(node, "group.js", broker.bootstrap, topic_name, group, len(expected), 2, 60000)

    print(f"kafkajs group: {s['distinct']} records in {s['elapsedMs']} ms; members "
          f"{[(m['name'], m['assignment'], m['joins'], m['protocol']) for m in s['members']]}")
    assert not s["timedOut"] and not s["errors"], s["errors"]
    assert not s["commitErrors"], f"commits failed: {s['commitErrors'][:5]}"
    assert s["duplicateCount"] == 0, f"records delivered twice: {s['duplicates']}"
    got = {(int(p), o) for p, offs in s["delivered"].items() for o in offs}
    assert got == expected, (f"missing {sorted(expected - got)[:10]}, "
                             f"unexpected {sorted(got - expected)[:10]}")
    assert s["deliveries"] == len(expected)
    assignments = [set(m["assignment"]) for m in s["members"]]
    assert all(assignments), f"a member ended without partitions: {s['members']}"
    assert sorted(p for a in assignments for p in a) == parts, f"final assignments {assignments}"
    got_committed = committed_offsets(broker.bootstrap, group, topic_name, parts)
    assert got_committed == {p: 50 for p in parts}, got_committed


@pytest.mark.timeout(120)
def test_kafkajs_idempotent_producer_writes_each_record_once(broker, topic_name, node):
    parts, count = [0, 1, 2], 600
    create_topic(broker.bootstrap, topic_name, partitions=len(parts))
    s = run_node(node, "produce.js", broker.bootstrap, topic_name, count, len(parts), 50)

    # every send acknowledged, offsets per partition consecutive and never reused
    next_offset = {p: 0 for p in parts}
    for i, answers in enumerate(s["sends"]):
        for a in answers:
            assert a["errorCode"] == 0, f"send {i}: {a}"
            assert a["baseOffset"] == next_offset[a["partition"]], (
                f"send {i}: partition {a['partition']} base offset {a['baseOffset']}, "
                f"expected {next_offset[a['partition']]}")
            next_offset[a["partition"]] += a["count"]

    records = read_confluent(broker.bootstrap, topic_name, parts)
    assert_dense(records)
    stored = Counter(r.value for recs in records.values() for r in recs)
    assert not [v for v, n in stored.items() if n > 1], "records stored more than once"
    want = [f"kjs-{i:05d}".encode() for i in range(count)]
    assert sorted(stored) == want, "stored values differ from those sent"
    for p in parts:
        assert [r.value for r in records[p]] == [v for i, v in enumerate(want) if i % len(parts) == p], (
            f"partition {p}: order differs from send order")
