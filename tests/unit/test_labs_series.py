"""Known-answer tests for grouping FHIR Observations into lab series."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation

from tools.labs.analytes import LOINC_SYSTEM
from tools.labs.series import MixedSubjectsError, SkipReason, build_series

EPIC = "urn:oid:1.2.840.114350.1.13.0.1.7.2.768282"


def obs(
    oid: str | None,
    code: str,
    value: float | None,
    unit: str | None = "mg/dL",
    *,
    system: str = LOINC_SYSTEM,
    when: Any = "2024-01-01T08:00:00+00:00",
    status: str = "final",
    subject: str | None = "Patient/p1",
    **extra: Any,
) -> Observation:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": system, "code": code}]},
        **extra,
    }
    if oid is not None:
        body["id"] = oid
    if subject is not None:
        body["subject"] = {"reference": subject}
    if when is not None and "effectivePeriod" not in extra and "issued" not in extra:
        body["effectiveDateTime"] = when
    if value is not None:
        qty: dict[str, Any] = {"value": value}
        if unit is not None:
            qty |= {"unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
        body["valueQuantity"] = qty
    return Observation.model_validate(body)


def test_loinc_and_local_code_form_one_series_in_canonical_unit() -> None:
    ss = build_series(
        [
            obs("a", "2345-7", 100.0, when="2024-01-01T08:00:00Z"),
            obs("b", "GLU", 6.0, "mmol/L", system=EPIC, when="2024-02-01T08:00:00Z"),
            obs("c", "2339-0", 110.0, "mg/dl", when="2024-03-01T08:00:00Z"),
        ]
    )
    assert len(ss.series) == 1
    glucose = ss.series[0]
    assert glucose.analyte_key == "glucose"
    assert glucose.unit == "mg/dL"
    assert [p.observation_id for p in glucose.points] == ["a", "b", "c"]
    assert glucose.points[1].value == pytest.approx(108.096)
    assert glucose.points[1].original_value == 6.0
    assert glucose.points[1].original_unit == "mmol/L"
    assert glucose.code in {"2345-7", "2339-0"}
    assert glucose.system == LOINC_SYSTEM
    assert ss.subject == "Patient/p1"


def test_local_only_series_gets_primary_loinc() -> None:
    ss = build_series([obs("a", "A1C", 7.1, "%", system=EPIC)])
    assert (ss.series[0].code, ss.series[0].system, ss.series[0].analyte_key) == (
        "4548-4",
        LOINC_SYSTEM,
        "hba1c",
    )


def test_blood_pressure_components_form_two_series() -> None:
    def bp(oid: str, sys_: float, dia: float, when: str) -> Observation:
        return obs(
            oid,
            "85354-9",
            None,
            when=when,
            component=[
                {
                    "code": {"coding": [{"system": LOINC_SYSTEM, "code": "8480-6"}]},
                    "valueQuantity": {"value": sys_, "unit": "mmHg", "code": "mm[Hg]"},
                },
                {
                    "code": {"coding": [{"system": LOINC_SYSTEM, "code": "8462-4"}]},
                    "valueQuantity": {"value": dia, "unit": "mmHg", "code": "mm[Hg]"},
                },
            ],
        )

    ss = build_series([bp("b1", 150, 95, "2024-01-01T08:00:00Z"), bp("b2", 130, 85, "2024-06-01T08:00:00Z")])
    systolic, diastolic = ss.by_analyte("systolic_bp"), ss.by_analyte("diastolic_bp")
    assert systolic is not None
    assert diastolic is not None
    assert [p.value for p in systolic.points] == [150, 130]
    assert [p.value for p in diastolic.points] == [95, 85]
    assert systolic.unit == "mm[Hg]"
    assert [p.observation_id for p in systolic.points] == ["b1", "b2"]
    assert ss.skipped == ()  # the panel has no value of its own and is not a skipped result


@pytest.mark.parametrize(
    ("status", "kept"),
    [
        ("final", True),
        ("amended", True),
        ("corrected", True),
        ("preliminary", True),
        ("entered-in-error", False),
        ("cancelled", False),
        ("registered", False),
        ("unknown", False),
    ],
)
def test_status_filter(status: str, kept: bool) -> None:
    ss = build_series([obs("a", "2160-0", 1.0, status=status)])
    assert bool(ss.series) is kept
    if not kept:
        assert [s.reason for s in ss.skipped] == [SkipReason.STATUS]


def test_effective_time_sources() -> None:
    ss = build_series(
        [
            obs("late", "2160-0", 1.4, when="2024-05-01T10:00:00+02:00"),
            obs("period", "2160-0", 1.2, effectivePeriod={"start": "2024-03-01T08:00:00Z"}),
            obs("issued", "2160-0", 1.3, when=None, issued="2024-04-01T08:00:00Z"),
            obs("dateonly", "2160-0", 1.1, when="2024-02-01"),
            obs("partial", "2160-0", 1.0, when="2024-01"),
        ]
    )
    creat = ss.series[0]
    assert [p.observation_id for p in creat.points] == ["dateonly", "period", "issued", "late"]
    assert creat.points[0].time == datetime(2024, 2, 1, tzinfo=UTC)
    assert all(p.time.tzinfo is not None for p in creat.points)
    assert [(s.observation_id, s.reason) for s in ss.skipped] == [("partial", SkipReason.NO_TIME)]


def test_unconvertible_unit_is_reported_not_dropped() -> None:
    ss = build_series([obs("a", "2160-0", 1.0), obs("b", "2160-0", 5.0, "mg/g", when="2024-02-01T00:00:00Z")])
    creat = ss.series[0]
    assert [p.observation_id for p in creat.points] == ["a"]
    assert [(s.observation_id, s.reason) for s in creat.skipped] == [("b", SkipReason.UNIT)]
    assert "mg/g" in creat.skipped[0].detail


def test_unknown_code_series_unit_is_the_majority_and_dimensional_units_convert() -> None:
    ss = build_series(
        [
            obs("a", "1975-2", 1.0, "mg/dL", when="2024-01-01T00:00:00Z"),
            obs("b", "1975-2", 1.2, "mg/dL", when="2024-02-01T00:00:00Z"),
            obs("c", "1975-2", 0.013, "g/L", when="2024-03-01T00:00:00Z"),
            obs("d", "1975-2", 20.0, "umol/L", when="2024-04-01T00:00:00Z"),  # needs a molar mass
        ]
    )
    bili = ss.series[0]
    assert (bili.analyte_key, bili.unit) == (None, "mg/dL")
    assert [p.value for p in bili.points] == pytest.approx([1.0, 1.2, 1.3])
    assert [s.reason for s in bili.skipped] == [SkipReason.UNIT]


def test_duplicates_collapse_and_are_reported() -> None:
    ss = build_series(
        [
            obs("a", "2345-7", 100.0),
            obs("b", "GLU", 100.0, system=EPIC),  # the same result through the local feed
            obs("c", "2345-7", 105.0),  # same time, different value: kept
        ]
    )
    glucose = ss.series[0]
    assert [p.observation_id for p in glucose.points] == ["a", "c"]
    assert [(s.observation_id, s.reason) for s in glucose.skipped] == [("b", SkipReason.DUPLICATE)]


def test_non_numeric_censored_and_idless_results_are_skipped() -> None:
    ss = build_series(
        [
            obs("s", "72166-2", None, valueCodeableConcept={"text": "Never smoker"}),
            obs("c", "14959-1", None, valueQuantity={"value": 3.0, "comparator": "<", "unit": "mg/g"}),
            obs(None, "2160-0", 1.0),
        ]
    )
    assert ss.series == ()
    assert sorted(s.reason for s in ss.skipped) == sorted(
        [SkipReason.NOT_NUMERIC, SkipReason.CENSORED, SkipReason.NO_ID]
    )


def test_reference_range_is_converted_to_series_unit() -> None:
    ss = build_series(
        [
            obs(
                "a",
                "2160-0",
                97.0,
                "umol/L",
                referenceRange=[
                    {"low": {"value": 53, "unit": "umol/L"}, "high": {"value": 115, "unit": "umol/L"}}
                ],
                interpretation=[{"coding": [{"code": "N"}]}],
            )
        ]
    )
    p = ss.series[0].points[0]
    assert p.reference_low == pytest.approx(53 / 88.42)
    assert p.reference_high == pytest.approx(115 / 88.42)
    assert p.interpretation == "N"


def test_version_is_recorded() -> None:
    ss = build_series([obs("a", "2160-0", 1.0, meta={"versionId": "3"})])
    assert ss.series[0].points[0].observation_version == "3"
    assert ss.series[0].points[0].reference == "Observation/a"


def test_mixed_subjects_raise() -> None:
    with pytest.raises(MixedSubjectsError):
        build_series([obs("a", "2160-0", 1.0), obs("b", "2160-0", 1.1, subject="Patient/p2")])


def test_window() -> None:
    ss = build_series(
        [obs(str(m), "2160-0", 1.0 + m / 10, when=f"2024-{m:02d}-01T00:00:00Z") for m in range(1, 7)]
    )
    w = ss.series[0].window(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 5, 1, tzinfo=UTC))
    assert [p.observation_id for p in w.points] == ["3", "4", "5"]
