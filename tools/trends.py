"""Trend statistics for one lab series (pure).

``compute_trend(series)`` reports the latest and previous values, their delta, a robust slope
(Theil-Sen: the median of the pairwise slopes, so one outlier cannot tilt it), crossings of the
reference range and a direction: improved, stable or worsened.

Direction rule (``ALGORITHM_REVISION`` changes whenever it does):

1. baseline = median of the earliest points: the earliest third of the series, at least 1 and
   at most 3 points. The first point alone would let one noisy early value decide the
   direction; a median of up to three resists one outlier and still sits at the start of the
   window. The latest point is compared alone because the current value is what a clinician
   acts on: a new deterioration must show at once, not be averaged away.
2. change = latest - baseline. It is significant when ``|change| >= threshold``, the
   analyte's stability threshold evaluated at the baseline (``tools.labs.analytes``); the
   boundary itself counts as significant, as in KDIGO's ">= 0.3 mg/dL". Not significant:
   ``stable``.
3. A significant change is judged by the analyte's good direction: lower-better and
   higher-better by its sign; in-range by the distance to the reference range (nearer is
   improved, farther is worsened, a move inside the range is stable); an analyte with no good
   direction (body weight) stays ``stable`` with ``significant=True`` and a reason.
4. Codes the table does not know get no threshold: ``improved`` when the series entered its
   reference range (first point outside, latest inside), ``worsened`` when it left it,
   otherwise ``stable`` with the reason. Never a guess from the sign of the change.

The slope is reported for context but does not decide the direction: the latest value
already says where the patient is, and a slope over a long window can hide a recent turn.
"""

from __future__ import annotations

import functools
import math
import statistics
from enum import StrEnum
from typing import Any, Final, Literal

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from tools.labs.analytes import Analyte, GoodDirection
from tools.labs.series import DISPLAY_LIMIT, UNIT_LIMIT, LabPoint, LabSeries
from tools.text_safety import safe_text

__all__ = [
    "ALGORITHM_REVISION",
    "ENGINE_NAME",
    "Basis",
    "Direction",
    "RangeCrossing",
    "RangeStatus",
    "SourceRef",
    "Trend",
    "TrendPoint",
    "baseline_count",
    "compute_trend",
    "theil_sen_slope",
]

ENGINE_NAME: Final = "chartagent-trend-engine"
ALGORITHM_REVISION: Final = "1"  # bump when the rule in the module docstring changes

_SECONDS_PER_YEAR: Final = 365.25 * 86400

Direction = Literal["improved", "stable", "worsened"]
# What the direction was decided on, so that readers need not parse ``direction_reason``.
Basis = Literal[
    "below-threshold",  # change smaller than the stability threshold
    "lower-is-better",
    "higher-is-better",
    "reference-range",  # in-range analyte: nearer to or farther from the range
    "within-range",  # in-range analyte: significant move inside the range, not judged
    "no-better-direction",  # e.g. body weight: significant change, not judged
    "range-entry-exit",  # unknown code: entered or left its own reference range
    "not-judged",  # unknown code without a range entry or exit
]


class RangeStatus(StrEnum):
    BELOW = "below"
    WITHIN = "within"
    ABOVE = "above"


class TrendPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    time: AwareDatetime
    value: float


class RangeCrossing(BaseModel):
    model_config = ConfigDict(frozen=True)

    time: AwareDatetime
    value: float
    before: RangeStatus
    after: RangeStatus
    kind: Literal["entered", "left", "crossed"]  # crossed: from below to above or back


class SourceRef(BaseModel):
    """An input Observation as it was read: enough to cite it and to hash it."""

    model_config = ConfigDict(frozen=True)

    reference: str  # "Observation/<id>"
    version: str | None
    time: AwareDatetime
    value: float


class Trend(BaseModel):
    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _safe_record_text(cls, data: Any) -> Any:
        """The name and unit come from the record: made safe once, here (``tools.text_safety``), for
        every text, table, plot and resource built from a trend. An unusable name gives the code."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "display" in data:
            data["display"] = safe_text(data["display"], limit=DISPLAY_LIMIT) or str(data.get("code") or "")
        if data.get("unit") is not None:
            data["unit"] = safe_text(data["unit"], limit=UNIT_LIMIT) or None
        return data

    code: str
    system: str | None
    display: str
    unit: str | None
    analyte_key: str | None
    subject: str | None
    n: int
    first: TrendPoint
    latest: TrendPoint
    previous: TrendPoint | None
    delta: float | None  # latest - previous
    percent_change: float | None  # delta relative to previous, in %; None when previous is 0
    baseline: float
    baseline_n: int
    change_from_baseline: float
    slope_per_year: float | None
    span_days: float
    reference_low: float | None  # the range used for direction
    reference_high: float | None
    crossings: tuple[RangeCrossing, ...]
    threshold: float | None  # None for codes the analyte table does not know
    threshold_source: str | None
    significant: bool
    direction: Direction
    basis: Basis
    direction_reason: str
    sources: tuple[SourceRef, ...]  # every point used, in time order


def theil_sen_slope(times_years: np.ndarray, values: np.ndarray) -> float | None:
    """Median of the slopes of all pairs with distinct times; ``None`` with no such pair."""
    if times_years.shape != values.shape:
        raise ValueError("times and values differ in length")
    i, j = _pairs(len(values))
    dx = times_years[j] - times_years[i]
    keep = dx != 0
    if not keep.any():
        return None
    return float(np.median((values[j] - values[i])[keep] / dx[keep]))


@functools.lru_cache(maxsize=256)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    # Every (i, j) with i < j: np.triu_indices builds an n x n mask each call; series lengths repeat.
    i, j = np.triu_indices(n, k=1)
    i.flags.writeable = False
    j.flags.writeable = False
    return i, j


def baseline_count(n: int) -> int:
    """How many earliest points form the baseline: a third of the series, 1 to 3."""
    return max(1, min(3, n // 3))


def _range_of(point: LabPoint, analyte: Analyte | None) -> tuple[float | None, float | None]:
    # The lab's own range (sex, method, age specific) beats our adult default.
    if point.reference_low is not None or point.reference_high is not None:
        return point.reference_low, point.reference_high
    if analyte is not None:
        return analyte.reference.low, analyte.reference.high
    return None, None


def _status(value: float, low: float | None, high: float | None) -> RangeStatus | None:
    if low is None and high is None:
        return None
    if low is not None and value < low:
        return RangeStatus.BELOW
    if high is not None and value > high:
        return RangeStatus.ABOVE
    return RangeStatus.WITHIN


def _distance(value: float, low: float | None, high: float | None) -> float:
    if low is not None and value < low:
        return low - value
    if high is not None and value > high:
        return value - high
    return 0.0


def _crossings(points: tuple[LabPoint, ...], analyte: Analyte | None) -> tuple[RangeCrossing, ...]:
    found: list[RangeCrossing] = []
    before: RangeStatus | None = None
    for p in points:
        after = _status(p.value, *_range_of(p, analyte))
        if before is not None and after is not None and after != before:
            kind: Literal["entered", "left", "crossed"] = (
                "entered"
                if after == RangeStatus.WITHIN
                else "left"
                if before == RangeStatus.WITHIN
                else "crossed"
            )
            found.append(RangeCrossing(time=p.time, value=p.value, before=before, after=after, kind=kind))
        if after is not None:
            before = after
    return tuple(found)


def _fmt(x: float) -> str:
    return f"{x:+.4g}"


def _judge(
    series: LabSeries,
    analyte: Analyte | None,
    baseline: float,
    latest: LabPoint,
    low: float | None,
    high: float | None,
) -> tuple[float | None, bool, Direction, Basis, str]:
    """(threshold, significant, direction, basis, reason)."""
    unit = f" {series.unit}" if series.unit else ""
    change = latest.value - baseline
    if analyte is None:
        first = series.points[0]
        start = _status(first.value, *_range_of(first, None))
        end = _status(latest.value, *_range_of(latest, None))
        if start is None or end is None:
            return (
                None,
                False,
                "stable",
                "not-judged",
                "code not in the analyte table and no reference range: not judged",
            )
        if end == RangeStatus.WITHIN and start != RangeStatus.WITHIN:
            return (
                None,
                False,
                "improved",
                "range-entry-exit",
                f"entered the reference range (was {start.value})",
            )
        if start == RangeStatus.WITHIN and end != RangeStatus.WITHIN:
            return None, False, "worsened", "range-entry-exit", f"left the reference range (now {end.value})"
        return (
            None,
            False,
            "stable",
            "not-judged",
            f"code not in the analyte table; no range entry or exit ({end.value} range)",
        )

    threshold = analyte.stability.magnitude(baseline)
    significant = change != 0 and abs(change) + 1e-9 * max(1.0, threshold) >= threshold
    size = f"change from baseline {_fmt(change)}{unit} vs threshold {threshold:.4g}{unit}"
    if not significant:
        return threshold, False, "stable", "below-threshold", f"{size}: below the stability threshold"
    match analyte.good_direction:
        case GoodDirection.LOWER:
            better = change < 0
            verdict: Direction = "improved" if better else "worsened"
            return threshold, True, verdict, "lower-is-better", f"{size}; lower is better"
        case GoodDirection.HIGHER:
            better = change > 0
            verdict = "improved" if better else "worsened"
            return threshold, True, verdict, "higher-is-better", f"{size}; higher is better"
        case GoodDirection.IN_RANGE:
            before, after = _distance(baseline, low, high), _distance(latest.value, low, high)
            if math.isclose(before, after, abs_tol=1e-12):
                return threshold, True, "stable", "within-range", f"{size}; moved within the reference range"
            verdict = "improved" if after < before else "worsened"
            toward = "nearer to" if after < before else "farther from"
            return threshold, True, verdict, "reference-range", f"{size}; {toward} the reference range"
        case GoodDirection.NONE:
            return (
                threshold,
                True,
                "stable",
                "no-better-direction",
                f"{size}; {analyte.display} has no better direction: not judged",
            )


def compute_trend(series: LabSeries) -> Trend:
    """The trend of ``series`` over all its points (window the series first to restrict it).

    Raises ``ValueError`` for a series without points.
    """
    points = series.points
    if not points:
        raise ValueError(f"series {series.code} has no points to compute a trend from")
    analyte = series.analyte
    first, latest = points[0], points[-1]
    previous = points[-2] if len(points) > 1 else None
    k = baseline_count(len(points))
    baseline = statistics.median(p.value for p in points[:k])
    low, high = _range_of(latest, analyte)
    threshold, significant, direction, basis, reason = _judge(series, analyte, baseline, latest, low, high)

    years = np.array([(p.time - first.time).total_seconds() / _SECONDS_PER_YEAR for p in points])
    values = np.array([p.value for p in points])
    delta = None if previous is None else latest.value - previous.value
    return Trend(
        code=series.code,
        system=series.system,
        display=series.display,
        unit=series.unit,
        analyte_key=series.analyte_key,
        subject=series.subject,
        n=len(points),
        first=TrendPoint(time=first.time, value=first.value),
        latest=TrendPoint(time=latest.time, value=latest.value),
        previous=None if previous is None else TrendPoint(time=previous.time, value=previous.value),
        delta=delta,
        percent_change=(
            None
            if previous is None or delta is None or previous.value == 0
            else 100 * delta / abs(previous.value)
        ),
        baseline=baseline,
        baseline_n=k,
        change_from_baseline=latest.value - baseline,
        slope_per_year=theil_sen_slope(years, values),
        span_days=(latest.time - first.time).total_seconds() / 86400,
        reference_low=low,
        reference_high=high,
        crossings=_crossings(points, analyte),
        threshold=threshold,
        threshold_source=None if analyte is None else analyte.threshold_source,
        significant=significant,
        direction=direction,
        basis=basis,
        direction_reason=reason,
        sources=tuple(
            SourceRef(reference=p.reference, version=p.observation_version, time=p.time, value=p.value)
            for p in points
        ),
    )
