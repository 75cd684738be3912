"""The Grafana dashboard (deploy/helm/chartagent/files/chartagent-dashboard.json): every panel
query parses as PromQL and names only metrics and labels ChartAgent exports (Grafana's own
variables replaced as Grafana would). tests/integration/test_prometheus_alerts_live.py runs every
query against a real Prometheus scraping a worker. Never loaded into a Grafana here (none is
installed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from monitoring_checks import names_only_exported

DASHBOARD = (
    Path(__file__).resolve().parents[2]
    / "deploy"
    / "helm"
    / "chartagent"
    / "files"
    / "chartagent-dashboard.json"
)


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def as_grafana_sends_it(expr: str) -> str:
    """The query with Grafana's variables filled in: a rate window, and every scrape job."""
    return expr.replace("$__rate_interval", "2m").replace("$job", ".+")


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "chartagent"
    every = dashboard["panels"]
    assert len({p["id"] for p in every}) == len(every)
    assert len(panels()) >= 12
    for panel in panels():
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= 24, panel["title"]  # Grafana's grid is 24 wide


@pytest.mark.parametrize("panel", panels(), ids=lambda p: p["title"])
def test_each_panel_query_names_only_exported_metrics_and_labels(panel: dict[str, Any]) -> None:
    for target in panel["targets"]:
        expr = as_grafana_sends_it(target["expr"])
        if "chartagent_" in expr:
            names_only_exported(expr, panel["title"])
        else:  # the process collectors' own metrics, of the chosen scrape jobs only
            assert 'job=~".+"' in expr, panel["title"]
