"""Trends use values transcribed from lab-report PDFs, never ChartAgent's computed output."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time
from typing import Any

from fhir.resources.R4B.observation import Observation

from agent.nodes.compute_trends import trend_inputs, trends_at
from agent.state import SummarizeState
from tools.labs.pdf import ExtractedLab
from tools.labs.series import SkipReason, build_series
from tools.record import build_record
from tools.writeback import AIAST, build_model_device
from tools.writeback.lab_results import build_lab_result_observation, lab_pdf_extractor_identity

IDENTITY = lab_pdf_extractor_identity("1.0")
DEVICE = build_model_device(IDENTITY)
ISSUED = datetime(2025, 1, 1, tzinfo=UTC)


def fhir_creatinine(oid: str, value: float, when: str, *, ai: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        },
    }
    if ai:
        body["meta"] = {"security": [AIAST]}
    return body


def pdf_creatinine(
    oid: str, value: float, text: str, unit: str, on: date, at: time | None, comparator: Any = None
) -> dict[str, Any]:
    row = ExtractedLab(
        name="Creatinine",
        loinc="2160-0" if unit == "mg/dL" else "14682-9",
        name_status="matched",
        value=value,
        value_text=text,
        unit=unit,
        effective=on,
        effective_time=at,
        comparator=comparator,
        page=1,
        bbox=(1.0, 2.0, 3.0, 4.0),
    )
    built = build_lab_result_observation(
        row,
        subject="Patient/p1",
        document="DocumentReference/d1",
        pdf_sha256=hashlib.sha256(oid.encode()).hexdigest(),
        device=DEVICE,
        identity=IDENTITY,
        issued=ISSUED,
    )
    body: dict[str, Any] = built.resource.model_dump(mode="json") | {"id": oid}
    return body


def test_trend_inputs_keep_document_extractions_and_drop_ai_output() -> None:
    raws = [
        fhir_creatinine("lab-1", 1.0, "2024-01-01T08:00:00Z"),
        pdf_creatinine("pdf-1", 1.4, "1.4", "mg/dL", date(2024, 6, 1), time(8, 0)),
        fhir_creatinine("ai-1", 9.9, "2024-09-01T08:00:00Z", ai=True),
    ]
    record = build_record("p1", [{"resourceType": "Patient", "id": "p1"}, *raws])
    assert sorted(str(o.id) for o in trend_inputs(record.of_type("Observation"))) == ["lab-1", "pdf-1"]
    state: SummarizeState = {"patient_id": "p1", "record": record}
    out = trends_at(state, ISSUED)
    (trend,) = out["trends"]
    assert [s.reference for s in trend.sources] == ["Observation/lab-1", "Observation/pdf-1"]
    assert trend.latest.value == 1.4


def test_series_mixes_feed_and_pdf_values_in_one_unit() -> None:
    observations = [
        Observation.model_validate(r)
        for r in (
            fhir_creatinine("lab-1", 1.0, "2024-01-01T08:00:00Z"),
            pdf_creatinine("pdf-umol", 133.0, "133", "umol/L", date(2024, 3, 1), time(8, 0)),
            pdf_creatinine("pdf-day", 1.3, "1.3", "mg/dL", date(2024, 4, 1), None),  # printed without a time
            pdf_creatinine("pdf-lt", 0.5, "<0.5", "mg/dL", date(2024, 5, 1), time(8, 0), comparator="<"),
        )
    ]
    (series,) = build_series(observations).series
    assert series.unit == "mg/dL"
    assert [(p.observation_id, round(p.value, 3)) for p in series.points] == [
        ("lab-1", 1.0),
        ("pdf-umol", round(133 / 88.42, 3)),
        ("pdf-day", 1.3),
    ]
    assert series.points[2].time == datetime(2024, 4, 1, tzinfo=UTC)
    assert [(s.observation_id, s.reason) for s in build_series(observations).skipped] == [
        ("pdf-lt", SkipReason.CENSORED)
    ]


def test_one_draw_in_the_feed_and_in_the_pdf_is_one_point() -> None:
    feed = Observation.model_validate(fhir_creatinine("lab-1", 1.2, "2024-03-04T07:45:00Z"))
    # 106 umol/L is 1.199 mg/dL: the rounding of the printed value, not another result.
    pdf = Observation.model_validate(
        pdf_creatinine("pdf-1", 106.0, "106", "umol/L", date(2024, 3, 4), time(7, 45))
    )
    other = Observation.model_validate(
        pdf_creatinine("pdf-2", 115.0, "115", "umol/L", date(2024, 3, 4), time(7, 45))
    )
    (series,) = build_series([feed, pdf]).series
    assert [p.observation_id for p in series.points] == ["lab-1"]
    assert [(s.observation_id, s.reason) for s in series.skipped] == [("pdf-1", SkipReason.DUPLICATE)]
    (both,) = build_series([feed, other]).series
    assert [p.observation_id for p in both.points] == ["lab-1", "pdf-2"]  # 1.30 mg/dL: another value
    # In one unit only an equal value is the same.
    same_unit = Observation.model_validate(fhir_creatinine("lab-2", 1.201, "2024-03-04T07:45:00Z"))
    (kept,) = build_series([feed, same_unit]).series
    assert len(kept.points) == 2
