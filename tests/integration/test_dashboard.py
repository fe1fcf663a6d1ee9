"""The Grafana dashboard (charts/sediment/dashboards/sediment.json) queries only metrics the
broker exports, with the suffixes their types have: a renamed or removed metric fails here
instead of leaving an empty panel in production."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "sediment" / "dashboards" / "sediment.json"
METRIC = re.compile(r"\bsediment_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_types(body: str) -> dict[str, str]:
    """{family name: type} from the `# TYPE` lines of /metrics."""
    out = {}
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            out[name] = kind.strip()
    return out


def queried_metrics() -> set[str]:
    dash = json.loads(DASHBOARD.read_text())
    names = set()
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            names.update(METRIC.findall(target["expr"]))
    return names


def family_of(name: str, types: dict[str, str]) -> tuple[str, str] | None:
    """The exported family a queried sample name belongs to, and its type."""
    for family, kind in types.items():
        for suffix in SUFFIXES.get(kind, ()):
            if name == family + suffix:
                return family, kind
    return None


def test_every_metric_the_dashboard_queries_is_exported(broker):
    types = exported_types(broker.metrics())
    queried = queried_metrics()
    assert len(queried) >= 15, queried
    missing = sorted(n for n in queried if family_of(n, types) is None)
    assert not missing, f"the dashboard queries metrics the broker does not export: {missing}"
    # And the check can fail: a name the broker does not have is reported.
    assert family_of("sediment_no_such_metric_total", types) is None
    assert family_of("sediment_requests", types) is None, "a counter is queried with _total"


def test_every_panel_has_a_query_and_a_unique_id():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
