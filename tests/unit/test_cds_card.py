"""The CDS Hooks card: from the summary resources the real write-back code produces, 140-character
trimming, status and indicator, and the structural rule that the hook never reaches model code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.service.cds_card import SOURCE_LABEL, SUMMARY_MAX_CHARS, summary_response, trim_summary
from fhir_adapters.parsing import parse_resource
from tools.labs.analytes import LOINC_SYSTEM, get_analyte
from tools.labs.series import LabPoint, LabSeries
from tools.trends import Trend, compute_trend
from tools.writeback import build_patient_transaction, trend_engine_identity

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = "https://chartagent.example/app/launch"
T0 = datetime(2022, 1, 10, 8, 0, tzinfo=UTC)
ISSUED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LONG_NARRATIVE = (
    "Creatinine rose from 1.0 to 1.5 mg/dL over six months, a worsening of kidney function that "
    "deserves a repeat measurement; LDL cholesterol fell from 150 to 120 mg/dL on treatment."
)


def trend(patient: str, key: str, values: list[float]) -> Trend:
    a = get_analyte(key)
    points = tuple(
        LabPoint(
            time=T0 + timedelta(days=90 * i),
            value=v,
            original_value=v,
            original_unit=a.unit,
            observation_id=f"{patient}-{key}-{i}",
            observation_version="1",
        )
        for i, v in enumerate(values)
    )
    series = LabSeries(
        code=a.primary_loinc,
        system=LOINC_SYSTEM,
        display=a.display,
        unit=a.unit,
        analyte_key=key,
        subject=f"Patient/{patient}",
        points=points,
    )
    return compute_trend(series)


def stored(
    patient: str,
    trends: list[Trend],
    *,
    narrative: str = LONG_NARRATIVE,
    status: str | None = None,
    issued: datetime = ISSUED,
    prefix: str = "a",
) -> list[Any]:
    """The transaction's resources as a FHIR server keeps them: ids given, urn:uuid references
    resolved to Type/id."""
    bundle = build_patient_transaction(
        subject=f"Patient/{patient}",
        trends=trends,
        narrative=narrative,
        issued=issued,
        identity=trend_engine_identity("9.9.9"),
    )
    ids = {}
    for n, entry in enumerate(bundle["entry"]):
        rtype = entry["resource"]["resourceType"]
        ids[entry["fullUrl"]] = f"{rtype}/{prefix}{n}"
    text = json.dumps([e["resource"] for e in bundle["entry"]])
    for urn, ref in ids.items():
        text = text.replace(urn, ref)
    raws = json.loads(text)
    for raw, ref in zip(raws, ids.values(), strict=True):
        raw["id"] = ref.split("/")[1]
        raw.setdefault("meta", {})["versionId"] = "1"
        if status is not None and raw["resourceType"] == "DiagnosticReport":
            raw["status"] = status
    return [parse_resource(r) for r in raws]


def test_the_card_shows_the_summary_its_status_and_a_smart_link() -> None:
    resources = stored("p1", [trend("p1", "creatinine", [1.0, 1.2, 1.5]), trend("p1", "ldl", [150.0, 120.0])])
    answer = summary_response(resources, patient_id="p1", launch_url=LAUNCH).as_json()

    (card,) = answer["cards"]
    report = next(r for r in resources if r.get_resource_type() == "DiagnosticReport")
    assert len(card["summary"]) <= SUMMARY_MAX_CHARS
    assert card["summary"].startswith("Creatinine rose from 1.0 to 1.5 mg/dL")
    assert card["source"] == {"label": SOURCE_LABEL}
    assert "AI-generated" in card["detail"]
    assert "**preliminary**" in card["detail"]
    # Creatinine went up: the trend engine calls that worsened, and the card warns.
    assert card["indicator"] == "warning"
    assert "Worsened: Creatinine" in card["detail"]
    (link,) = card["links"]
    assert (link["type"], link["url"], link["label"]) == ("smart", LAUNCH, "Open ChartAgent")
    assert json.loads(link["appContext"]) == {"summary": f"DiagnosticReport/{report.id}"}
    assert set(card) == {"uuid", "summary", "detail", "indicator", "source", "links"}


def test_an_approved_summary_says_final_and_improving_trends_give_an_info_card() -> None:
    resources = stored(
        "p1", [trend("p1", "ldl", [150.0, 130.0, 110.0])], narrative="LDL improved.", status="final"
    )
    (card,) = summary_response(resources, patient_id="p1", launch_url=LAUNCH).as_json()["cards"]
    assert card["summary"] == "LDL improved."
    assert "**final** (approved by a clinician)" in card["detail"]
    assert card["indicator"] == "info"


def test_the_newest_current_summary_of_this_patient_only() -> None:
    old = stored("p1", [trend("p1", "ldl", [150.0, 120.0])], narrative="Older summary.", prefix="o")
    new = stored(
        "p1",
        [trend("p1", "ldl", [150.0, 120.0, 110.0])],
        narrative="Newer summary.",
        issued=ISSUED + timedelta(days=30),
        prefix="n",
    )
    retired = stored(
        "p1",
        [trend("p1", "ldl", [150.0, 100.0])],
        narrative="Retired summary.",
        status="entered-in-error",
        issued=ISSUED + timedelta(days=60),
        prefix="r",
    )
    other = stored(
        "p2",
        [trend("p2", "ldl", [150.0, 90.0])],
        narrative="Another patient.",
        issued=ISSUED + timedelta(days=90),
    )
    (card,) = summary_response([*old, *new, *retired, *other], patient_id="p1", launch_url=LAUNCH).cards
    assert card.summary == "Newer summary."


def test_no_summary_no_card() -> None:
    assert summary_response([], patient_id="p1", launch_url=LAUNCH).as_json() == {"cards": []}
    retired = stored("p1", [trend("p1", "ldl", [150.0, 120.0])], status="entered-in-error")
    assert summary_response(retired, patient_id="p1", launch_url=LAUNCH).as_json() == {"cards": []}
    theirs = stored("p2", [trend("p2", "ldl", [150.0, 120.0])])
    assert summary_response(theirs, patient_id="p1", launch_url=LAUNCH).as_json() == {"cards": []}


def test_trimming_keeps_whole_words_within_140_characters() -> None:
    assert trim_summary("  Short\n summary.  ") == "Short summary."
    exactly = "x" * 140
    assert trim_summary(exactly) == exactly

    cut = trim_summary(LONG_NARRATIVE)
    assert len(cut) <= 140
    assert cut.endswith("\u2026")
    words = cut.removesuffix("\u2026").split()
    # Whole words of the text, in order: no word is cut in two.
    assert words == LONG_NARRATIVE.split()[: len(words)]
    assert len(words) < len(LONG_NARRATIVE.split())

    # A word that ends exactly at the limit is kept whole.
    text = "a" * 138 + " bc"
    assert trim_summary(text) == "a" * 138 + "\u2026"
    one_word = "y" * 300
    assert trim_summary(one_word) == "y" * 139 + "\u2026"


@pytest.mark.parametrize("limit", [10, 25, 140])
def test_trimming_never_exceeds_the_limit(limit: int) -> None:
    for n in range(0, len(LONG_NARRATIVE), 7):
        assert len(trim_summary(LONG_NARRATIVE[:n], limit)) <= limit


FORBIDDEN = ("agent.chat", "tools.medgemma", "agent.prompts", "agent.graphs", "agent.nodes", "tools.registry")
HOOK_MODULES = ("agent/service/cds_hooks.py", "agent/service/cds_card.py", "agent/service/cds_auth.py")


@pytest.mark.parametrize("path", HOOK_MODULES)
def test_the_hook_modules_import_no_model_code(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text())
    imported = [
        name
        for node in ast.walk(tree)
        for name in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    ]
    assert imported, "the parse found no imports"
    assert not [m for m in imported if m.startswith(FORBIDDEN)]


def test_importing_the_hook_loads_no_model_code() -> None:
    # Transitively too: a fresh interpreter imports the hook and lists what got loaded.
    code = (
        f"import sys, agent.service.cds_hooks\nprint([m for m in sys.modules if m.startswith({FORBIDDEN!r})])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
