"""deploy/helm/chartagent/files/chartagent-alerts.yaml: every rule is well formed, its expression parses as
PromQL (promql-parser), and every metric it names, with every label it matches on, is one
ChartAgent exports (a renamed metric or label fails here, not silently in a cluster where the
alert would never fire). Prometheus's own promtool (from Debian's `prometheus` package) checks the file
and evaluates every rule over the series of chartagent-alerts.test.yaml: each alert fires on what
it is for, with its summary's figure, and stays quiet on healthy series; those series too are
named and labelled as ChartAgent exports them. A changed threshold fails those tests."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_checks import FILES, RULES, exported, names_only_exported, promtool

RULE_TESTS = FILES / "chartagent-alerts.test.yaml"


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
    names_only_exported(rule["expr"], rule["alert"])


def test_the_checks_catch_a_renamed_metric_a_wrong_label_and_a_bad_expression() -> None:
    names_only_exported('sum by (status) (rate(chartagent_job_patients_total{status="failed"}[5m]))', "ok")
    with pytest.raises(AssertionError, match="chartagent_jobs_patients_total is not exported"):
        names_only_exported("rate(chartagent_jobs_patients_total[5m])", "renamed")
    with pytest.raises(AssertionError, match="has no label outcome"):
        names_only_exported('rate(chartagent_job_patients_total{outcome="failed"}[5m])', "label")
    with pytest.raises(AssertionError, match="groups by outcome"):
        names_only_exported("sum by (outcome) (rate(chartagent_job_patients_total[5m]))", "grouping")
    with pytest.raises(ValueError, match="unclosed left parenthesis"):
        names_only_exported("sum(rate(chartagent_fhir_requests_total[5m])", "syntax")


def rule_tests() -> list[dict[str, Any]]:
    return list(yaml.safe_load(RULE_TESTS.read_text())["tests"])


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_evaluates_every_rule_over_its_test_series() -> None:
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in rule_tests():
        for case in group["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    alerts = {r["alert"] for r in rules()}
    assert firing == alerts
    assert quiet == alerts


def test_the_test_series_are_named_and_labelled_as_chartagent_exports_them() -> None:
    metrics = exported()
    for group in rule_tests():
        for series in group["input_series"]:
            name, _, braces = series["series"].partition("{")
            assert name in metrics, f"{group['name']}: {name} is not exported"
            labels = set(re.findall(r'(\w+)="(?:[^"\\]|\\.)*"', braces))
            assert labels == metrics[name], f"{group['name']}: {series['series']}"


def test_a_changed_threshold_fails_the_rule_tests(tmp_path: Path) -> None:
    text = RULES.read_text()
    assert 'outcome="429"}[10m])) > 0.5' in text
    (tmp_path / RULES.name).write_text(
        text.replace('outcome="429"}[10m])) > 0.5', 'outcome="429"}[10m])) > 1.5')
    )
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    done = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0
    assert "alertname: ChartAgentFhirThrottled" in done.stdout + done.stderr
