"""The longitudinal summary as one pending write (pure): trend Observations, the report and
their Provenance, in a transaction of its own.

The report's text lists the imaging comparisons (one line each) and what the lab-report PDFs
contributed, but the imaging reports and the transcriptions are pending writes of their own.
Where a newer summary replaces an older current one, its transaction also retires that one
(`tools.writeback.supersede`).
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.state import SummarizeState
from tools.documents.summary import document_lines
from tools.record import PatientRecord
from tools.writeback import build_patient_transaction, is_document_extraction
from tools.writeback.pending import PendingWrite, WriteKind
from tools.writeback.supersede import with_superseded


def document_refs(record: PatientRecord) -> frozenset[str]:
    """References of the record's results transcribed from lab-report PDFs (marked in table and plots)."""
    return frozenset(
        f"Observation/{o.id}"
        for o in record.of_type("Observation")
        if o.id is not None and is_document_extraction(o)
    )


def build_summary(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    record = state["record"]
    trends = state["trends"]
    lines = document_lines(state.get("documents"))
    narrative = state["narrative"] + ("\n\n" + "\n".join(lines) if lines else "")
    bundle = build_patient_transaction(
        subject=f"Patient/{state['patient_id']}",
        trends=trends,
        narrative=narrative,
        issued=runtime.context.now,
        # The model that wrote the narrative, if any: it is credited with the report only.
        narrative_identity=state.get("narrative_identity"),
        document_refs=document_refs(record),
        imaging_summaries=state.get("imaging_lines") or (),
        # What this run read: the next run recomputes nothing unless it changes.
        read_inputs=state["worklist"].read_inputs,
    )
    sources = sorted({s.reference for t in trends for s in t.sources})
    summary = PendingWrite.of(
        WriteKind.LONGITUDINAL_SUMMARY,
        # The newer summary retires the older current one.
        with_superseded(bundle, record.of_type("DiagnosticReport")),
        reason=f"longitudinal summary of {len(trends)} lab series from {len(sources)} results",
        inputs=tuple(sources),
    )
    return {"pending": [summary]}
