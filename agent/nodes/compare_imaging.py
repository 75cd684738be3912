"""One imaging comparison (current vs prior, or a study without a prior read alone) through the
configured model (`tools.imaging_review.review_pair`): a fan-out branch of its own.

A comparison whose answer cannot be read writes nothing and says why. An analysed one is one
pending write (its report, Device and Provenance, retiring the older current report of the same
studies), posted by the write node.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.nodes.plan_work import ComparisonTask
from agent.state import SummarizeState
from fhir_adapters.parsing import parse_many
from tools.imaging_review import ReviewOptions, review_pair
from tools.record import build_record


async def compare_pair(state: ComparisonTask, runtime: Runtime[RunContext]) -> SummarizeState:
    ctx = runtime.context
    assert ctx.model is not None, "the planner sends comparisons only when a model is configured"
    assert ctx.dicomweb is not None, "the planner sends comparisons only when a PACS is configured"
    studies = build_record(state["patient_id"], state["studies"], types=("ImagingStudy",))
    outcome = await review_pair(
        state["plan"],
        studies,
        dicomweb=ctx.dicomweb,
        model=ctx.model,
        fhir=ctx.fhir,
        now=ctx.now,
        options=ReviewOptions(),
    )
    written = outcome.pending_write(parse_many(state["reports"]).resources)
    return {"imaging_lines": [outcome.summary], "pending": [written] if written is not None else []}
