"""The Grafana dashboard (deploy/helm/chartagent/files/chartagent-dashboard.json): every panel
query parses as PromQL and names only metrics and labels ChartAgent exports (Grafana's own
variables replaced as Grafana would). tests/integration/test_prometheus_alerts_live.py runs every
query against a real Prometheus scraping a worker. Never loaded into a Grafana here (none is
installed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from monitoring_checks import DASHBOARD, dashboard_queries, names_only_exported


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


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


@pytest.mark.parametrize(("title", "expr"), dashboard_queries(), ids=lambda v: str(v)[:60])
def test_each_panel_query_names_only_exported_metrics_and_labels(title: str, expr: str) -> None:
    if "chartagent_" in expr:
        names_only_exported(expr, title)
    else:  # the process collectors' own metrics, of the chosen scrape jobs only
        assert 'job=~".+"' in expr, title
