"""deploy/prometheus/chartagent-alerts.yaml without a Prometheus: every rule is well formed, its
expression parses as PromQL (promql-parser), and every metric it names, with every label it
matches on, is one ChartAgent exports (a renamed metric or label fails here, not silently in a
cluster where the alert would never fire)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import Counter, Histogram

import agent.metrics
import fhir_adapters.metrics
import tools.imaging.dicomweb_metrics
import tools.medgemma.metrics

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "chartagent-alerts.yaml"
MODULES = (agent.metrics, fhir_adapters.metrics, tools.imaging.dicomweb_metrics, tools.medgemma.metrics)
SELECTOR = re.compile(r"\b(chartagent_[a-z_]+)(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"')


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


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_rule_is_an_alert_with_a_severity_and_a_summary() -> None:
    found = rules()
    assert len(found) >= 8
    assert len({r["alert"] for r in found}) == len(found)
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_each_expression_parses_and_names_only_exported_metrics_and_labels(rule: dict[str, Any]) -> None:
    expr = rule["expr"]
    promql_parser.parse(expr)  # raises on a syntax error
    metrics = exported()
    selectors = SELECTOR.findall(expr)
    assert selectors, f"{rule['alert']} names no ChartAgent metric"
    for name, braces in selectors:
        assert name in metrics, f"{rule['alert']}: {name} is not exported"
        for label in MATCHER.findall(braces):
            assert label in metrics[name], f"{rule['alert']}: {name} has no label {label}"


def test_the_checks_catch_a_renamed_metric_and_a_wrong_label() -> None:
    metrics = exported()
    assert "chartagent_job_patients_total" in metrics
    assert "chartagent_jobs_patients_total" not in metrics
    assert "outcome" not in metrics["chartagent_job_patients_total"]
    with pytest.raises(ValueError, match="unclosed left parenthesis"):
        promql_parser.parse("sum(rate(chartagent_fhir_requests_total[5m])")
