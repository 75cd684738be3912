"""The cohort's planned courses are what the trend engine finds (no server needed).

The generated JSON goes through the same path as a live record: R4B ``Observation`` models,
``tools.labs.series.build_series`` (LOINC, local codes and SI units into one series per
analyte) and ``tools.trends.compute_trend``. Every planned series must come out in the
planned direction, so this fails when either the generator or the engine breaks.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import pytest
from fhir.resources.R4B.observation import Observation

from agent.testbed.cohort import Cohort, CohortPatient, Course, LabDialect, generate_cohort
from tools.labs.series import SeriesSet, build_series
from tools.trends import Direction, compute_trend

EXPECTED: dict[Course, Direction] = {
    Course.STABLE: "stable",
    Course.IMPROVING: "improved",
    Course.WORSENING: "worsened",
}
CASES = [(7, 12), (7, 30), (11, 12), (11, 30)]


@cache
def cohort(seed: int, patients: int) -> Cohort:
    # Lab-report documents add points only in test_cohort_labdocs.py; here the FHIR feed alone.
    return generate_cohort(patients, seed, lab_documents=False)


def series_set(patient: CohortPatient) -> SeriesSet:
    observations = [
        Observation.model_validate(r) for r in patient.resources if r["resourceType"] == "Observation"
    ]
    return build_series(observations)


def engine_verdicts(c: Cohort) -> list[tuple[str, str, Course, Direction, str]]:
    """(patient, analyte, planned course, engine direction, engine reason) for every series."""
    out = []
    for p in c.patients:
        found = series_set(p)
        # Every result is read: no unknown code, no unconvertible unit (local and SI dialects).
        assert not found.skipped, (p.id, found.skipped)
        assert {s.analyte_key for s in found.series} == {a.value for a in c.truth[p.id]}, p.id
        for analyte, course in c.truth[p.id].items():
            s = found.by_analyte(analyte.value)
            assert s is not None
            assert not s.skipped, (p.id, analyte, s.skipped)
            trend = compute_trend(s)
            out.append((p.id, analyte.value, course, trend.direction, trend.direction_reason))
    return out


@pytest.mark.parametrize(("seed", "patients"), CASES)
def test_engine_finds_every_planned_course(seed: int, patients: int) -> None:
    verdicts = engine_verdicts(cohort(seed, patients))
    wrong = [v for v in verdicts if EXPECTED[v[2]] != v[3]]
    assert not wrong, "\n".join(f"{pid} {a}: planned {c}, engine {d} ({why})" for pid, a, c, d, why in wrong)
    # Not vacuous: an engine that always answered "stable" (or never did) would fail.
    courses = Counter(v[2] for v in verdicts)
    assert courses[Course.IMPROVING] >= patients * 2
    assert courses[Course.WORSENING] >= patients * 2
    assert courses[Course.STABLE] >= patients * 8


@pytest.mark.parametrize(("seed", "patients"), CASES)
def test_unusual_dialects_are_among_the_checked_patients(seed: int, patients: int) -> None:
    dialects = {p.dialect for p in cohort(seed, patients).patients}
    assert dialects == set(LabDialect)


def test_a_flipped_course_is_caught() -> None:
    # The check above compares against the plan, not against itself: a wrong plan fails it.
    c = cohort(7, 12)
    pid = c.patients[0].id
    analyte, course = next((a, k) for a, k in c.truth[pid].items() if k is not Course.STABLE)
    flipped = Course.IMPROVING if course is Course.WORSENING else Course.WORSENING
    truth = {**c.truth, pid: {**c.truth[pid], analyte: flipped}}
    verdicts = engine_verdicts(c.model_copy(update={"truth": truth}))
    wrong = [v for v in verdicts if EXPECTED[v[2]] != v[3]]
    assert [(v[0], v[1]) for v in wrong] == [(pid, analyte.value)]
