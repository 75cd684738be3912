"""The computed facts of one patient summary: what `summarize --dry-run --json` prints.

Values are in the series' unit; `code` is the LOINC code, or the local code of an
Epic-style server when the analyte table does not map it. `excluded` lists every result that
carried a quantity but is not a trend point (no value, a comparator, an unusable time or unit,
a physically implausible value or time), by reference, with a reason that names units and
limits but never the value or the date (`tools.labs.series.REPORTED_REASONS`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import AwareDatetime, BaseModel

from fhir_adapters.parsing import RejectedResource
from tools.labs.series import SkippedPoint, SkipReason
from tools.trends import Direction, Trend


class ValueAt(BaseModel):
    value: float
    time: AwareDatetime


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
        # The facts are a projection of the trend: same field names, extra fields dropped.
        return cls.model_validate(trend.model_dump())


class ExcludedResult(BaseModel):
    """A result of the record that is not a trend point, and why."""

    reference: str | None  # "Observation/<id>"
    code: str | None
    reason: SkipReason
    detail: str

    @classmethod
    def of(cls, skipped: SkippedPoint) -> ExcludedResult:
        ref = None if skipped.observation_id is None else f"Observation/{skipped.observation_id}"
        return cls(reference=ref, code=skipped.code, reason=skipped.reason, detail=skipped.detail)


class SummaryFacts(BaseModel):
    patient_id: str
    labs: list[LabFact]
    rejected: list[RejectedResource]
    excluded: list[ExcludedResult] = []

    @classmethod
    def of(
        cls,
        patient_id: str,
        trends: Sequence[Trend],
        rejected: Sequence[RejectedResource],
        excluded: Sequence[SkippedPoint] = (),
    ) -> SummaryFacts:
        return cls(
            patient_id=patient_id,
            labs=[LabFact.of(t) for t in trends],
            rejected=list(rejected),
            excluded=[ExcludedResult.of(p) for p in excluded],
        )
