"""What every agent tool takes and gives: the run's context, citations, facts, and errors.

A tool's output is a list of facts, each with the citations it rests on: the FHIR reference it
was read from, and where they apply the value and time, the page and box of a PDF, or the
study/series/instance UIDs of an image. The chat agent may only cite what a tool returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from fhir_adapters import FhirClient
    from tools.imaging.dicomweb import DicomWebClient
    from tools.medgemma.types import ModelBackend
    from tools.record import PatientRecord

__all__ = ["Citation", "ToolContext", "ToolFact", "ToolOutput"]


class Citation(BaseModel):
    """One thing a fact rests on. `reference` is always a FHIR reference ("Observation/123")."""

    model_config = ConfigDict(frozen=True)

    reference: str
    value: float | str | None = None
    unit: str | None = None
    time: str | None = None  # ISO 8601, as the resource gives it
    page: int | None = None  # 1-based page of a PDF
    bbox: tuple[float, float, float, float] | None = None  # PDF points or original image pixels
    study_uid: str | None = None
    series_uid: str | None = None
    instance_uid: str | None = None


class ToolFact(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    citations: tuple[Citation, ...] = ()


class ToolOutput(BaseModel):
    """The base of every tool's output: facts first (what a model reads), then typed details."""

    facts: list[ToolFact] = Field(default_factory=list)
    # Said when the tool ran but found less than asked (no such analyte, no studies, ...).
    note: str | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ToolContext:
    """The run a tool works for. One patient only: every read is scoped to `patient_id`.

    The gathered record is kept for the run (one manifest read serves every tool call).
    `record_source`, when given, supplies it instead of a read of its own (the service's records
    kept between runs: agent.service.record_reuse).
    """

    fhir: FhirClient
    patient_id: str
    dicomweb: DicomWebClient | None = None
    model: ModelBackend | None = None
    now: datetime = field(default_factory=utc_now)
    lab_timezone: tzinfo = UTC
    record_source: Callable[[], Awaitable[PatientRecord]] | None = field(default=None, repr=False)
    _record: PatientRecord | None = field(default=None, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def record(self) -> PatientRecord:
        from tools.record import gather_record

        async with self._lock:
            if self._record is None:
                source = self.record_source
                self._record = await (
                    source() if source is not None else gather_record(self.fhir, self.patient_id)
                )
            return self._record
