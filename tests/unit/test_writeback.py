"""Write-back builders: R4B-valid, AI-labelled, deterministic, input-sensitive, strict on bad input."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance

from tools.labs.analytes import LOINC_SYSTEM, get_analyte
from tools.labs.series import LabPoint, LabSeries
from tools.narrative import render_summary
from tools.trends import Trend, compute_trend
from tools.writeback import (
    AI_OUTPUT_SYSTEM,
    InputRef,
    ModelIdentity,
    build_model_device,
    build_patient_transaction,
    build_provenance,
    build_trend_observation,
    business_identifier,
    trend_engine_identity,
)
from tools.writeback.builders import DIRECTION_SYSTEM, TREND_CODE_SYSTEM

T0 = datetime(2022, 1, 10, 8, 0, tzinfo=UTC)
ISSUED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SUBJECT = "Patient/p1"
ENGINE = trend_engine_identity("9.9.9")
AIAST = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "AIAST")


def trend(key: str, values: list[float], *, version: str = "1", prefix: str | None = None) -> Trend:
    a = get_analyte(key)
    points = tuple(
        LabPoint(
            time=T0 + timedelta(days=90 * i),
            value=v,
            original_value=v,
            original_unit=a.unit,
            observation_id=f"{prefix or key}-{i}",
            observation_version=version,
        )
        for i, v in enumerate(values)
    )
    series = LabSeries(
        code=a.primary_loinc,
        system=LOINC_SYSTEM,
        display=a.display,
        unit=a.unit,
        analyte_key=key,
        subject=SUBJECT,
        points=points,
    )
    return compute_trend(series)


def bundle(trends: list[Trend] | None = None, **kw: Any) -> dict[str, Any]:
    if trends is None:
        trends = [trend("creatinine", [1.0, 1.2, 1.5]), trend("ldl", [150.0, 120.0])]
    args: dict[str, Any] = {
        "subject": SUBJECT,
        "trends": trends,
        "narrative": render_summary("Pat", trends) if trends else "x",
        "issued": ISSUED,
        "identity": ENGINE,
    } | kw
    return build_patient_transaction(**args)


def resources(b: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == rtype]


# --- identifiers ----------------------------------------------------------------------


def test_identifier_is_deterministic_and_order_insensitive() -> None:
    a, b = InputRef(reference="Observation/1", version="2"), InputRef(reference="Observation/2", version="1")
    one = business_identifier(engine="e", task="t", inputs=[a, b], parameters={"x": 1})
    assert one == business_identifier(engine="e", task="t", inputs=[b, a, a], parameters={"x": 1})
    assert re.fullmatch(r"[0-9a-f]{64}", one.value)
    assert one.system == AI_OUTPUT_SYSTEM


@pytest.mark.parametrize(
    "change",
    [
        {"engine": "e2"},
        {"task": "t2"},
        {"inputs": [InputRef(reference="Observation/1", version="3")]},  # a new version of the input
        {"inputs": [InputRef(reference="Observation/1", version="2"), InputRef(reference="Observation/9")]},
        {"parameters": {"x": 2}},
    ],
)
def test_identifier_changes_with_any_input(change: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        "engine": "e",
        "task": "t",
        "inputs": [InputRef(reference="Observation/1", version="2")],
        "parameters": {"x": 1},
    }
    assert business_identifier(**base) != business_identifier(**(base | change))


def test_identifier_needs_engine_and_task() -> None:
    with pytest.raises(ValueError, match="engine"):
        business_identifier(engine=" ", task="t")


def test_model_identity_key_ignores_placement() -> None:
    moved = ENGINE.model_copy(update={"device": "cuda:0", "backend": "vllm"})
    assert moved.key() == ENGINE.key()
    assert ENGINE.model_copy(update={"dtype": "bf16"}).key() != ENGINE.key()
    assert build_model_device(moved).identifier == build_model_device(ENGINE).identifier


# --- Device ---------------------------------------------------------------------------


def test_device_is_ai_typed() -> None:
    dev = build_model_device(
        ModelIdentity(name="medgemma-1.5-4b-it", version="1.5", dtype="bf16", prompt_version="p3")
    )
    body = dev.resource.model_dump(mode="json")
    assert body["type"]["coding"][0]["code"] == "Artificial-Intelligence"
    assert body["deviceName"] == [{"name": "medgemma-1.5-4b-it", "type": "model-name"}]
    assert {"type": {"text": "prompt"}, "value": "p3"} in body["version"]
    assert body["identifier"] == [dev.identifier.as_fhir()]


# --- trend Observation ----------------------------------------------------------------


def test_trend_observation_content() -> None:
    t = trend("creatinine", [1.0, 1.2, 1.5])
    dev = build_model_device(ENGINE)
    built = build_trend_observation(t, subject=SUBJECT, device=dev, identity=ENGINE, issued=ISSUED)
    obs = built.resource.model_dump(mode="json")
    Observation.model_validate(obs)
    assert (obs["status"], obs["subject"]["reference"]) == ("preliminary", SUBJECT)
    assert [(s["system"], s["code"]) for s in obs["meta"]["security"]] == [AIAST]
    assert obs["identifier"] == [built.identifier.as_fhir()]
    assert obs["category"][0]["coding"][0]["code"] == "laboratory"
    assert obs["code"]["coding"][0] == {
        "system": TREND_CODE_SYSTEM,
        "code": "lab-trend",
        "display": "Result trend",
    }
    assert [d["reference"] for d in obs["derivedFrom"]] == [s.reference for s in t.sources]
    assert len(obs["derivedFrom"]) == t.n == 3
    assert obs["effectivePeriod"] == {"start": "2022-01-10T08:00:00Z", "end": "2022-07-09T08:00:00Z"}
    assert obs["valueQuantity"]["value"] == pytest.approx(0.5)
    assert obs["valueQuantity"]["code"] == "mg/dL"
    assert obs["device"]["reference"] == dev.full_url
    assert {c["coding"][0]["code"] for c in obs["interpretation"]} == {"W", "U"}
    comps = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
    assert comps["direction"]["valueCodeableConcept"]["coding"][0] == {
        "system": DIRECTION_SYSTEM,
        "code": "worsened",
    }
    assert comps["analyte"]["valueCodeableConcept"]["coding"][0]["code"] == "2160-0"
    assert comps["slope"]["valueQuantity"]["code"] == "mg/dL/a"
    assert comps["slope"]["valueQuantity"]["value"] == pytest.approx(t.slope_per_year)
    assert comps["latest"]["valueQuantity"]["value"] == 1.5


@pytest.mark.parametrize("direction_values", [[150.0, 148.0], [150.0, 120.0]])
def test_stable_and_improved_interpretation(direction_values: list[float]) -> None:
    t = trend("ldl", direction_values)
    built = build_trend_observation(
        t, subject=SUBJECT, device=build_model_device(ENGINE), identity=ENGINE, issued=ISSUED
    )
    body = built.resource.model_dump(mode="json")
    codes = {c["coding"][0]["code"] for c in body.get("interpretation", [])}
    assert codes == ({"B", "D"} if t.direction == "improved" else set())


def test_trend_observation_rejects_bad_input() -> None:
    t = trend("creatinine", [1.0, 1.5])
    dev = build_model_device(ENGINE)
    for subject in ("", "p1", "Patient/", "Group/x", "urn:uuid:123"):
        with pytest.raises(ValueError, match="subject"):
            build_trend_observation(t, subject=subject, device=dev, identity=ENGINE, issued=ISSUED)
    with pytest.raises(ValueError, match="belongs to"):
        build_trend_observation(t, subject="Patient/other", device=dev, identity=ENGINE, issued=ISSUED)
    empty = t.model_copy(update={"sources": ()})
    with pytest.raises(ValueError, match="sources"):
        build_trend_observation(empty, subject=SUBJECT, device=dev, identity=ENGINE, issued=ISSUED)
    with pytest.raises(ValueError, match="timezone"):
        build_trend_observation(t, subject=SUBJECT, device=dev, identity=ENGINE, issued=datetime(2025, 1, 1))


def test_absolute_subject_reference_matches() -> None:
    t = trend("creatinine", [1.0, 1.5]).model_copy(update={"subject": "https://ehr.example/fhir/Patient/p1"})
    build_trend_observation(
        t, subject=SUBJECT, device=build_model_device(ENGINE), identity=ENGINE, issued=ISSUED
    )


def test_provenance_needs_targets_and_sources() -> None:
    dev = build_model_device(ENGINE)
    with pytest.raises(ValueError, match="target"):
        build_provenance(targets=[], device=dev, sources=["Observation/1"], identity=ENGINE, recorded=ISSUED)
    obs = build_trend_observation(
        trend("ldl", [1.0, 2.0]), subject=SUBJECT, device=dev, identity=ENGINE, issued=ISSUED
    )
    with pytest.raises(ValueError, match="source"):
        build_provenance(targets=[obs], device=dev, sources=[], identity=ENGINE, recorded=ISSUED)
    with pytest.raises(ValueError, match="Device"):
        build_provenance(
            targets=[obs], device=obs, sources=["Observation/1"], identity=ENGINE, recorded=ISSUED
        )


# --- the transaction ------------------------------------------------------------------


def test_bundle_is_valid_r4b_transaction_with_if_none_exist_everywhere() -> None:
    b = bundle()
    Bundle.model_validate(b)
    assert b["type"] == "transaction"
    types = [e["resource"]["resourceType"] for e in b["entry"]]
    assert types == ["Device", "Observation", "Observation", "DiagnosticReport", "Provenance"]
    for e in b["entry"]:
        assert e["fullUrl"].startswith("urn:uuid:")
        assert e["request"]["method"] == "POST"
        assert e["request"]["url"] == e["resource"]["resourceType"]
        param, token = e["request"]["ifNoneExist"].split("=", 1)
        system, value = token.split("|")
        assert system == AI_OUTPUT_SYSTEM
        if e["resource"]["resourceType"] == "Provenance":
            assert param == "_tag"
            assert e["resource"]["meta"]["tag"] == [{"system": system, "code": value}]
        else:
            assert param == "identifier"
            assert e["resource"]["identifier"] == [{"system": system, "value": value}]
    assert len({e["fullUrl"] for e in b["entry"]}) == len(b["entry"])


def test_bundle_is_what_the_r4b_bundle_model_would_dump() -> None:
    # Assembled as a plain dict (no second validation): the same JSON, key order included, that
    # validating and dumping it as an R4B Bundle gives, so identifiers and the wire are unchanged.
    b = bundle()
    assert json.dumps(Bundle.model_validate(b).model_dump(mode="json")) == json.dumps(b)


def test_bundle_references_resolve_inside_the_bundle() -> None:
    b = bundle()
    urls: dict[str, list[str]] = {e["resource"]["resourceType"]: [] for e in b["entry"]}
    for e in b["entry"]:
        urls[e["resource"]["resourceType"]].append(e["fullUrl"])
    (device_url,) = urls["Device"]
    (report,) = resources(b, "DiagnosticReport")
    (prov,) = resources(b, "Provenance")
    assert [r["reference"] for r in report["result"]] == urls["Observation"]
    assert all(o["device"]["reference"] == device_url for o in resources(b, "Observation"))
    assert [t["reference"] for t in prov["target"]] == urls["Observation"] + urls["DiagnosticReport"]
    assert prov["agent"][0]["who"]["reference"] == device_url
    assert prov["agent"][0]["type"]["coding"][0]["code"] == "author"


def test_provenance_cites_every_input_and_a_derivation() -> None:
    b = bundle()
    (prov,) = resources(b, "Provenance")
    Provenance.model_validate(prov)
    sources = {e["what"]["reference"] for e in prov["entity"] if e["role"] == "source"}
    derived = {d["reference"] for o in resources(b, "Observation") for d in o["derivedFrom"]}
    assert sources == derived
    assert len(sources) == 5
    assert [e["role"] for e in prov["entity"]].count("derivation") == 1
    assert prov["recorded"] == "2025-06-01T12:00:00Z"


def test_report_content() -> None:
    trends = [trend("creatinine", [1.0, 1.2, 1.5]), trend("ldl", [150.0, 120.0])]
    text = render_summary("Pat", trends)
    (report,) = resources(bundle(trends), "DiagnosticReport")
    DiagnosticReport.model_validate(report)
    assert report["status"] == "preliminary"
    assert report["code"]["coding"][0]["code"] == "11502-2"
    assert report["conclusion"] == text
    # The text/plain form is the narrative followed by the trend table; then one PNG per plot.
    plain = base64.b64decode(report["presentedForm"][0]["data"]).decode("utf-8")
    assert text in plain
    assert plain.index(text) < plain.index("Trend table:")
    assert report["presentedForm"][0]["contentType"].startswith("text/plain")
    assert [f["contentType"] for f in report["presentedForm"][1:]] == ["image/png"] * 2
    assert report["text"]["status"] == "generated"
    assert [(s["system"], s["code"]) for s in report["meta"]["security"]] == [AIAST]
    assert report["effectivePeriod"] == {"start": "2022-01-10T08:00:00Z", "end": "2022-07-09T08:00:00Z"}
    assert report["subject"] == {"reference": SUBJECT}


def test_same_run_same_bundle() -> None:
    assert json.dumps(bundle(), sort_keys=True) == json.dumps(bundle(), sort_keys=True)


def test_input_change_changes_identifiers() -> None:
    before = bundle()
    # One source Observation got a new value: its trend, the report and the Provenance are new.
    after = bundle([trend("creatinine", [1.0, 1.2, 1.6]), trend("ldl", [150.0, 120.0])])
    ids_before = [e["request"]["ifNoneExist"] for e in before["entry"]]
    ids_after = [e["request"]["ifNoneExist"] for e in after["entry"]]
    assert ids_before[0] == ids_after[0]  # the same Device
    assert ids_before[1] != ids_after[1]  # creatinine trend
    assert ids_before[2] == ids_after[2]  # LDL trend untouched
    assert ids_before[3] != ids_after[3]
    assert ids_before[4] != ids_after[4]
    # A new engine version makes every resource new, the Device included.
    newer = bundle(identity=trend_engine_identity("10.0.0"))
    assert not {e["request"]["ifNoneExist"] for e in newer["entry"]} & set(ids_before)


def test_resent_unchanged_inputs_keep_identifiers() -> None:
    # A feed re-sending the same results bumps their versionId; nothing new may be written.
    resent = bundle(
        [trend("creatinine", [1.0, 1.2, 1.5], version="7"), trend("ldl", [150.0, 120.0], version="7")]
    )
    assert [e["request"]["ifNoneExist"] for e in resent["entry"]] == [
        e["request"]["ifNoneExist"] for e in bundle()["entry"]
    ]


def test_transaction_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no trends"):
        bundle([])
    with pytest.raises(ValueError, match="subject"):
        bundle(subject="")
    with pytest.raises(ValueError, match="narrative"):
        bundle(narrative="  ")
    t = trend("ldl", [150.0, 120.0])
    with pytest.raises(ValueError, match="same inputs"):
        bundle([t, t])
