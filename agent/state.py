"""Typed state of the summarization graph."""

from __future__ import annotations

from typing import Any, TypedDict

from agent.facts import SummaryFacts
from tools.documents.ingest import DocumentIngest
from tools.imaging_review import ImagingReview
from tools.labs.series import SeriesSet
from tools.record import PatientRecord
from tools.trends import Trend
from tools.writeback import ModelIdentity


class WriteOutcome(TypedDict):
    """What the transaction did, per resource type: newly created vs already there; when its
    answer was lost, found by a read of the server (`confirmed`); and the reports it retired."""

    created: dict[str, int]
    existing: dict[str, int]
    confirmed: dict[str, int]
    superseded: list[str]


class SummarizeState(TypedDict, total=False):
    patient_id: str
    record: PatientRecord
    # Lab-report PDFs read, per document, and the Observations transcribed from them.
    documents: DocumentIngest
    # Imaging comparisons (current vs prior) and what they write.
    imaging: ImagingReview
    series: SeriesSet
    trends: list[Trend]
    facts: SummaryFacts
    narrative: str
    # Who wrote the narrative when a model did; absent: the templated one (the trend engine's).
    narrative_identity: ModelIdentity
    # Why the narrative is the templated one (no model, or the model's answer was not usable).
    synthesis_note: str
    bundle: dict[str, Any]
    written: WriteOutcome
    # Set when the run ends early (nothing to summarise); never patient data.
    note: str
