"""The computed facts of one patient summary: what `summarize --dry-run --json` prints.

Values are in the series' unit; `code` is the LOINC code, or the local code of an
Epic-style server when the analyte table does not map it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import AwareDatetime, BaseModel

from fhir_adapters.parsing import RejectedResource
from tools.trends import Direction, Trend, TrendPoint


class ValueAt(BaseModel):
    value: float
    time: AwareDatetime

    @classmethod
    def of(cls, point: TrendPoint) -> ValueAt:
        return cls(value=point.value, time=point.time)


class LabFact(BaseModel):
    code: str
    system: str | None
    display: str
    unit: str | None
    n: int
    latest: ValueAt
    previous: ValueAt | None
    delta: float | None
    percent_change: float | None
    slope_per_year: float | None
    direction: Direction
    direction_reason: str
    reference_low: float | None
    reference_high: float | None

    @classmethod
    def of(cls, trend: Trend) -> LabFact:
        return cls(
            code=trend.code,
            system=trend.system,
            display=trend.display,
            unit=trend.unit,
            n=trend.n,
            latest=ValueAt.of(trend.latest),
            previous=None if trend.previous is None else ValueAt.of(trend.previous),
            delta=trend.delta,
            percent_change=trend.percent_change,
            slope_per_year=trend.slope_per_year,
            direction=trend.direction,
            direction_reason=trend.direction_reason,
            reference_low=trend.reference_low,
            reference_high=trend.reference_high,
        )


class SummaryFacts(BaseModel):
    patient_id: str
    labs: list[LabFact]
    rejected: list[RejectedResource]

    @classmethod
    def of(
        cls, patient_id: str, trends: Sequence[Trend], rejected: Sequence[RejectedResource]
    ) -> SummaryFacts:
        return cls(patient_id=patient_id, labs=[LabFact.of(t) for t in trends], rejected=list(rejected))
