"""The duplicate rule for printed results: analyte, minute or day, value within printed precision."""

from __future__ import annotations

from datetime import UTC, date, time, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.observation import Observation

from tools.labs.dedup import DuplicateFinder, exact_key, known_from_observation, printed_decimals, same_result
from tools.labs.pdf import ExtractedLab

NY = ZoneInfo("America/New_York")
EPIC = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.1234"  # an Epic-style local code system


def lab(**fields: Any) -> ExtractedLab:
    base: dict[str, Any] = {
        "name": "Creatinine",
        "loinc": "2160-0",
        "name_status": "matched",
        "value": 1.2,
        "value_text": "1.2",
        "unit": "mg/dL",
        "effective": date(2024, 3, 4),
        "effective_time": time(7, 45),
        "page": 1,
        "bbox": (1.0, 2.0, 3.0, 4.0),
    }
    return ExtractedLab(**(base | fields))


def obs(
    *,
    code: str = "2160-0",
    system: str = "http://loinc.org",
    when: str | None = "2024-03-04T07:45:00Z",
    value: Any = 1.2,
    unit: str | None = "mg/dL",
    comparator: str | None = None,
    status: str = "final",
    oid: str = "o1",
) -> Observation:
    doc: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "code": {"coding": [{"system": system, "code": code}]},
        "issued": "2024-03-06T10:00:00Z",
    }
    if when is not None:
        doc["effectiveDateTime"] = when
    if isinstance(value, str):
        doc["valueString"] = value
    elif isinstance(value, dict):
        doc["valueCodeableConcept"] = value
    else:
        q: dict[str, Any] = {"value": value}
        if unit:
            q |= {"unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
        if comparator:
            q["comparator"] = comparator
        doc["valueQuantity"] = q
    return Observation.model_validate(doc)


def dup(row: ExtractedLab, known: Observation, tz: tzinfo = UTC) -> bool:
    found = known_from_observation(known, tz)
    return found is not None and same_result(row, found, tz)


@pytest.mark.parametrize(
    ("text", "value", "decimals"),
    [
        ("1.2", 1.2, 1),
        ("1.20", 1.2, 2),
        ("4,2", 4.2, 1),
        ("<0.5", 0.5, 1),
        (">90", 90.0, 0),
        ("140", 140.0, 0),
        ("10,500", 10500.0, 0),
        ("1,005", 1.005, 3),
        ("-1.5", -1.5, 1),
        ("negative", 0.0, 0),
    ],
)
def test_printed_decimals(text: str, value: float, decimals: int) -> None:
    assert printed_decimals(text, value) == decimals


def test_same_minute_when_both_have_times() -> None:
    assert dup(lab(), obs(when="2024-03-04T07:45:00Z"))
    assert dup(lab(), obs(when="2024-03-04T07:45:59Z"))
    assert not dup(lab(), obs(when="2024-03-04T07:46:00Z"))
    assert not dup(lab(), obs(when="2024-03-04T19:45:00Z"))


def test_the_printed_time_is_read_in_the_report_zone() -> None:
    fhir = obs(when="2024-03-04T12:45:00Z")  # 07:45 in New York (EST, UTC-5)
    assert dup(lab(), fhir, NY)
    assert not dup(lab(), fhir, UTC)


def test_same_day_when_the_pdf_has_no_time() -> None:
    dated = lab(effective_time=None)
    assert dup(dated, obs(when="2024-03-04T23:30:00Z"))
    assert not dup(dated, obs(when="2024-03-05T00:30:00Z"))
    # 00:30 UTC on the 5th is still the 4th in New York.
    assert dup(dated, obs(when="2024-03-05T00:30:00Z"), NY)


def test_same_day_when_the_record_has_no_time() -> None:
    assert dup(lab(), obs(when="2024-03-04"))
    assert not dup(lab(), obs(when="2024-03-05"))


def test_no_collection_time_is_no_evidence() -> None:
    assert known_from_observation(obs(when=None)) is None  # only ``issued``: not the same draw
    assert known_from_observation(obs(when="2024-03")) is None


@pytest.mark.parametrize(
    ("printed", "value", "fhir", "same"),
    [
        ("1.2", 1.2, 1.24, True),
        ("1.2", 1.2, 1.16, True),
        ("1.2", 1.2, 1.26, False),
        ("1.20", 1.2, 1.24, False),
        ("1.20", 1.2, 1.204, True),
        ("1", 1.0, 1.4, True),
    ],
)
def test_value_within_half_a_printed_unit(printed: str, value: float, fhir: float, same: bool) -> None:
    assert dup(lab(value=value, value_text=printed), obs(value=fhir)) is same


def test_units_are_converted_before_comparing() -> None:
    # 1.2 mg/dL creatinine is 106.1 umol/L: "106" (a unit's precision) matches, "107" does not.
    assert dup(lab(loinc="14682-9", value=106.0, value_text="106", unit="umol/L"), obs(value=1.2))
    assert not dup(lab(loinc="14682-9", value=107.0, value_text="107", unit="umol/L"), obs(value=1.2))
    # Glucose in mmol/L (its own LOINC code) against mg/dL: one analyte.
    glucose = lab(name="Glucose", loinc="14749-6", value=5.5, value_text="5.5", unit="mmol/L")
    assert dup(glucose, obs(code="2345-7", value=99.0))
    assert not dup(glucose, obs(code="2345-7", value=101.0))
    # A code the analyte table does not know: same code, dimensional conversion (g/L -> g/dL).
    protein = lab(name="Total protein", loinc="2885-2", value=7.1, value_text="7.1", unit="g/dL")
    assert dup(protein, obs(code="2885-2", value=71.0, unit="g/L"))
    assert not dup(protein, obs(code="2885-2", value=75.0, unit="g/L"))
    assert not dup(protein, obs(code="2885-2", value=7.1, unit="mmol/L"))  # no conversion: not the same


def test_local_code_and_loinc_of_one_analyte_match() -> None:
    assert dup(lab(), obs(system=EPIC, code="CREAT"))
    assert not dup(lab(), obs(system=EPIC, code="GLU", value=1.2))


def test_different_codes_never_match() -> None:
    assert not dup(
        lab(name="ALT", loinc="1742-6", value=30.0, value_text="30", unit="U/L"),
        obs(code="1920-8", value=30.0, unit="U/L"),
    )


def test_comparator_must_match() -> None:
    crp = lab(name="CRP", loinc="1988-5", value=0.5, value_text="<0.5", unit="mg/L", comparator="<")
    assert not dup(crp, obs(code="1988-5", value=0.5, unit="mg/L"))
    assert dup(crp, obs(code="1988-5", value=0.5, unit="mg/L", comparator="<"))
    assert not dup(crp, obs(code="1988-5", value=0.5, unit="mg/L", comparator=">"))


def test_texts_compare_ignoring_case_and_blanks() -> None:
    nitrite = lab(name="Nitrite", loinc="5802-4", value="Negative", value_text="Negative", unit=None)
    assert dup(nitrite, obs(code="5802-4", value="negative "))
    assert dup(nitrite, obs(code="5802-4", value={"text": "NEGATIVE"}))
    assert dup(
        nitrite,
        obs(
            code="5802-4",
            value={
                "coding": [{"system": "http://snomed.info/sct", "code": "260385009", "display": "Negative"}]
            },
        ),
    )
    assert not dup(nitrite, obs(code="5802-4", value="positive"))
    assert not dup(nitrite, obs(code="5802-4", value=0.0, unit=None))


def test_entered_in_error_results_are_not_compared() -> None:
    assert known_from_observation(obs(status="entered-in-error")) is None
    assert known_from_observation(obs(status="preliminary")) is not None


def test_finder_over_the_record_then_earlier_documents() -> None:
    finder = DuplicateFinder([obs(oid="fhir-1"), obs(oid="gone", status="entered-in-error", value=2.0)], NY)
    assert (
        finder.find(lab(effective_time=time(2, 45))) == "Observation/fhir-1"
    )  # 07:45 UTC is 02:45 in New York
    assert finder.find(lab(value=2.0, value_text="2.0")) is None
    later = lab(value=2.0, value_text="2.0", effective=date(2024, 5, 1))
    assert finder.find(later) is None
    finder.add([later], "DocumentReference/older")
    assert (
        finder.find(lab(value=2.0, value_text="2.00", effective=date(2024, 5, 1)))
        == "DocumentReference/older"
    )
    assert finder.find(lab(value=2.1, value_text="2.1", effective=date(2024, 5, 1))) is None


def test_exact_key_finds_rows_printed_twice() -> None:
    assert exact_key(lab(page=1)) == exact_key(lab(page=2, bbox=(9.0, 9.0, 10.0, 10.0)))
    assert exact_key(lab()) != exact_key(lab(effective_time=time(8, 0)))
    assert exact_key(lab()) != exact_key(lab(value=1.3, value_text="1.3"))
