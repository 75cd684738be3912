"""Real-world input nobody on this project wrote: the 12 SMART Health IT Synthea patients load
into the embedded server and summarize without error, and the lab series ChartAgent computes
match the numbers in the bundles themselves (counted here independently, from the raw JSON)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.context import RunContext
from agent.jobs.summarize import list_patient_ids, summarize_many, summarize_patient
from agent.testbed.datasets.synthea import bundle_files, load_synthea
from fhir_adapters import FhirClient

pytestmark = pytest.mark.integration

LOINC = "http://loinc.org"
Points = dict[str, set[tuple[datetime, float]]]


def raw_numeric_points(bundle: dict[str, Any]) -> tuple[str, Points, dict[str, str]]:
    """Per LOINC code: the distinct (time, value) numeric results, components included."""
    points: Points = defaultdict(set)
    units: dict[str, str] = {}
    patient_id = ""
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Patient":
            patient_id = res["id"]
        if res["resourceType"] != "Observation" or "effectiveDateTime" not in res:
            continue
        when = datetime.fromisoformat(res["effectiveDateTime"])
        for part in [res, *res.get("component", [])]:
            quantity = part.get("valueQuantity")
            if quantity is None or "value" not in quantity:
                continue
            for coding in part["code"].get("coding", []):
                if coding.get("system") == LOINC:
                    points[coding["code"]].add((when, float(quantity["value"])))
                    units[coding["code"]] = quantity.get("code") or quantity.get("unit", "")
    return patient_id, points, units


@pytest.fixture(scope="module")
def server(fhir_server_factory: Callable[..., str]) -> str:
    return fhir_server_factory()


async def test_synthea_patients_summarize_and_series_match_the_bundles(
    server: str, shared_data_dir: Path
) -> None:
    files = bundle_files(shared_data_dir / "synthea-r4")
    assert len(files) == 12
    async with FhirClient(server) as client:
        report = await load_synthea(client, shared_data_dir / "synthea-r4")
        assert not report.rejected
        ids = await list_patient_ids(client)
        assert len(ids) == 12
        outcomes = await summarize_many(RunContext(fhir=client), ids)
        assert [o.error for o in outcomes if o.status == "failed"] == []
        assert all(o.status == "written" for o in outcomes)
        assert all(o.status == "unchanged" for o in await summarize_many(RunContext(fhir=client), ids))

        checked = value_checked = 0
        for path in files:
            patient_id, raw, units = raw_numeric_points(json.loads(path.read_bytes()))
            state = await summarize_patient(RunContext(fhir=client, dry_run=True), patient_id)
            facts = {lab.code: lab for lab in state["facts"].labs if lab.system == LOINC}
            # Every LOINC code with two or more numeric results becomes a series.
            assert {c for c, p in raw.items() if len(p) >= 2} <= set(facts), path.name
            for code, fact in facts.items():
                expected = raw[code]
                assert fact.n == len(expected), (path.name, code)
                latest_time = max(t for t, _ in expected)
                latest_values = {v for t, v in expected if t == latest_time}
                assert fact.latest.time == latest_time, (path.name, code)
                if fact.unit == units[code]:  # same unit: the value is the bundle's, unconverted
                    assert any(abs(fact.latest.value - v) < 1e-9 for v in latest_values), (path.name, code)
                    value_checked += 1
                checked += 1
    # Diabetic and kidney courses: HbA1c, eGFR, glucose, creatinine... across the 12 patients.
    assert checked >= 100
    assert value_checked >= 0.9 * checked, (value_checked, checked)
