"""Physical plausibility of a result: values and times no living person's result can have (pure).

A result that fails is not a trend point: it is excluded and reported with its reason (see
``tools.labs.series``). These are *not* reference ranges and not critical limits: they are the
generous bounds of what can be measured in a living human, so that a typing error (-5 mg/dL),
a unit slip by a factor of a million, or a placeholder (1e308, 0001-01-01, 2099-01-01) never
becomes the "latest value" of a trend. A real extreme result (a sodium of 100 mmol/L, a
glucose of 1500 mg/dL) always passes. The reasons name the rule and the limits, never the
value itself.

Universal rules, for every series (known analyte or not), in the series unit:

* the value is a finite number;
* its magnitude is between ``MIN_MAGNITUDE`` and ``MAX_MAGNITUDE`` (or exactly 0): no lab
  reports 1e-300 or 1e20 in any unit it uses (counts per litre reach about 1e13);
* for an analyte of the table: not negative (none of them can be) and inside its limits.

Codes the table does not know get the first two rules only: a unit says nothing about the sign
(a base excess in mmol/L is negative in acidosis), and a guessed limit would exclude real results.

Per analyte, ``PHYSICAL_LIMITS`` (canonical unit, inclusive). Each row says where the bound
comes from; the upper bounds sit above the highest values reported in survivors, the lower
bounds below what an assay can report or a living patient can have. They are deliberately
wide: a clinician should review an excluded value, and a wrongly kept extreme value is shown
with its own date, while a wrongly excluded one is still listed in the report.

Times: an effective time before ``EARLIEST`` (1900-01-01) is a placeholder or an import error;
one after ``now + FUTURE_SKEW`` has not happened yet. One day of skew covers a date without
time (read as midnight UTC) from a zone ahead of UTC (up to +14 h) and clock drift. Without a
run clock, ``LATEST`` (2200-01-01) is the bound. Calendar years are checked before any date
arithmetic, so year 1 and year 9999 never reach a conversion that overflows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from tools.labs.analytes import ANALYTES, Analyte

__all__ = [
    "EARLIEST",
    "FUTURE_SKEW",
    "LATEST",
    "MAX_MAGNITUDE",
    "MIN_MAGNITUDE",
    "PHYSICAL_LIMITS",
    "PhysicalLimits",
    "time_problem",
    "value_problem",
]

MIN_MAGNITUDE: Final = 1e-15
MAX_MAGNITUDE: Final = 1e15
EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)
FUTURE_SKEW: Final = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class PhysicalLimits:
    """Inclusive bounds, in the analyte's canonical unit, and where they come from."""

    low: float
    high: float
    source: str

    def __post_init__(self) -> None:
        if not (0 <= self.low < self.high):
            raise ValueError(f"physical limits {self.low}..{self.high} are not an interval from 0 up")


# fmt: off
PHYSICAL_LIMITS: Final[Mapping[str, PhysicalLimits]] = {
    # Assays report down to about 0.1 mg/dL; the highest values in anuric survivors are about 30-40.
    "creatinine": PhysicalLimits(0.01, 100.0, "below assay range; above reported maxima (~40 mg/dL)"),
    "egfr": PhysicalLimits(0.0, 300.0, "an estimate: 0 to above any hyperfiltration (~200)"),
    "bun": PhysicalLimits(0.1, 500.0, "below assay range; above reported uraemia (~300 mg/dL)"),
    "hba1c": PhysicalLimits(1.0, 25.0, "below haemolytic states (~2 %); above reported maxima (~20 %)"),
    "glucose": PhysicalLimits(1.0, 5000.0, "profound hypoglycaemia; above the recorded maximum (2656 mg/dL)"),
    "hemoglobin": PhysicalLimits(0.5, 30.0, "below survived anaemia (~1 g/dL); above polycythaemia (~25)"),
    "ldl": PhysicalLimits(0.0, 2000.0, "0 in abetalipoproteinaemia; above homozygous FH (~1000 mg/dL)"),
    "hdl": PhysicalLimits(0.0, 400.0, "0 in Tangier disease; above CETP deficiency (~250 mg/dL)"),
    "cholesterol": PhysicalLimits(5.0, 4000.0, "below abetalipoproteinaemia; above cholestasis (~3000)"),
    "triglycerides": PhysicalLimits(1.0, 40000.0, "below assay range; above reported chylomicronaemia"),
    "potassium": PhysicalLimits(0.5, 15.0, "below and above the extremes reported in survivors (1.0-14)"),
    "sodium": PhysicalLimits(80.0, 270.0, "below and above the extremes reported in survivors (~90-255)"),
    "magnesium": PhysicalLimits(0.1, 30.0, "below assay range; above reported hypermagnesaemia (~20)"),
    "albumin": PhysicalLimits(0.01, 10.0, "near 0 in analbuminaemia; above any serum protein level"),
    "uacr": PhysicalLimits(0.0, 100000.0, "0 when undetectable; above nephrotic-range maxima"),
    "systolic_bp": PhysicalLimits(20.0, 400.0, "below shock; above peaks measured in weightlifters (~370)"),
    "diastolic_bp": PhysicalLimits(5.0, 360.0, "below shock; above peaks measured in weightlifters"),
    "body_weight": PhysicalLimits(0.2, 700.0, "below extreme prematurity; above the heaviest recorded (635)"),
    "bmi": PhysicalLimits(5.0, 250.0, "below extreme cachexia; above the heaviest recorded"),
    "heart_rate": PhysicalLimits(1.0, 600.0, "above asystole; above the fastest arrhythmias recorded"),
}
# fmt: on


def _check_table(rows: tuple[Analyte, ...]) -> None:
    keys = {a.key for a in rows}
    if keys != set(PHYSICAL_LIMITS):
        raise ValueError(f"physical limits and analyte table differ: {sorted(keys ^ set(PHYSICAL_LIMITS))}")
    for a in rows:
        lim = PHYSICAL_LIMITS[a.key]
        for bound in (a.reference.low, a.reference.high):
            if bound is not None and not lim.low <= bound <= lim.high:
                raise ValueError(f"{a.key}: reference range lies outside its physical limits")


_check_table(ANALYTES)


def _g(x: float) -> str:
    return f"{x:g}"


def value_problem(value: float, analyte: Analyte | None) -> str | None:
    """Why ``value`` (in the series unit: the analyte's canonical unit) cannot be a result, or
    ``None`` when it can."""
    if not math.isfinite(value):
        return "value is not a finite number"
    size = abs(value)
    if size > MAX_MAGNITUDE or (value != 0 and size < MIN_MAGNITUDE):
        return f"value magnitude outside {_g(MIN_MAGNITUDE)} to {_g(MAX_MAGNITUDE)}: no lab reports it"
    if analyte is not None:
        lim = PHYSICAL_LIMITS[analyte.key]
        if value < 0:
            return f"negative value: {analyte.display} cannot be negative"
        if not lim.low <= value <= lim.high:
            return (
                f"value outside the physical limits of {analyte.display} "
                f"({_g(lim.low)} to {_g(lim.high)} {analyte.unit})"
            )
        return None
    return None


def time_problem(when: datetime, now: datetime | None = None) -> str | None:
    """Why ``when`` (aware) cannot be the time of a result, or ``None``; ``now`` is the run clock."""
    if when.tzinfo is None:
        raise ValueError("when must be timezone-aware")
    # Years first: converting 0001-01-01T00:00+05:00 or 9999-12-31T23:00-05:00 to UTC overflows.
    if when.year < EARLIEST.year:
        return f"effective time before {EARLIEST.date().isoformat()}: a placeholder, not a result"
    if when.year >= LATEST.year:
        return f"effective time after {LATEST.date().isoformat()}: not a real date"
    utc = when.astimezone(UTC)
    if utc < EARLIEST:
        return f"effective time before {EARLIEST.date().isoformat()}: a placeholder, not a result"
    if now is not None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if utc > now.astimezone(UTC) + FUTURE_SKEW:
            return "effective time in the future (more than 1 day after the run's clock)"
    elif utc >= LATEST:
        return f"effective time after {LATEST.date().isoformat()}: not a real date"
    return None
