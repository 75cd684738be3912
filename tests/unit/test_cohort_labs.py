"""Pure lab helpers: one analyte table, CKD-EPI and its inverse, SI forms, flags, code lookup,
course plans in the engine's terms, bundles."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from agent.testbed.cohort import ANALYTES, Analyte, Course, analyte_for_coding
from agent.testbed.cohort.bundles import WriteTally, put_transaction
from agent.testbed.cohort.codes import EPIC_LOCAL_LAB_SYSTEM, LOINC
from agent.testbed.cohort.courses import (
    DIASTOLIC_OFFSET,
    MIN_MULTIPLE,
    NORMOTENSIVE_SYSTOLIC,
    PLANS,
    CoursePlan,
    Move,
    Trajectory,
    distance_to_range,
    draw_kidney,
)
from agent.testbed.cohort.labs import creatinine_for_egfr, egfr_ckd_epi_2021, interpretation
from agent.testbed.cohort.profiles import COURSE_GROUPS, PROFILES, LabDialect, plan_for
from tools.labs import analytes as table
from tools.labs.analytes import GoodDirection


def threshold(analyte: Analyte, value: float) -> float:
    return analyte.row.stability.magnitude(value)


def test_ckd_epi_2021_matches_published_values() -> None:
    # NKF calculator: 60-year-old, creatinine 1.0 mg/dL -> 86 (male), 64 (female).
    assert round(egfr_ckd_epi_2021(1.0, 60, female=False)) == 86
    assert round(egfr_ckd_epi_2021(1.0, 60, female=True)) == 64


@pytest.mark.parametrize("female", [True, False])
@pytest.mark.parametrize("egfr", [15.0, 45.0, 59.0, 90.0, 110.0])
def test_creatinine_for_egfr_inverts_ckd_epi(egfr: float, female: bool) -> None:
    creat = creatinine_for_egfr(egfr, 70, female)
    assert egfr_ckd_epi_2021(creat, 70, female) == pytest.approx(egfr, rel=1e-9)


def test_one_analyte_table() -> None:
    # Keys, codes, units and ranges are the project table's; the cohort adds no codes of its own.
    for analyte, spec in ANALYTES.items():
        row = table.get_analyte(analyte.value)
        assert spec.row is row
        assert spec.unit == row.unit
        assert spec.reference == row.reference
        assert spec.code.code in row.loinc
        assert spec.local_code in row.local_codes
        if spec.si is not None:
            assert spec.si.code.code in row.loinc
    assert set(ANALYTES) == set(Analyte)
    assert Analyte.CHOLESTEROL.value == "cholesterol"
    with pytest.raises(ValueError, match="not a LOINC code"):
        replace(ANALYTES[Analyte.GLUCOSE], code=replace(ANALYTES[Analyte.GLUCOSE].code, code="2160-0"))


def test_si_forms_invert_the_table_conversions() -> None:
    glucose, creat, a1c = (ANALYTES[a] for a in (Analyte.GLUCOSE, Analyte.CREATININE, Analyte.HBA1C))
    assert glucose.report(180.16, si=True) == 10.0
    assert creat.report(1.0, si=True) == 88
    assert a1c.report(6.5, si=True) == 48  # the diagnostic threshold in both unit systems
    assert ANALYTES[Analyte.HEMOGLOBIN].report(12.34, si=True) == 123  # g/L, dimensional
    assert glucose.report(99.4, si=False) == 99
    for spec in ANALYTES.values():
        if spec.si is None:
            continue
        value = (spec.plausible[0] + spec.plausible[1]) / 2
        back = spec.row.to_canonical(spec.report(value, si=True), spec.si.unit)
        step = spec.row.to_canonical(10.0**-spec.si.decimals, spec.si.unit) - spec.row.to_canonical(
            0.0, spec.si.unit
        )
        assert abs(back - value) <= step / 2 + 1e-9, spec.analyte


def test_interpretation_flags() -> None:
    assert interpretation(5.5, 3.5, 5.1) == "H"
    assert interpretation(3.0, 3.5, 5.1) == "L"
    assert interpretation(4.0, 3.5, 5.1) == "N"
    assert interpretation(45, 60, None) == "L"


def test_codings_map_back_to_analytes() -> None:
    assert analyte_for_coding(LOINC, "2160-0") is Analyte.CREATININE
    assert analyte_for_coding(LOINC, "14682-9") is Analyte.CREATININE
    assert analyte_for_coding(EPIC_LOCAL_LAB_SYSTEM, "A1C") is Analyte.HBA1C
    assert analyte_for_coding(LOINC, "8867-4") is Analyte.HEART_RATE
    assert analyte_for_coding(LOINC, "3094-0") is None  # BUN: in the table, not generated
    assert analyte_for_coding(LOINC, "0000-0") is None


def test_plans_rotate_profiles_courses_and_dialects() -> None:
    plans = [plan_for(i) for i in range(15)]
    assert {p.profile for p in plans} == set(PROFILES)
    assert {p.dialect for p in plans} == set(LabDialect)
    assert plan_for(3) == plan_for(3)


# ---- courses in the engine's terms ----------------------------------------------------------


def corner_values(plan: CoursePlan) -> list[float]:
    values = list(plan.stable)
    for move in (plan.improving, plan.worsening):
        if move is not None:
            values += [v for corner in move.corners(plan.analyte) for v in corner]
    return values


def test_noise_is_at_most_a_sixth_of_the_threshold_wherever_values_are_planned() -> None:
    for analyte, plan in PLANS.items():
        for value in corner_values(plan):
            assert ANALYTES[analyte].noise.sd_at(value) <= threshold(analyte, value) / 6, (analyte, value)
    # Derived series: glucose from HbA1c, diastolic from systolic, eGFR from creatinine, BMI.
    for a1c in corner_values(PLANS[Analyte.HBA1C]):
        glucose = 28.7 * a1c - 46.7
        assert ANALYTES[Analyte.GLUCOSE].noise.sd_at(glucose) <= threshold(Analyte.GLUCOSE, glucose) / 6
    for egfr in (15.0, 30.0, 60.0, 97.0):
        assert ANALYTES[Analyte.EGFR].noise.sd_at(egfr) <= threshold(Analyte.EGFR, egfr) / 6
    assert ANALYTES[Analyte.DIASTOLIC_BP].noise.sd_at(80) <= threshold(Analyte.DIASTOLIC_BP, 80) / 6
    assert ANALYTES[Analyte.BMI].noise.sd_at(40) <= threshold(Analyte.BMI, 40) / 6


def test_moves_are_large_and_in_the_clinical_direction() -> None:
    # Glucose of a diabetic follows HbA1c (see the next test); its own plan is for the others.
    planned = {a for group in COURSE_GROUPS.values() for a in group} & set(PLANS) - {Analyte.GLUCOSE}
    assert planned == {Analyte.POTASSIUM, Analyte.HBA1C, Analyte.HEMOGLOBIN, Analyte.LDL,
                       Analyte.TRIGLYCERIDES, Analyte.SYSTOLIC_BP}  # fmt: skip
    for analyte in planned:
        plan = PLANS[analyte]
        row = analyte.row
        for course, move in ((Course.IMPROVING, plan.improving), (Course.WORSENING, plan.worsening)):
            assert move is not None, (analyte, course)
            for start, end in move.corners(analyte):
                assert abs(end - start) >= MIN_MULTIPLE * threshold(analyte, start), (analyte, start, end)
                if row.good_direction is GoodDirection.IN_RANGE:
                    before = distance_to_range(start, row.reference)
                    after = distance_to_range(end, row.reference)
                    if course is Course.IMPROVING:
                        assert after < before / 2, (analyte, start, end)  # inside or much nearer
                    else:
                        # outside, or farther, by well over the noise
                        assert after > before + threshold(analyte, start) / 2, (analyte, start, end)


def test_derived_series_move_with_their_source() -> None:
    # Glucose (ADAG from HbA1c) and diastolic BP (systolic / 2 + offset) must carry the course too.
    glucose = Analyte.GLUCOSE
    for move, improving in ((PLANS[Analyte.HBA1C].improving, True), (PLANS[Analyte.HBA1C].worsening, False)):
        assert move is not None
        for a1c0, a1c1 in move.corners(Analyte.HBA1C):
            g0, g1 = 28.7 * a1c0 - 46.7, 28.7 * a1c1 - 46.7
            assert abs(g1 - g0) >= MIN_MULTIPLE * threshold(glucose, g0)
            ref = glucose.row.reference
            assert (distance_to_range(g1, ref) < distance_to_range(g0, ref)) is improving
    dia = Analyte.DIASTOLIC_BP
    ref = dia.row.reference
    for move, improving in (
        (PLANS[Analyte.SYSTOLIC_BP].improving, True),
        (PLANS[Analyte.SYSTOLIC_BP].worsening, False),
    ):
        assert move is not None
        for s0, s1 in move.corners(Analyte.SYSTOLIC_BP):
            for offset in DIASTOLIC_OFFSET:
                d0, d1 = s0 / 2 + offset, s1 / 2 + offset
                assert abs(d1 - d0) >= MIN_MULTIPLE * threshold(dia, d0)
                assert (distance_to_range(d1, ref) < distance_to_range(d0, ref)) is improving
    for systolic in NORMOTENSIVE_SYSTOLIC:
        for offset in DIASTOLIC_OFFSET:
            assert distance_to_range(systolic / 2 + offset, ref) == 0


@pytest.mark.parametrize("course", list(Course))
@pytest.mark.parametrize("female", [True, False])
def test_kidney_courses_agree_in_creatinine_and_egfr(course: Course, female: bool) -> None:
    rng = random.Random(f"kidney:{course}:{female}")
    for _ in range(200):
        age0 = rng.uniform(45, 85)
        age1 = age0 + rng.uniform(2, 5)
        kidney = draw_kidney(rng, course, ckd=True, female=female, age_start=age0, age_end=age1)
        c0, c1 = kidney.creatinine_at(0, age0), kidney.creatinine_at(1, age1)
        e0, e1 = kidney.egfr_at(0, age0), kidney.egfr_at(1, age1)
        creat_t, egfr_t = threshold(Analyte.CREATININE, c0), threshold(Analyte.EGFR, e0)
        if course is Course.STABLE:
            assert e1 == pytest.approx(e0)
            assert abs(c1 - c0) < creat_t / 4  # creatinine follows age only
            continue
        sign = 1 if course is Course.WORSENING else -1  # creatinine rises as the kidney worsens
        assert sign * (c1 - c0) >= 2.5 * creat_t - 1e-9
        assert -sign * (e1 - e0) >= 2.5 * egfr_t - 1e-9
        assert min(c0, c1) >= 0.5
        assert max(c0, c1) <= 5.0
        assert min(e0, e1) >= 15
        assert max(e0, e1) <= 75


def test_a_plan_a_correct_engine_would_misread_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="no better direction"):
        CoursePlan(Analyte.BODY_WEIGHT, (60.0, 80.0), improving=Move((70.0, 80.0), (2.5, 3.0), -1))
    with pytest.raises(ValueError, match="is not improving"):
        CoursePlan(Analyte.LDL, (95.0, 130.0), improving=Move((150.0, 185.0), (4.5, 6.0), +1))
    with pytest.raises(ValueError, match="multiple"):
        CoursePlan(Analyte.LDL, (95.0, 130.0), improving=Move((150.0, 185.0), (1.5, 6.0), -1))
    # An in-range analyte moving inside its range: the engine reads that as stable.
    with pytest.raises(ValueError, match="neither nearer nor farther"):
        CoursePlan(Analyte.POTASSIUM, (4.0, 4.7), worsening=Move((3.6, 3.6), (2.0, 2.0), +1))
    with pytest.raises(ValueError, match="plausible band"):
        CoursePlan(Analyte.HEMOGLOBIN, (10.0, 11.0), worsening=Move((10.6, 11.4), (8.0, 9.0), -1))
    with pytest.raises(ValueError, match="no worsening course"):
        PLANS[Analyte.SODIUM].draw(random.Random(1), Course.WORSENING)
    assert Trajectory(1.0, 3.0).at(0.5) == 2.0


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
