"""Write-back: build the patient's transaction (pure) and post it (the only write).

The transaction is atomic and every entry is a conditional create (plus, where a newer summary
replaces an older current one, a version-checked update retiring it: `tools.writeback.supersede`),
so a rerun with the same inputs creates nothing new and a failure leaves nothing half-written.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.state import SummarizeState, WriteOutcome
from fhir_adapters.confirmed import ConfirmedTransaction, post_transaction
from tools.documents.summary import document_lines
from tools.record import PatientRecord
from tools.writeback import build_patient_transaction, is_document_extraction
from tools.writeback.supersede import with_superseded


def document_refs(record: PatientRecord) -> frozenset[str]:
    """References of the record's results transcribed from lab-report PDFs (marked in table and plots)."""
    return frozenset(
        f"Observation/{o.id}"
        for o in record.of_type("Observation")
        if o.id is not None and is_document_extraction(o)
    )


def build_bundle(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    imaging = state.get("imaging")
    lines = document_lines(state.get("documents"))
    narrative = state["narrative"] + ("\n\n" + "\n".join(lines) if lines else "")
    bundle = build_patient_transaction(
        subject=f"Patient/{state['patient_id']}",
        trends=state["trends"],
        narrative=narrative,
        issued=runtime.context.now,
        # The model that wrote the narrative, if any: it is credited with the report only.
        narrative_identity=state.get("narrative_identity"),
        document_refs=document_refs(state["record"]),
        # Imaging reports (with their Device and Provenance) land atomically with the summary.
        extra=imaging.built if imaging else (),
        imaging_summaries=imaging.summary_lines if imaging else (),
    )
    # The newer summary (and imaging report) retires the older current one of the same kind.
    bundle = with_superseded(
        bundle, [r for r in state["record"].of_type("DiagnosticReport") if isinstance(r, DiagnosticReport)]
    )
    return {"bundle": bundle}


async def write_back(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    # A lost answer is resent or read back: raises WriteNotStored / WriteOutcomeUnknown, never a guess.
    result = await post_transaction(runtime.context.fhir, state["bundle"])
    return {"written": tally(state["bundle"], result)}


def tally(bundle: dict[str, Any], result: ConfirmedTransaction) -> WriteOutcome:
    """Per resource type: entries the server created (201) vs found already there (200), or,
    when the answer was lost, found by reading the server back; and the reports retired."""
    created: Counter[str] = Counter()
    existing: Counter[str] = Counter()
    confirmed: Counter[str] = Counter()
    superseded: list[str] = []
    for sent, got in zip(bundle["entry"], result.entries, strict=True):
        rtype = sent["resource"]["resourceType"]
        if sent["request"]["method"] == "PUT":
            superseded.append(str(sent["request"]["url"]))
        elif got.created is None:
            confirmed[rtype] += 1
        else:
            (created if got.created else existing)[rtype] += 1
    return {
        "created": dict(created),
        "existing": dict(existing),
        "confirmed": dict(confirmed),
        "superseded": superseded,
    }
