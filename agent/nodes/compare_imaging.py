"""Imaging comparisons, current vs prior, through the configured model (`tools.imaging_review`).

Without a model or a PACS every planned comparison is reported as skipped and nothing is
fetched; a comparison whose answer cannot be read writes nothing and says why. Each analysed
comparison is one pending write of its own (its report, Device and Provenance, retiring the older
current report of the same studies), posted by the write node.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.state import SummarizeState
from tools.imaging_review import compare_imaging


async def compare_imaging_studies(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    ctx = runtime.context
    record = state["record"]
    review = await compare_imaging(record, dicomweb=ctx.dicomweb, model=ctx.model, now=ctx.now, fhir=ctx.fhir)
    return {"imaging": review, "pending": review.pending_writes(record.of_type("DiagnosticReport"))}
