"""Planned courses in the trend engine's clinical terms (pure).

A course is what a correct engine (``tools.trends``) must find in the numbers, so it is planned
with the same analyte table the engine reads:

* stable: no drift, the value is held (only analytical noise, at most a sixth of the
  stability threshold, see ``labs.py``);
* improving / worsening: a change of ``multiple`` (at least 2) times the analyte's stability
  threshold at the starting value, in the clinically good / bad direction: lower or higher
  for LOWER / HIGHER analytes; for IN_RANGE analytes from outside the reference range to inside
  or much nearer (improving), from inside or near it to farther out (worsening);
* analytes without a better direction (body weight) are only ever stable.

``CoursePlan`` checks this when it is built (the corners of its ranges), so a plan that a
correct engine would read differently cannot exist. A change is spread linearly over the
follow-up, from the first visit to the last.

Kidney: creatinine and eGFR are one course (eGFR is computed from creatinine by CKD-EPI 2021,
as labs do). A stable course holds eGFR; a moving one moves creatinine by at least twice its
threshold *and* far enough that eGFR moves by at least twice its own (see ``KidneyCourse``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from agent.testbed.cohort.labs import ANALYTES, Analyte, Course, creatinine_for_egfr, egfr_ckd_epi_2021
from tools.labs.analytes import GoodDirection, ReferenceRange

__all__ = [
    "BMI_RANGE",
    "DIASTOLIC_OFFSET",
    "MIN_MULTIPLE",
    "NORMOTENSIVE_SYSTOLIC",
    "PLANS",
    "CoursePlan",
    "KidneyCourse",
    "Move",
    "Trajectory",
    "distance_to_range",
    "draw_kidney",
]

MIN_MULTIPLE: Final = 2.0  # a planned change is at least this many stability thresholds


@dataclass(frozen=True)
class Trajectory:
    """Noise-free value over the follow-up: linear from ``start`` (first visit) to ``end`` (last)."""

    start: float
    end: float

    def at(self, fraction: float) -> float:
        return self.start + (self.end - self.start) * fraction


@dataclass(frozen=True)
class Move:
    """A non-stable course: start in ``start``; change = sign * multiple * threshold(start)."""

    start: tuple[float, float]
    multiple: tuple[float, float]
    sign: int  # numeric direction of the change: +1 rises, -1 falls

    def end(self, analyte: Analyte, start: float, multiple: float) -> float:
        return start + self.sign * multiple * analyte.row.stability.magnitude(start)

    def corners(self, analyte: Analyte) -> list[tuple[float, float]]:
        """(start, end) at the four corners of the start and multiple ranges."""
        return [(s, self.end(analyte, s, k)) for s in self.start for k in self.multiple]


def distance_to_range(value: float, ref: ReferenceRange) -> float:
    """How far ``value`` lies outside ``ref`` (0 inside), as the engine measures it."""
    if ref.low is not None and value < ref.low:
        return ref.low - value
    if ref.high is not None and value > ref.high:
        return value - ref.high
    return 0.0


@dataclass(frozen=True)
class CoursePlan:
    """How one analyte's value is drawn for each course."""

    analyte: Analyte
    stable: tuple[float, float]
    improving: Move | None = None
    worsening: Move | None = None

    def __post_init__(self) -> None:
        row = self.analyte.row
        band = ANALYTES[self.analyte].plausible
        _check_within(self.analyte, self.stable, band)
        for course, move in ((Course.IMPROVING, self.improving), (Course.WORSENING, self.worsening)):
            if move is None:
                continue
            if row.good_direction is GoodDirection.NONE:
                raise ValueError(f"{row.key} has no better direction: it can only be planned stable")
            if move.multiple[0] < MIN_MULTIPLE or move.multiple[0] > move.multiple[1]:
                raise ValueError(f"{row.key} {course}: multiple {move.multiple} is not >= {MIN_MULTIPLE}")
            for start, end in move.corners(self.analyte):
                _check_within(self.analyte, (start, end), band)
                better = _is_better(self.analyte, start, end)
                if better is not (course is Course.IMPROVING):
                    raise ValueError(f"{row.key} {course}: {start:g} -> {end:g} is not {course}")

    def draw(self, rng: random.Random, course: Course) -> Trajectory:
        move = {Course.IMPROVING: self.improving, Course.WORSENING: self.worsening}.get(course)
        if course is Course.STABLE:
            value = rng.uniform(*self.stable)
            return Trajectory(value, value)
        if move is None:
            raise ValueError(f"no {course} course is planned for {self.analyte}")
        start = rng.uniform(*move.start)
        return Trajectory(start, move.end(self.analyte, start, rng.uniform(*move.multiple)))


def _check_within(analyte: Analyte, values: tuple[float, float], band: tuple[float, float]) -> None:
    if not all(band[0] <= v <= band[1] for v in values):
        raise ValueError(f"{analyte} plan {values} leaves the plausible band {band}")


def _is_better(analyte: Analyte, start: float, end: float) -> bool:
    """Whether ``start -> end`` is an improvement in the engine's terms (IN_RANGE: nearer)."""
    row = analyte.row
    match row.good_direction:
        case GoodDirection.LOWER:
            return end < start
        case GoodDirection.HIGHER:
            return end > start
        case GoodDirection.IN_RANGE:
            before, after = distance_to_range(start, row.reference), distance_to_range(end, row.reference)
            if before == after:
                raise ValueError(f"{analyte}: {start:g} -> {end:g} moves neither nearer nor farther")
            return after < before
        case GoodDirection.NONE:
            raise ValueError(f"{analyte} has no better direction")


_A = Analyte
_S, _I, _W = Course.STABLE, Course.IMPROVING, Course.WORSENING

# Ranges are in the canonical unit of the analyte table. Derived series follow these: glucose
# (diabetes) from HbA1c, total cholesterol from the lipids, diastolic BP from systolic, BMI
# from weight; creatinine and eGFR are planned by `draw_kidney`.
PLANS: Final[dict[Analyte, CoursePlan]] = {
    p.analyte: p
    for p in (
        # Hyperkalaemia on an ACE inhibitor in CKD, resolving or developing.
        CoursePlan(_A.POTASSIUM, (4.0, 4.7),
                   improving=Move((5.7, 6.0), (2.6, 3.0), -1),
                   worsening=Move((4.2, 4.6), (2.6, 3.0), +1)),
        CoursePlan(_A.SODIUM, (137.0, 142.0)),
        # Large enough that the glucose they imply (ADAG) moves by 2x its own threshold too.
        CoursePlan(_A.HBA1C, (6.6, 7.6),
                   improving=Move((10.2, 11.0), (6.4, 7.2), -1),
                   worsening=Move((6.8, 7.4), (4.4, 5.6), +1)),
        CoursePlan(_A.GLUCOSE, (80.0, 95.0)),  # without diabetes: fasting, normal
        # Iron deficiency anaemia: repleted into the range, or bleeding further below it.
        CoursePlan(_A.HEMOGLOBIN, (10.0, 11.0),
                   improving=Move((9.2, 10.0), (3.2, 3.6), +1),
                   worsening=Move((10.6, 11.4), (2.6, 3.0), -1)),
        CoursePlan(_A.LDL, (95.0, 130.0),
                   improving=Move((150.0, 185.0), (4.5, 6.0), -1),
                   worsening=Move((105.0, 135.0), (4.0, 5.5), +1)),
        CoursePlan(_A.HDL, (38.0, 60.0)),
        CoursePlan(_A.TRIGLYCERIDES, (120.0, 180.0),
                   improving=Move((240.0, 300.0), (2.5, 2.9), -1),
                   worsening=Move((140.0, 180.0), (3.0, 4.0), +1)),
        CoursePlan(_A.MAGNESIUM, (1.85, 2.05)),
        CoursePlan(_A.ALBUMIN, (3.8, 4.4)),
        # Hypertension: controlled into the range, or losing control from it.
        CoursePlan(_A.SYSTOLIC_BP, (124.0, 138.0),
                   improving=Move((146.0, 156.0), (3.2, 3.8), -1),
                   worsening=Move((118.0, 126.0), (2.8, 3.6), +1)),
        CoursePlan(_A.HEART_RATE, (62.0, 84.0)),
    )
}  # fmt: skip

NORMOTENSIVE_SYSTOLIC: Final = (112.0, 124.0)
DIASTOLIC_OFFSET: Final = (10.0, 15.0)  # diastolic = systolic / 2 + offset
BMI_RANGE: Final = (24.0, 36.0)  # body weight = BMI * height^2, held

# eGFR of the first visit: without CKD; CKD held; CKD about to lose function; CKD recovering
# from an acute-on-chronic low (AKI on CKD), hence a start below the CKD3 range.
_EGFR_NORMAL: Final = (75.0, 95.0)
_EGFR_CKD: Final[dict[Course, tuple[float, float]]] = {_S: (35.0, 55.0), _W: (40.0, 55.0), _I: (18.0, 26.0)}
_KIDNEY_MULTIPLE: Final = (2.5, 3.0)


@dataclass(frozen=True)
class KidneyCourse:
    """Noise-free creatinine over the follow-up; eGFR is computed from it by the lab.

    Stable: eGFR is held (creatinine follows age, by under 1 % a year). Moving: creatinine moves
    linearly from ``creatinine.start`` to ``creatinine.end``.
    """

    female: bool
    egfr: float | None = None  # stable
    creatinine: Trajectory | None = None  # moving

    def creatinine_at(self, fraction: float, age: float) -> float:
        if self.creatinine is not None:
            return self.creatinine.at(fraction)
        if self.egfr is None:
            raise ValueError("a kidney course holds eGFR or moves creatinine")
        return creatinine_for_egfr(self.egfr, age, self.female)

    def egfr_at(self, fraction: float, age: float) -> float:
        return egfr_ckd_epi_2021(self.creatinine_at(fraction, age), age, self.female)


def draw_kidney(
    rng: random.Random, course: Course, *, ckd: bool, female: bool, age_start: float, age_end: float
) -> KidneyCourse:
    """The kidney course: both creatinine and eGFR move by 2.5-3x their thresholds (or are held)."""
    if not ckd or course is Course.STABLE:
        return KidneyCourse(female, egfr=rng.uniform(*(_EGFR_CKD[_S] if ckd else _EGFR_NORMAL)))
    egfr0 = rng.uniform(*_EGFR_CKD[course])
    k = rng.uniform(*_KIDNEY_MULTIPLE)
    creat0 = creatinine_for_egfr(egfr0, age_start, female)
    creat_step = k * _A.CREATININE.row.stability.magnitude(creat0)
    egfr_step = k * _A.EGFR.row.stability.magnitude(egfr0)
    if course is Course.WORSENING:
        # Creatinine rises by k thresholds, or more where that would not move eGFR enough.
        creat1 = max(creat0 + creat_step, creatinine_for_egfr(egfr0 - egfr_step, age_end, female))
    else:
        creat1 = min(creat0 - creat_step, creatinine_for_egfr(egfr0 + egfr_step, age_end, female))
    return KidneyCourse(female, creatinine=Trajectory(creat0, creat1))
