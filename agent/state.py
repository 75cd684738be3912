"""Typed state of the summarization graph."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from agent.facts import SummaryFacts
from agent.planning.worklist import Worklist
from tools.documents.ingest import DocumentIngest, DocumentReading
from tools.labs.series import SeriesSet
from tools.record import PatientRecord
from tools.trends import Trend
from tools.writeback import ModelIdentity
from tools.writeback.pending import PendingWrite, WriteOutcome


class SummarizeState(TypedDict, total=False):
    patient_id: str
    # Set when nothing changed since the last complete run (its mark's `through`, ISO 8601): the
    # run ends before reading the record (`agent.planning.change_marks`).
    unchanged_since: str
    record: PatientRecord
    # What is new since ChartAgent's last run for this patient: the items the graph fans out over.
    worklist: Worklist
    # One per lab-report document read (appended by the parallel branches), settled in order.
    readings: Annotated[list[DocumentReading], operator.add]
    # Lab-report PDFs read, per document, and the Observations transcribed from them.
    documents: DocumentIngest
    # One line per imaging comparison: analysed, skipped or failed, with the reason.
    imaging_lines: Annotated[list[str], operator.add]
    series: SeriesSet
    trends: list[Trend]
    facts: SummaryFacts
    narrative: str
    # Who wrote the narrative when a model did; absent: the templated one (the trend engine's).
    narrative_identity: ModelIdentity
    # Why the narrative is the templated one (no model, or the model's answer was not usable).
    synthesis_note: str
    # One transaction per analysis, appended by the nodes that compute them (a reducer, so that
    # parallel branches may add theirs); posted by the write node (`agent.nodes.write_back`).
    pending: Annotated[list[PendingWrite], operator.add]
    # One outcome per pending write posted (in a dry run: would-be), in posting order.
    writes: Annotated[list[WriteOutcome], operator.add]
    # Set when the run ends early (nothing to summarise); never patient data.
    note: str
