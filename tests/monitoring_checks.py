"""Checks of what the chart gives Prometheus and Grafana: the metrics ChartAgent exports, with
their label names, read from its own metric definitions; the check that a PromQL expression (an
alert rule, a dashboard panel) names only those; the dashboard's queries as Grafana sends them;
and Prometheus's promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Final

import promql_parser
from prometheus_client import Counter, Histogram

import agent.metrics
import fhir_adapters.metrics
import tools.imaging.dicomweb_metrics
import tools.medgemma.metrics

__all__ = [
    "DASHBOARD",
    "FILES",
    "PROMETHEUS_BIN",
    "RULES",
    "dashboard_queries",
    "exported",
    "names_only_exported",
    "promtool",
]

ROOT: Final = Path(__file__).resolve().parents[1]
# The alerting rules, their promtool tests and the dashboard (the chart renders them on request).
FILES: Final = ROOT / "deploy" / "helm" / "chartagent" / "files"
RULES: Final = FILES / "chartagent-alerts.yaml"
DASHBOARD: Final = FILES / "chartagent-dashboard.json"
# `make test` takes promtool and the server out of Debian's prometheus package (Makefile).
PROMETHEUS_BIN: Final = ROOT / ".tools" / "bin"
PROMTOOL: Final = PROMETHEUS_BIN / "promtool"

MODULES: Final = (
    agent.metrics,
    fhir_adapters.metrics,
    tools.imaging.dicomweb_metrics,
    tools.medgemma.metrics,
)
SELECTOR: Final = re.compile(r"\b(chartagent_[a-z_]+)(\{[^}]*\})?")
MATCHER: Final = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"')
GROUPING: Final = re.compile(r"\bby\s*\(([^)]*)\)")
# Labels Prometheus adds to every scraped series.
TARGET_LABELS: Final = frozenset({"job", "instance"})


def exported() -> dict[str, set[str]]:
    """The series names ChartAgent's counters and histograms export, with their label names."""
    names: dict[str, set[str]] = {}
    for module in MODULES:
        for metric in vars(module).values():
            # prometheus_client keeps a metric's name and label names in these attributes.
            if isinstance(metric, Counter):
                names[f"{metric._name}_total"] = set(metric._labelnames)
            elif isinstance(metric, Histogram):
                labels = set(metric._labelnames)
                names |= {f"{metric._name}_{s}": labels for s in ("count", "sum")}
                names[f"{metric._name}_bucket"] = labels | {"le"}
    return names


def names_only_exported(expr: str, where: str) -> None:
    """Asserts that `expr` parses as PromQL and that every ChartAgent metric it names, every label
    it matches on and every label it groups by is exported (`where` names it in a failure)."""
    promql_parser.parse(expr)  # raises on a syntax error
    metrics = exported()
    selectors = SELECTOR.findall(expr)
    assert selectors, f"{where} names no ChartAgent metric"
    for name, braces in selectors:
        assert name in metrics, f"{where}: {name} is not exported"
        for label in MATCHER.findall(braces):
            assert label in metrics[name] | TARGET_LABELS, f"{where}: {name} has no label {label}"
    named = set().union(*(metrics[name] for name, _ in selectors))
    for grouping in GROUPING.findall(expr):
        for label in filter(None, (part.strip() for part in grouping.split(","))):
            assert label in named | TARGET_LABELS, f"{where}: groups by {label}, which its metrics lack"


def promtool(*args: str, cwd: Path = FILES) -> subprocess.CompletedProcess[str]:
    found = str(PROMTOOL) if PROMTOOL.exists() else shutil.which("promtool")
    assert found, "promtool is missing: `make .tools/bin/prometheus` takes it out of Debian's package"
    return subprocess.run([found, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def dashboard_queries() -> list[tuple[str, str]]:
    """Each dashboard panel's title and queries, with Grafana's variables filled in as Grafana
    sends them (a rate window, every scrape job)."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", "2m").replace("$job", ".+"))
        for panel in panels
        for target in panel.get("targets", [])
    ]
