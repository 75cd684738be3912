"""Synthesis: the narrative of the summary.

Without a model (`RunContext.model is None`) the narrative is templated from the computed facts
and `synthesis_note` says that model findings were skipped. With a model, the model writes a short
summary from those facts only (`agent.prompts.summary`); its text, under the AI-generated header,
becomes the narrative and its identity goes into the write-back (Device, Provenance, identifiers).
An answer that fails the checks (numbers not in the facts, cut short, empty) is not used: the
templated narrative is, and the note says why. A failing model server raises its `ModelError`.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.prompts.summary import (
    PROMPT_VERSION,
    build_summary_request,
    facts_text,
    model_narrative,
    rejection_reason,
)
from agent.state import SummarizeState
from tools.medgemma.identity import model_identity
from tools.narrative import render_summary

NO_MODEL_NOTE = "no model configured: templated narrative, model findings skipped"


async def synthesize(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    trends = state["trends"]
    # "As of" the newest result, not the wall clock: the same inputs give the same text.
    as_of = max(t.latest.time for t in trends)
    model = runtime.context.model
    if model is None:
        # The report's subject names the patient; the text need not repeat identifying data.
        return {"narrative": render_summary(None, trends, as_of=as_of), "synthesis_note": NO_MODEL_NOTE}
    result = await model.generate(build_summary_request(trends, as_of=as_of))
    reason = rejection_reason(result, facts_text(trends, as_of=as_of))
    if reason is not None:
        return {
            "narrative": render_summary(None, trends, as_of=as_of),
            "synthesis_note": f"model summary not used ({reason}): templated narrative",
        }
    return {
        "narrative": model_narrative(result.text, model.info, as_of=as_of),
        "narrative_identity": model_identity(model.info, PROMPT_VERSION),
    }
