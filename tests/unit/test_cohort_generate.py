"""generate_cohort: determinism, R4B validity, referential integrity, dialects, planned courses."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from datetime import date, datetime
from functools import cache
from typing import Any

import numpy as np
import pytest
from fhir.resources.R4B import get_fhir_model_class

from agent.testbed.cohort import (
    ANALYTES,
    REFERENCE_DATE,
    Analyte,
    Cohort,
    CohortPatient,
    Course,
    LabDialect,
    analyte_for_coding,
    generate_cohort,
)
from agent.testbed.cohort.codes import EPIC_LOCAL_LAB_SYSTEM, LOINC, MRN_SYSTEM

Series = list[tuple[datetime, float]]

# Written out here rather than taken from the specs, so a sign slip there cannot cancel out:
# the analytes whose value falls as the patient gets worse.
FALLS_WHEN_WORSE = {Analyte.EGFR, Analyte.HEMOGLOBIN, Analyte.HDL, Analyte.SODIUM, Analyte.MAGNESIUM,
                    Analyte.ALBUMIN}  # fmt: skip


def expected_sign(analyte: Analyte, course: Course) -> int:
    worse = -1 if analyte in FALLS_WHEN_WORSE else 1
    return worse if course is Course.WORSENING else -worse


@cache
def cohort(patients: int = 12, seed: int = 7) -> Cohort:
    # FHIR resources and courses only: lab-report documents change neither (test_cohort_labdocs.py).
    return generate_cohort(patients, seed, lab_documents=False)


def observations(patient: CohortPatient) -> list[dict[str, Any]]:
    return [r for r in patient.resources if r["resourceType"] == "Observation"]


def series(patient: CohortPatient) -> dict[Analyte, Series]:
    """Every analyte's (time, value in the canonical unit) points, whatever the dialect."""
    out: dict[Analyte, Series] = {}
    for obs in observations(patient):
        when = datetime.fromisoformat(obs["effectiveDateTime"])
        parts = [(c["code"], c["valueQuantity"]) for c in obs.get("component", [])]
        for code, quantity in parts or [(obs["code"], obs["valueQuantity"])]:
            coding = code["coding"][0]
            analyte = analyte_for_coding(coding["system"], coding["code"])
            if analyte is None:
                continue
            value = analyte.row.to_canonical(float(quantity["value"]), quantity["code"])
            out.setdefault(analyte, []).append((when, value))
    return out


def threshold(analyte: Analyte, points: Series) -> float:
    """The analyte table's stability threshold at the first value."""
    return analyte.row.stability.magnitude(points[0][1])


def fitted_change(points: Series) -> float:
    """Least-squares slope times the follow-up span: the trend, robust to a noisy endpoint."""
    t0 = points[0][0]
    x = np.array([(t - t0).days / 365.25 for t, _ in points])
    y = np.array([v for _, v in points])
    return float(np.polyfit(x, y, 1)[0] * (x[-1] - x[0]))


def test_same_seed_gives_byte_identical_json() -> None:
    assert generate_cohort(12, 7).to_json() == generate_cohort(12, 7).to_json()


def test_different_seed_gives_a_different_cohort() -> None:
    a, b = generate_cohort(12, 7), generate_cohort(12, 8)
    assert a.to_json() != b.to_json()
    assert {p.id for p in a.patients}.isdisjoint(p.id for p in b.patients)
    assert {p.mrn for p in a.patients}.isdisjoint(p.mrn for p in b.patients)


def test_cohorts_are_prefix_stable() -> None:
    # Patient k does not depend on cohort size: growing a seeded cohort leaves the first ones alone.
    assert generate_cohort(5, 7, lab_documents=False).patients == cohort(12, 7).patients[:5]


def test_dates_follow_the_reference_date_not_the_clock() -> None:
    shifted = generate_cohort(2, 7, reference_date=date(2030, 1, 15))
    last = max(r["effectiveDateTime"] for r in shifted.resources() if r["resourceType"] == "Observation")
    assert last.startswith(("2030-01", "2029-12", "2029-11", "2029-10", "2029-09", "2029-08", "2029-07"))
    for r in cohort().resources():
        if r["resourceType"] == "Encounter":
            assert date.fromisoformat(r["period"]["start"][:10]) <= REFERENCE_DATE


def test_every_resource_validates_as_r4b() -> None:
    for resource in cohort(12, 7).resources():
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_ids_are_deterministic_unique_and_references_resolve() -> None:
    c = cohort()
    keys = [f"{r['resourceType']}/{r['id']}" for r in c.resources()]
    assert len(keys) == len(set(keys))
    assert all(r["id"].startswith(f"ca-7-{i}") for i, p in enumerate(c.patients) for r in p.resources)
    known = set(keys)
    for r in c.resources():
        for field in ("subject", "encounter"):
            if field in r:
                assert r[field]["reference"] in known


def test_patients_have_a_typed_mrn_and_a_plausible_age() -> None:
    c = cohort()
    for p in c.patients:
        patient = p.resources[0]
        assert patient["resourceType"] == "Patient"
        assert patient["id"] == p.id
        (ident,) = patient["identifier"]
        assert ident["type"]["coding"][0]["code"] == "MR"
        assert (ident["system"], ident["value"]) == (MRN_SYSTEM, p.mrn)
        age = (REFERENCE_DATE - date.fromisoformat(patient["birthDate"])).days / 365.25
        assert 45 <= age <= 86
    assert len({p.mrn for p in c.patients}) == len(c.patients)


def test_conditions_carry_snomed_and_icd10_per_profile() -> None:
    c = cohort()
    for p in c.patients:
        conditions = [r for r in p.resources if r["resourceType"] == "Condition"]
        assert len(conditions) == len(p.conditions)
        for cond in conditions:
            systems = {coding["system"] for coding in cond["code"]["coding"]}
            assert systems == {"http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"}
    profiles = Counter(p.profile for p in c.patients)
    assert len(profiles) == 5


def test_follow_up_is_two_to_five_years_of_visits_every_three_to_six_months() -> None:
    for p in cohort(30, 7).patients:
        starts = sorted(
            date.fromisoformat(r["period"]["start"][:10])
            for r in p.resources
            if r["resourceType"] == "Encounter"
        )
        span = (starts[-1] - starts[0]).days / 365.25
        assert 1.5 <= span <= 5.0
        gaps = [(b - a).days for a, b in itertools.pairwise(starts)]
        # Weekend visits move to Monday, so gaps stretch by up to two days either way.
        assert all(88 <= g <= 182 for g in gaps), gaps
        assert all(d.weekday() < 5 for d in starts)


def test_lab_flags_agree_with_their_reference_range() -> None:
    checked = 0
    for p in cohort().patients:
        for obs in observations(p):
            if "referenceRange" not in obs:
                continue
            value = obs["valueQuantity"]["value"]
            rng = obs["referenceRange"][0]
            flag = obs["interpretation"][0]["coding"][0]["code"]
            expected = "N"
            if "high" in rng and value > rng["high"]["value"]:
                expected = "H"
            elif "low" in rng and value < rng["low"]["value"]:
                expected = "L"
            assert flag == expected
            assert rng.get("low", rng.get("high"))["unit"] == obs["valueQuantity"]["unit"]
            checked += 1
    assert checked > 500


def test_local_code_patient_has_no_loinc_labs() -> None:
    local = [p for p in cohort().patients if p.dialect is LabDialect.EPIC_LOCAL]
    assert local
    for p in local:
        labs = [o for o in observations(p) if o["category"][0]["coding"][0]["code"] == "laboratory"]
        codes = {c["code"] for o in labs for c in o["code"]["coding"]}
        assert {"GLU", "K", "A1C", "MG", "CREAT"} <= codes
        assert all(c["system"] == EPIC_LOCAL_LAB_SYSTEM for o in labs for c in o["code"]["coding"])


def test_si_patient_reports_mmol_glucose_and_umol_creatinine() -> None:
    si = [p for p in cohort().patients if p.dialect is LabDialect.SI]
    assert si
    for p in si:
        units = {
            o["code"]["coding"][0]["code"]: o["valueQuantity"]["unit"]
            for o in observations(p)
            if o["code"]["coding"][0]["system"] == LOINC and "valueQuantity" in o
        }
        assert units["14749-6"] == "mmol/L"  # glucose, moles/volume
        assert units["14682-9"] == "umol/L"  # creatinine, moles/volume
        assert "2345-7" not in units
        assert "2160-0" not in units
        # Values are SI magnitudes, not relabelled conventional numbers.
        creat = [
            o["valueQuantity"]["value"]
            for o in observations(p)
            if o["code"]["coding"][0]["code"] == "14682-9"
        ]
        assert min(creat) > 40


def test_every_course_appears_for_the_key_analytes() -> None:
    truth = cohort(15, 7).truth
    for analyte in (Analyte.CREATININE, Analyte.HBA1C, Analyte.HEMOGLOBIN, Analyte.LDL, Analyte.SYSTOLIC_BP):
        courses = {t[analyte] for t in truth.values() if analyte in t}
        assert courses == set(Course), analyte


def test_truth_covers_exactly_the_measured_analytes() -> None:
    c = cohort()
    for p in c.patients:
        assert set(c.truth[p.id]) == set(series(p))


@pytest.mark.parametrize("seed", [7, 11])
def test_planned_courses_are_visible_in_the_numbers(seed: int) -> None:
    # In units of the analyte's stability threshold, independently of the trend engine: a fitted
    # line (not the engine's baseline rule) over every point.
    c = cohort(30, seed)
    directional: list[float] = []
    for p in c.patients:
        points = series(p)
        for analyte, course in c.truth[p.id].items():
            change = fitted_change(points[analyte]) / threshold(analyte, points[analyte])
            if course is Course.STABLE:
                assert abs(change) < 1, (p.id, analyte, change)  # rounding: Mg to 0.1 of 0.2
            else:
                # Signed so that positive means "moved the planned way" (worsening eGFR falls).
                signed = change * expected_sign(analyte, course)
                assert signed > 1.5, (p.id, analyte, course, change)
                directional.append(signed)
    assert float(np.median(directional)) > 2.5


def test_worsening_creatinine_rises_by_twice_the_kdigo_step() -> None:
    c = cohort(30, 7)
    rises = [
        fitted_change(series(p)[Analyte.CREATININE])
        for p in c.patients
        if c.truth[p.id].get(Analyte.CREATININE) is Course.WORSENING
    ]
    assert len(rises) >= 4
    assert all(r >= 2 * 0.3 for r in rises), rises  # KDIGO 2012 AKI: a rise of 0.3 mg/dL


def test_values_are_physiologically_plausible() -> None:
    for seed in (7, 11):
        for p in cohort(30, seed).patients:
            for analyte, points in series(p).items():
                low, high = ANALYTES[analyte].plausible
                assert all(low <= v <= high for _, v in points), (p.id, analyte, points)


def test_a_few_hundred_patients_generate_in_seconds() -> None:
    started = time.perf_counter()
    big = generate_cohort(300, 1, lab_documents=False)  # documents: about 0.2 s a patient more
    assert time.perf_counter() - started < 15
    assert len(big.patients) == 300


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="seed"):
        generate_cohort(1, -1)
    with pytest.raises(ValueError, match="patients"):
        generate_cohort(-1, 1)
