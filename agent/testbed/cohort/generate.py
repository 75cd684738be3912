"""`generate_cohort`: a deterministic synthetic cohort with planned longitudinal courses.

Pure: no clock, no I/O. A patient's randomness comes from its own RNG seeded by
(seed, index), so patient k is the same in a cohort of 12 and one of 300.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.testbed.cohort import resources as fhir
from agent.testbed.cohort.codes import CONDITIONS, MEDICATIONS, ConditionKind
from agent.testbed.cohort.courses import (
    BMI_RANGE,
    DIASTOLIC_OFFSET,
    NORMOTENSIVE_SYSTOLIC,
    PLANS,
    KidneyCourse,
    Trajectory,
    draw_kidney,
)
from agent.testbed.cohort.demographics import Demographics, cohort_rng, draw_demographics, mrn_for
from agent.testbed.cohort.labdocs import LabHistory, PlannedLabDocument, plan_lab_documents
from agent.testbed.cohort.labs import ANALYTES, Analyte, Course, egfr_ckd_epi_2021
from agent.testbed.cohort.profiles import LabDialect, PatientPlan, plan_for

__all__ = ["REFERENCE_DATE", "Cohort", "CohortPatient", "generate_cohort", "patient_id"]

# The cohort's "today": every date is anchored here, never to the wall clock.
REFERENCE_DATE = date(2026, 6, 30)
MAX_PATIENTS = 10_000

_A = Analyte
_C = ConditionKind


class CohortPatient(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    mrn: str
    profile: str
    dialect: LabDialect
    conditions: tuple[ConditionKind, ...]
    # FHIR R4 JSON resources, Patient first; ids are deterministic.
    resources: tuple[dict[str, Any], ...]


class Cohort(BaseModel):
    """A generated cohort and its ground truth: `truth[patient_id][analyte]` is the planned course,
    `lab_documents[patient_id]` what the patient's lab-report PDFs print (see `labdocs.py`)."""

    model_config = ConfigDict(frozen=True)

    seed: int
    reference_date: date
    patients: tuple[CohortPatient, ...]
    truth: dict[str, dict[Analyte, Course]] = Field(default_factory=dict)
    lab_documents: dict[str, tuple[PlannedLabDocument, ...]] = Field(default_factory=dict)

    def resources(self) -> Iterator[dict[str, Any]]:
        for p in self.patients:
            yield from p.resources

    def counts_by_type(self) -> dict[str, int]:
        return dict(sorted(Counter(r["resourceType"] for r in self.resources()).items()))

    def to_json(self) -> str:
        return self.model_dump_json()


def patient_id(seed: int, index: int) -> str:
    return f"ca-{seed}-{index}"


def generate_cohort(
    patients: int, seed: int, *, reference_date: date = REFERENCE_DATE, lab_documents: bool = True
) -> Cohort:
    """``lab_documents``: attach lab-report PDFs (DocumentReference, Binary) to every patient; they
    take most of the time (about 0.2 s a patient) and change nothing else."""
    if not 0 <= patients <= MAX_PATIENTS:
        raise ValueError(f"patients must be between 0 and {MAX_PATIENTS}")
    if seed < 0:
        raise ValueError("seed must be >= 0 (it is part of resource ids)")
    built = [_PatientBuilder(seed, i, reference_date).build(lab_documents) for i in range(patients)]
    return Cohort(
        seed=seed,
        reference_date=reference_date,
        patients=tuple(p for p, _, _ in built),
        truth={p.id: truth for p, truth, _ in built},
        lab_documents={p.id: docs for p, _, docs in built if docs},
    )


@dataclass
class _Visit:
    index: int
    start: datetime
    years: float  # since the first visit
    fraction: float  # of the follow-up, 0 at the first visit and 1 at the last
    age: float


@dataclass
class _PatientBuilder:
    seed: int
    index: int
    reference_date: date
    rng: random.Random = field(init=False)
    plan: PatientPlan = field(init=False)
    demo: Demographics = field(init=False)
    pid: str = field(init=False)
    _counters: Counter[str] = field(default_factory=Counter, init=False)
    _planned: dict[Analyte, Trajectory] = field(default_factory=dict, init=False)
    _kidney: KidneyCourse = field(init=False)
    _diastolic_offset: float = field(init=False)
    _weight: float = field(init=False)
    _measured: set[Analyte] = field(default_factory=set, init=False)
    _visit_days: tuple[date, int] = field(init=False)  # first visit day, follow-up span in days

    def __post_init__(self) -> None:
        self.rng = cohort_rng(self.seed, self.index)
        self.plan = plan_for(self.index)
        self.demo = draw_demographics(self.rng, self.reference_date)
        self.pid = patient_id(self.seed, self.index)

    def _id(self, kind: str) -> str:
        k = self._counters[kind]
        self._counters[kind] += 1
        return f"{self.pid}-{kind}-{k}"

    def _has(self, condition: ConditionKind) -> bool:
        return self.plan.profile.has(condition)

    def build(
        self, lab_documents: bool = True
    ) -> tuple[CohortPatient, dict[Analyte, Course], tuple[PlannedLabDocument, ...]]:
        visits = self._visits()
        self._draw_courses(visits)
        out: list[dict[str, Any]] = [
            fhir.patient(self.pid, mrn_for(self.seed, self.index), self.demo),
        ]
        first_day = visits[0].start.date()
        for kind in self.plan.profile.conditions:
            onset = first_day - timedelta(days=self.rng.randint(180, 8 * 365))
            out.append(fhir.condition(self._id("cond"), self.pid, CONDITIONS[kind], onset))
        for med, started_later in self.plan.medications():
            authored = visits[len(visits) // 2 if started_later else 0].start.date()
            out.append(fhir.medication_request(self._id("med"), self.pid, MEDICATIONS[med], authored))
        for visit in visits:
            eid = self._id("enc")
            out.append(fhir.encounter(eid, self.pid, visit.start))
            out.extend(self._vitals(eid, visit))
            out.extend(self._labs(eid, visit))
        documents: tuple[PlannedLabDocument, ...] = ()
        if lab_documents:
            history = LabHistory(
                self.seed, self.index, self.pid, mrn_for(self.seed, self.index), self.demo,
                self.plan.dialect, tuple(out), self.extra_draw,
            )  # fmt: skip
            doc_resources, documents = plan_lab_documents(history)
            out.extend(doc_resources)
        patient = CohortPatient(
            id=self.pid,
            mrn=mrn_for(self.seed, self.index),
            profile=self.plan.profile.name,
            dialect=self.plan.dialect,
            conditions=self.plan.profile.conditions,
            resources=tuple(out),
        )
        truth = {a: self.plan.course(a) for a in Analyte if a in self._measured}
        return patient, truth, documents

    # ---- schedule ----

    def _visits(self) -> list[_Visit]:
        """Ambulatory follow-up every 3-6 months over 2-5 years, on weekdays, ending by the
        reference date."""
        span_days = int(self.rng.uniform(2.0, 5.0) * 365.25)
        first = self.reference_date - timedelta(days=span_days)
        days: list[date] = []
        day = first
        while day <= self.reference_date:
            # Weekend visits move to Monday.
            shifted = day + timedelta(days=(7 - day.weekday()) % 7 if day.weekday() >= 5 else 0)
            if shifted <= self.reference_date:
                days.append(shifted)
            day += timedelta(days=self.rng.randint(90, 180))
        visits = []
        span = (days[-1] - days[0]).days
        self._visit_days = (days[0], span)
        for i, d in enumerate(days):
            start = datetime.combine(d, time(self.rng.randint(8, 15), self.rng.choice((0, 15, 30, 45))), UTC)
            elapsed = (d - days[0]).days
            visits.append(_Visit(i, start, elapsed / 365.25, elapsed / span, self.demo.age_at(d)))
        return visits

    # ---- numbers ----

    def _draw_courses(self, visits: list[_Visit]) -> None:
        """Each series' noise-free course over the follow-up (see `courses.py`)."""
        course, rng, planned = self.plan.course, self.rng, self._planned
        self._kidney = draw_kidney(
            rng, course(_A.EGFR), ckd=self._has(_C.CKD3), female=self.demo.female,
            age_start=visits[0].age, age_end=visits[-1].age,
        )  # fmt: skip
        drawn = [_A.POTASSIUM, _A.SODIUM, _A.MAGNESIUM, _A.ALBUMIN, _A.HDL, _A.HEART_RATE]
        drawn.append(_A.HBA1C if self._has(_C.T2DM) else _A.GLUCOSE)
        if self._has(_C.IRON_DEFICIENCY_ANAEMIA):
            drawn.append(_A.HEMOGLOBIN)
        if self._has(_C.HYPERLIPIDAEMIA):
            drawn += [_A.LDL, _A.TRIGLYCERIDES]
        if self._has(_C.HYPERTENSION):
            drawn.append(_A.SYSTOLIC_BP)
        for analyte in drawn:
            planned[analyte] = PLANS[analyte].draw(rng, course(analyte))
        if not self._has(_C.HYPERTENSION):
            systolic = rng.uniform(*NORMOTENSIVE_SYSTOLIC)
            planned[_A.SYSTOLIC_BP] = Trajectory(systolic, systolic)
        self._diastolic_offset = rng.uniform(*DIASTOLIC_OFFSET)
        self._weight = rng.uniform(*BMI_RANGE) * self.demo.height_m**2

    def _at(self, analyte: Analyte, fraction: float) -> float:
        return self._planned[analyte].at(fraction)

    def _noisy(self, analyte: Analyte, true_value: float, rng: random.Random | None = None) -> float:
        return true_value + (rng or self.rng).gauss(0.0, ANALYTES[analyte].noise.sd_at(true_value))

    def _lab(self, eid: str, visit: _Visit, analyte: Analyte, value: float) -> dict[str, Any]:
        self._measured.add(analyte)
        # Drawn a quarter of an hour into the visit.
        return fhir.lab_observation(
            self._id("obs"), self.pid, eid, ANALYTES[analyte], value,
            dialect=self.plan.dialect, when=visit.start + timedelta(minutes=15),
        )  # fmt: skip

    def _labs(self, eid: str, visit: _Visit) -> list[dict[str, Any]]:
        values = self._lab_values(visit.fraction, visit.age, self.rng, extras=visit.index % 2 == 0)
        return [self._lab(eid, visit, analyte, value) for analyte, value in values]

    def _lab_values(
        self, fraction: float, age: float, rng: random.Random, *, extras: bool
    ) -> list[tuple[Analyte, float]]:
        """One draw's lab results (canonical unit, in reporting order) at ``fraction`` of the
        follow-up; ``extras`` adds magnesium and albumin (every other visit in CKD or diabetes)."""
        out: list[tuple[Analyte, float]] = []

        def lab(analyte: Analyte, true_value: float) -> None:
            out.append((analyte, self._noisy(analyte, true_value, rng)))

        # Kidney: the lab measures creatinine (with noise) and reports the eGFR it computes
        # from that creatinine, as real labs do.
        female = self.demo.female
        true_creat = self._kidney.creatinine_at(fraction, age)
        creat = round(self._noisy(_A.CREATININE, true_creat, rng), ANALYTES[_A.CREATININE].decimals)
        out.append((_A.CREATININE, creat))
        out.append((_A.EGFR, egfr_ckd_epi_2021(creat, age, female)))
        lab(_A.POTASSIUM, self._at(_A.POTASSIUM, fraction))
        lab(_A.SODIUM, self._at(_A.SODIUM, fraction))
        if self._has(_C.T2DM):
            a1c = self._at(_A.HBA1C, fraction)
            lab(_A.HBA1C, a1c)
            # Glucose follows control: estimated average glucose (ADAG), 28.7 * A1c - 46.7 mg/dL.
            lab(_A.GLUCOSE, 28.7 * a1c - 46.7)
        else:
            lab(_A.GLUCOSE, self._at(_A.GLUCOSE, fraction))
        if self._has(_C.IRON_DEFICIENCY_ANAEMIA):
            lab(_A.HEMOGLOBIN, self._at(_A.HEMOGLOBIN, fraction))
        if self._has(_C.HYPERLIPIDAEMIA):
            # Lipid panel at every visit while a statin is titrated; total = LDL + HDL + TG/5 (Friedewald).
            ldl, hdl, tg = (self._at(a, fraction) for a in (_A.LDL, _A.HDL, _A.TRIGLYCERIDES))
            lab(_A.CHOLESTEROL, ldl + hdl + tg / 5)
            lab(_A.LDL, ldl)
            lab(_A.HDL, hdl)
            lab(_A.TRIGLYCERIDES, tg)
        if extras and (self._has(_C.CKD3) or self._has(_C.T2DM)):
            lab(_A.MAGNESIUM, self._at(_A.MAGNESIUM, fraction))
            lab(_A.ALBUMIN, self._at(_A.ALBUMIN, fraction))
        return out

    def extra_draw(self, when: datetime, rng: random.Random) -> list[tuple[Analyte, float]]:
        """Lab results of a draw outside the visits (an outside lab's) at ``when``: the same planned
        courses and noise model as the visits' labs, noise from ``rng`` so that the patient's own
        stream, and with it every FHIR resource, is untouched. ``when`` lies within the follow-up."""
        first, span = self._visit_days
        elapsed = (when.date() - first).days
        if not 0 <= elapsed <= span:
            raise ValueError("an extra draw lies within the follow-up")
        return self._lab_values(elapsed / span, self.demo.age_at(when.date()), rng, extras=True)

    def _vitals(self, eid: str, visit: _Visit) -> list[dict[str, Any]]:
        when = visit.start + timedelta(minutes=5)
        systolic = self._at(_A.SYSTOLIC_BP, visit.fraction)
        diastolic = systolic / 2 + self._diastolic_offset
        weight = round(self._noisy(_A.BODY_WEIGHT, self._weight), ANALYTES[_A.BODY_WEIGHT].decimals)
        heart_rate = self._noisy(_A.HEART_RATE, self._at(_A.HEART_RATE, visit.fraction))
        self._measured.update((_A.SYSTOLIC_BP, _A.DIASTOLIC_BP, _A.BODY_WEIGHT, _A.BMI, _A.HEART_RATE))
        return [
            fhir.blood_pressure(
                self._id("obs"), self.pid, eid,
                (ANALYTES[_A.SYSTOLIC_BP], self._noisy(_A.SYSTOLIC_BP, systolic)),
                (ANALYTES[_A.DIASTOLIC_BP], self._noisy(_A.DIASTOLIC_BP, diastolic)),
                when,
            ),
            fhir.vital_observation(self._id("obs"), self.pid, eid, ANALYTES[_A.BODY_WEIGHT], weight, when),
            fhir.vital_observation(
                self._id("obs"), self.pid, eid, ANALYTES[_A.BMI], weight / self.demo.height_m**2, when
            ),
            fhir.vital_observation(self._id("obs"), self.pid, eid, ANALYTES[_A.HEART_RATE], heart_rate, when),
        ]  # fmt: skip
