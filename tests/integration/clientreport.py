"""Which Kafka clients each integration test really used, and how those tests ended.

Loaded by conftest before any test module, it wraps the entry points of every client the
suites drive: confluent-kafka's Producer / Consumer / AdminClient, kafka-python's
KafkaProducer / KafkaConsumer / KafkaAdminClient, and the kcat and node (kafkajs) processes
started through subprocess. Each construction or process start is recorded against the test
running at the time (threads included), so a test counts for a client only if it talked to the
broker through it. At the end pytest prints a table per client (tests, passed, failed,
skipped) and, if $SEDIMENT_CLIENT_REPORT names a file, writes it there as JSON; the figures in
docs/compatibility.md come from it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import defaultdict

import pytest

_current: str | None = None
_used: dict[str, set[str]] = defaultdict(set)
_outcome: dict[str, str] = {}


def _note(client: str) -> None:
    if _current is not None:
        _used[_current].add(client)


def _wrap_init(cls, client: str) -> None:
    orig = cls.__init__

    def __init__(self, *args, **kwargs):
        _note(client)
        orig(self, *args, **kwargs)

    cls.__init__ = __init__


def _subclass(module, name: str, client: str) -> None:
    base = getattr(module, name)

    def __init__(self, *args, **kwargs):
        _note(client)
        base.__init__(self, *args, **kwargs)

    recorded = type(name, (base,), {"__init__": __init__, "__module__": base.__module__})
    setattr(module, name, recorded)


def install() -> None:
    import confluent_kafka
    import confluent_kafka.admin
    import kafka
    import kafka.admin

    # confluent-kafka's Producer and Consumer are C types: replace them with recording
    # subclasses before the test modules import them.
    for name in ("Producer", "Consumer"):
        _subclass(confluent_kafka, name, "confluent-kafka")
    _wrap_init(confluent_kafka.admin.AdminClient, "confluent-kafka")
    for cls in (kafka.KafkaProducer, kafka.KafkaConsumer, kafka.admin.KafkaAdminClient):
        _wrap_init(cls, "kafka-python")

    popen_init = subprocess.Popen.__init__

    def recording_popen(self, args, *rest, **kwargs):
        argv = [args] if isinstance(args, (str, bytes)) else list(args)
        first = os.path.basename(str(argv[0])) if argv else ""
        if "kcat" in first:
            _note("kcat")
        elif first in ("node", "nodejs"):
            _note("kafkajs")
        popen_init(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = recording_popen


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _current
    _current = item.nodeid
    try:
        return (yield)
    finally:
        _current = None


def pytest_runtest_logreport(report):
    # A test's outcome: failed if any phase failed, skipped if skipped, else passed.
    prev = _outcome.get(report.nodeid)
    if report.failed:
        _outcome[report.nodeid] = "failed"
    elif report.skipped and prev != "failed":
        _outcome[report.nodeid] = "skipped"
    elif report.when == "call" and prev is None:
        _outcome[report.nodeid] = "passed"


def summary() -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for nodeid, outcome in _outcome.items():
        for client in _used.get(nodeid) or {"none (Sediment's own protocol client or HTTP)"}:
            row = table.setdefault(client, {"tests": 0, "passed": 0, "failed": 0, "skipped": 0})
            row["tests"] += 1
            row[outcome] += 1
    return dict(sorted(table.items()))


def pytest_terminal_summary(terminalreporter):
    table = summary()
    if not table:
        return
    terminalreporter.section("tests by Kafka client used")
    for client, row in table.items():
        terminalreporter.write_line(
            f"{client:48} {row['tests']:4} tests: {row['passed']} passed, "
            f"{row['failed']} failed, {row['skipped']} skipped")
    path = os.environ.get("SEDIMENT_CLIENT_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"by_client": table, "tests": {k: sorted(v) for k, v in _used.items()}}, f, indent=2)
