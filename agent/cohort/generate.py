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

from agent.cohort import resources as fhir
from agent.cohort.codes import CONDITIONS, MEDICATIONS, ConditionKind
from agent.cohort.demographics import Demographics, draw_demographics, mrn_for
from agent.cohort.labs import (
    ANALYTES,
    Analyte,
    Course,
    creatinine_for_egfr,
    egfr_ckd_epi_2021,
    planned_value,
)
from agent.cohort.profiles import LabDialect, PatientPlan, plan_for

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
    """A generated cohort and its ground truth: `truth[patient_id][analyte]` is the planned course."""

    model_config = ConfigDict(frozen=True)

    seed: int
    reference_date: date
    patients: tuple[CohortPatient, ...]
    truth: dict[str, dict[Analyte, Course]] = Field(default_factory=dict)

    def resources(self) -> Iterator[dict[str, Any]]:
        for p in self.patients:
            yield from p.resources

    def counts_by_type(self) -> dict[str, int]:
        return dict(sorted(Counter(r["resourceType"] for r in self.resources()).items()))

    def to_json(self) -> str:
        return self.model_dump_json()


def patient_id(seed: int, index: int) -> str:
    return f"ca-{seed}-{index}"


def generate_cohort(patients: int, seed: int, *, reference_date: date = REFERENCE_DATE) -> Cohort:
    if not 0 <= patients <= MAX_PATIENTS:
        raise ValueError(f"patients must be between 0 and {MAX_PATIENTS}")
    if seed < 0:
        raise ValueError("seed must be >= 0 (it is part of resource ids)")
    built = [_PatientBuilder(seed, i, reference_date).build() for i in range(patients)]
    return Cohort(
        seed=seed,
        reference_date=reference_date,
        patients=tuple(p for p, _ in built),
        truth={p.id: truth for p, truth in built},
    )


@dataclass
class _Visit:
    index: int
    start: datetime
    years: float  # since the first visit
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
    _baseline: dict[Analyte, float] = field(default_factory=dict, init=False)
    _measured: set[Analyte] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        # A string seed goes through SHA-512: stable across processes and Python versions.
        self.rng = random.Random(f"chartagent-cohort:{self.seed}:{self.index}")
        self.plan = plan_for(self.index)
        self.demo = draw_demographics(self.rng, self.reference_date)
        self.pid = patient_id(self.seed, self.index)

    def _id(self, kind: str) -> str:
        k = self._counters[kind]
        self._counters[kind] += 1
        return f"{self.pid}-{kind}-{k}"

    def _has(self, condition: ConditionKind) -> bool:
        return self.plan.profile.has(condition)

    def build(self) -> tuple[CohortPatient, dict[Analyte, Course]]:
        visits = self._visits()
        self._draw_baselines()
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
        patient = CohortPatient(
            id=self.pid,
            mrn=mrn_for(self.seed, self.index),
            profile=self.plan.profile.name,
            dialect=self.plan.dialect,
            conditions=self.plan.profile.conditions,
            resources=tuple(out),
        )
        truth = {a: self.plan.course(a) for a in Analyte if a in self._measured}
        return patient, truth

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
        for i, d in enumerate(days):
            start = datetime.combine(d, time(self.rng.randint(8, 15), self.rng.choice((0, 15, 30, 45))), UTC)
            visits.append(_Visit(i, start, (d - days[0]).days / 365.25, self.demo.age_at(d)))
        return visits

    # ---- numbers ----

    def _uniform(self, by_course: dict[Course, tuple[float, float]], course: Course) -> float:
        low, high = by_course[course]
        return self.rng.uniform(low, high)

    def _draw_baselines(self) -> None:
        """Starting values, chosen per course so that the planned change stays in range."""
        S, W, I = Course.STABLE, Course.WORSENING, Course.IMPROVING  # noqa: E741
        course = self.plan.course
        b = self._baseline
        if self._has(_C.CKD3):
            b[_A.EGFR] = self._uniform({S: (35, 55), W: (44, 55), I: (30, 36)}, course(_A.EGFR))
            b[_A.POTASSIUM] = self._uniform(
                {S: (4.3, 4.9), W: (4.5, 4.8), I: (5.0, 5.4)}, course(_A.POTASSIUM)
            )
        else:
            b[_A.EGFR] = self.rng.uniform(75, 95)
            b[_A.POTASSIUM] = self.rng.uniform(3.9, 4.6)
        if self._has(_C.T2DM):
            b[_A.HBA1C] = self._uniform({S: (6.8, 7.6), W: (7.0, 7.8), I: (8.6, 9.6)}, course(_A.HBA1C))
        else:
            b[_A.GLUCOSE] = self.rng.uniform(82, 98)
        if self._has(_C.IRON_DEFICIENCY_ANAEMIA):
            b[_A.HEMOGLOBIN] = self._uniform(
                {S: (10.0, 11.0), W: (10.4, 11.2), I: (9.2, 10.4)}, course(_A.HEMOGLOBIN)
            )
        b[_A.LDL] = self._uniform({S: (95, 125), W: (115, 145), I: (150, 180)}, course(_A.LDL))
        b[_A.TRIGLYCERIDES] = self._uniform(
            {S: (130, 180), W: (150, 190), I: (200, 260)}, course(_A.TRIGLYCERIDES)
        )
        b[_A.HDL] = self.rng.uniform(36, 55)
        if self._has(_C.HYPERTENSION):
            b[_A.SYSTOLIC_BP] = self._uniform(
                {S: (128, 140), W: (134, 146), I: (150, 166)}, course(_A.SYSTOLIC_BP)
            )
        else:
            b[_A.SYSTOLIC_BP] = self.rng.uniform(112, 126)
        b[_A.DIASTOLIC_BP] = self.rng.uniform(8, 16)  # offset over systolic / 2
        b[_A.SODIUM] = self.rng.uniform(137, 142)
        b[_A.MAGNESIUM] = self.rng.uniform(1.8, 2.2)
        b[_A.ALBUMIN] = self.rng.uniform(3.8, 4.4)
        b[_A.BODY_WEIGHT] = self.rng.uniform(24, 36) * self.demo.height_m**2
        b[_A.HEART_RATE] = self.rng.uniform(62, 82)

    def _planned(self, analyte: Analyte, visit: _Visit) -> float:
        spec = ANALYTES[analyte]
        return planned_value(spec, self._baseline[analyte], self.plan.course(analyte), visit.years)

    def _noisy(self, analyte: Analyte, true_value: float) -> float:
        spec = ANALYTES[analyte]
        return min(spec.ceiling, max(spec.floor, true_value + self.rng.gauss(0.0, spec.noise_sd)))

    def _lab(self, eid: str, visit: _Visit, analyte: Analyte, value: float) -> dict[str, Any]:
        self._measured.add(analyte)
        # Drawn a quarter of an hour into the visit.
        return fhir.lab_observation(
            self._id("obs"), self.pid, eid, ANALYTES[analyte], value,
            female=self.demo.female, dialect=self.plan.dialect,
            when=visit.start + timedelta(minutes=15),
        )  # fmt: skip

    def _labs(self, eid: str, visit: _Visit) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        female, age = self.demo.female, visit.age
        # Kidney: plan eGFR, derive the creatinine the lab measures (with noise), then report
        # the eGFR the lab computes from that creatinine, as real labs do.
        true_creat = creatinine_for_egfr(self._planned(_A.EGFR, visit), age, female)
        creat = round(self._noisy(_A.CREATININE, true_creat), ANALYTES[_A.CREATININE].decimals)
        out.append(self._lab(eid, visit, _A.CREATININE, creat))
        out.append(self._lab(eid, visit, _A.EGFR, egfr_ckd_epi_2021(creat, age, female)))
        out.append(
            self._lab(eid, visit, _A.POTASSIUM, self._noisy(_A.POTASSIUM, self._planned(_A.POTASSIUM, visit)))
        )
        out.append(self._lab(eid, visit, _A.SODIUM, self._noisy(_A.SODIUM, self._baseline[_A.SODIUM])))
        if self._has(_C.T2DM):
            a1c = self._planned(_A.HBA1C, visit)
            out.append(self._lab(eid, visit, _A.HBA1C, self._noisy(_A.HBA1C, a1c)))
            # Estimated average glucose (ADAG): 28.7 * A1c - 46.7 mg/dL.
            glucose = 28.7 * a1c - 46.7
        else:
            glucose = self._baseline[_A.GLUCOSE]
        out.append(self._lab(eid, visit, _A.GLUCOSE, self._noisy(_A.GLUCOSE, glucose)))
        if self._has(_C.IRON_DEFICIENCY_ANAEMIA):
            out.append(
                self._lab(
                    eid, visit, _A.HEMOGLOBIN, self._noisy(_A.HEMOGLOBIN, self._planned(_A.HEMOGLOBIN, visit))
                )
            )
        if self._has(_C.HYPERLIPIDAEMIA):
            # Lipid panel at every visit while a statin is titrated; total = LDL + HDL + TG/5 (Friedewald).
            ldl, tg, hdl = (self._planned(a, visit) for a in (_A.LDL, _A.TRIGLYCERIDES, _A.HDL))
            total = ldl + hdl + tg / 5
            for analyte, value in (
                (_A.CHOLESTEROL_TOTAL, total),
                (_A.LDL, ldl),
                (_A.HDL, hdl),
                (_A.TRIGLYCERIDES, tg),
            ):
                out.append(self._lab(eid, visit, analyte, self._noisy(analyte, value)))
        if visit.index % 2 == 0 and (self._has(_C.CKD3) or self._has(_C.T2DM)):
            for analyte in (_A.MAGNESIUM, _A.ALBUMIN):
                out.append(self._lab(eid, visit, analyte, self._noisy(analyte, self._baseline[analyte])))
        return out  # fmt: skip

    def _vitals(self, eid: str, visit: _Visit) -> list[dict[str, Any]]:
        when = visit.start + timedelta(minutes=5)
        systolic = self._planned(_A.SYSTOLIC_BP, visit)
        diastolic = systolic / 2 + self._baseline[_A.DIASTOLIC_BP]
        weight = self._noisy(_A.BODY_WEIGHT, self._baseline[_A.BODY_WEIGHT])
        weight = round(weight, ANALYTES[_A.BODY_WEIGHT].decimals)
        heart_rate = self._noisy(_A.HEART_RATE, self._baseline[_A.HEART_RATE])
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
