"""Imaging comparisons, current vs prior, through the configured model (`tools.imaging_review`).

Without a model or a PACS every planned comparison is reported as skipped and nothing is
fetched; a comparison whose answer cannot be read writes nothing and says why.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.state import SummarizeState
from tools.imaging_review import compare_imaging


async def compare_imaging_studies(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    ctx = runtime.context
    review = await compare_imaging(
        state["record"], dicomweb=ctx.dicomweb, model=ctx.model, now=ctx.now, fhir=ctx.fhir
    )
    return {"imaging": review}
