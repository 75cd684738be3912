"""Ground truth of a generated lab report: what the extraction benchmark scores field by field.

Every string field is exactly as printed on the page (``value_text`` "4,2", "<0.5", "negative";
``unit`` "mg/dl"); the numeric and coded fields (``value``, ``comparator``, ``ucum``, ``loinc``)
are what a correct extraction derives from them.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Comparator", "Flag", "LabReport", "LabResultTruth"]


class Flag(StrEnum):
    """Abnormal flag as printed (HL7 v2 observation interpretation letters)."""

    HIGH = "H"
    LOW = "L"
    ABNORMAL = "A"


class Comparator(StrEnum):
    """Comparator in front of a censored value ("<0.5", ">90"); FHIR Quantity.comparator codes."""

    LT = "<"
    LE = "<="
    GE = ">="
    GT = ">"


class LabResultTruth(BaseModel):
    """One printed result line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="test name as printed")
    loinc: str | None = Field(description="LOINC code of the test in the printed unit; None when not coded")
    value: float | None = Field(description="numeric value; the bound for censored values; None for text")
    value_text: str = Field(description="value exactly as printed")
    comparator: Comparator | None = None
    unit: str = Field(description="unit as printed ('' when none)")
    ucum: str | None = Field(description="UCUM code of the unit; None when unitless")
    reference_low: float | None = None
    reference_high: float | None = None
    reference_text: str = Field(description="reference range as printed ('' when none)")
    flag: Flag | None = None
    panel: str = Field(description="panel header the line is printed under")
    collected: datetime | None = Field(
        default=None, description="collection time when it differs from the report's (cumulative reports)"
    )
    note: str | None = Field(default=None, description="footnote text printed for this result")

    @model_validator(mode="after")
    def _censored_values_have_a_bound(self) -> LabResultTruth:
        if self.comparator is not None and self.value is None:
            raise ValueError(f"{self.name}: a censored value ({self.value_text!r}) needs its bound as value")
        return self


class LabReport(BaseModel):
    """One lab report (or, for a cumulative report, the merged results of several draws)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    report_id: str
    patient_id: str
    patient_name: str
    birth_date: date
    sex: str = Field(description="'F' or 'M' as printed")
    collected: datetime
    reported: datetime
    lab_name: str
    decimal_comma: bool = Field(description="numbers are printed with a decimal comma")
    results: tuple[LabResultTruth, ...]
    notes: tuple[str, ...] = Field(default=(), description="report-level comments as printed")

    @model_validator(mode="after")
    def _reported_after_collected(self) -> LabReport:
        if self.reported < self.collected:
            raise ValueError(f"report {self.report_id}: reported before collected")
        if not self.results:
            raise ValueError(f"report {self.report_id}: no results")
        return self

    @property
    def panels(self) -> tuple[str, ...]:
        """Panel headers in first-seen order."""
        return tuple(dict.fromkeys(r.panel for r in self.results))
