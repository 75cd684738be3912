"""Pure lab helpers: CKD-EPI and its inverse, unit conversion, flags, code lookup, bundles."""

from __future__ import annotations

import pytest

from agent.cohort import ANALYTES, Analyte, Course, analyte_for_coding
from agent.cohort.bundles import WriteTally, put_transaction
from agent.cohort.codes import EPIC_LOCAL_LAB_SYSTEM, LOINC
from agent.cohort.labs import (
    course_sign,
    creatinine_for_egfr,
    egfr_ckd_epi_2021,
    interpretation,
    planned_value,
)
from agent.cohort.profiles import PROFILES, LabDialect, plan_for


def test_ckd_epi_2021_matches_published_values() -> None:
    # NKF calculator: 60-year-old, creatinine 1.0 mg/dL -> 86 (male), 64 (female).
    assert round(egfr_ckd_epi_2021(1.0, 60, female=False)) == 86
    assert round(egfr_ckd_epi_2021(1.0, 60, female=True)) == 64


@pytest.mark.parametrize("female", [True, False])
@pytest.mark.parametrize("egfr", [15.0, 45.0, 59.0, 90.0, 110.0])
def test_creatinine_for_egfr_inverts_ckd_epi(egfr: float, female: bool) -> None:
    creat = creatinine_for_egfr(egfr, 70, female)
    assert egfr_ckd_epi_2021(creat, 70, female) == pytest.approx(egfr, rel=1e-9)


def test_si_conversions() -> None:
    glucose = ANALYTES[Analyte.GLUCOSE].si
    creat = ANALYTES[Analyte.CREATININE].si
    a1c = ANALYTES[Analyte.HBA1C].si
    assert glucose
    assert creat
    assert a1c
    assert glucose.convert(180.16) == 10.0
    assert creat.convert(1.0) == 88
    assert a1c.convert(6.5) == 48  # the diagnostic threshold in both unit systems


def test_course_sign_is_clinical_direction() -> None:
    creat, egfr = ANALYTES[Analyte.CREATININE], ANALYTES[Analyte.EGFR]
    assert course_sign(creat, Course.WORSENING) == 1
    assert course_sign(egfr, Course.WORSENING) == -1
    assert course_sign(egfr, Course.IMPROVING) == 1
    assert course_sign(egfr, Course.STABLE) == 0


def test_planned_value_stays_within_bounds() -> None:
    hb = ANALYTES[Analyte.HEMOGLOBIN]
    assert planned_value(hb, 10.0, Course.IMPROVING, 50) == hb.ceiling
    assert planned_value(hb, 10.0, Course.WORSENING, 50) == hb.floor
    assert planned_value(hb, 10.0, Course.STABLE, 50) == 10.0


def test_interpretation_flags() -> None:
    assert interpretation(5.5, 3.5, 5.1) == "H"
    assert interpretation(3.0, 3.5, 5.1) == "L"
    assert interpretation(4.0, 3.5, 5.1) == "N"
    assert interpretation(45, 60, None) == "L"


def test_codings_map_back_to_analytes() -> None:
    assert analyte_for_coding(LOINC, "2160-0") is Analyte.CREATININE
    assert analyte_for_coding(LOINC, "14682-9") is Analyte.CREATININE
    assert analyte_for_coding(EPIC_LOCAL_LAB_SYSTEM, "A1C") is Analyte.HBA1C
    assert analyte_for_coding(LOINC, "0000-0") is None


def test_plans_rotate_profiles_courses_and_dialects() -> None:
    plans = [plan_for(i) for i in range(15)]
    assert {p.profile for p in plans} == set(PROFILES)
    assert {p.dialect for p in plans} == set(LabDialect)
    assert plan_for(3) == plan_for(3)


def test_put_transaction_and_tally() -> None:
    bundle = put_transaction(
        [{"resourceType": "Patient", "id": "a"}, {"resourceType": "Observation", "id": "b"}]
    )
    assert [e["request"] for e in bundle["entry"]] == [
        {"method": "PUT", "url": "Patient/a"},
        {"method": "PUT", "url": "Observation/b"},
    ]
    tally = WriteTally()
    tally.add(
        bundle, {"entry": [{"response": {"status": "201 Created"}}, {"response": {"status": "200 OK"}}]}
    )
    assert (tally.created, tally.updated, dict(tally.by_type)) == (1, 1, {"Patient": 1, "Observation": 1})
    with pytest.raises(ValueError, match="id"):
        put_transaction([{"resourceType": "Patient"}])
