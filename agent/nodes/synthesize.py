"""Synthesis: the narrative of the summary.

Without a model (`RunContext.model is None`) the narrative is templated from the computed facts
and `synthesis_note` says that model findings were skipped. With a model, the model writes a short
summary from those facts only (`agent.prompts.summary`); its text, under the AI-generated header,
becomes the narrative and its identity goes into the write-back (Device, Provenance, identifiers).
An answer that fails the checks (numbers not in the facts, cut short, empty, malformed: control
tokens or characters, JSON or code, no prose) is not used: the templated narrative is, and the
note says why. So is a 2xx answer that is not a readable completion (`ModelProtocolError`): the
server is up but what it answered is unusable, a problem of that answer, not of the run.
Unreachable or failing servers (`ModelTransportError`, `ModelServerError`, any other
`ModelError`) still raise and fail the patient: falling back there would hide a model outage
behind templated summaries that look like a healthy run.

Either way the results the trends could not use (`SeriesSet.excluded()`: implausible, without a
value, with a comparator or a unit that does not convert) follow the narrative, one line each with
its reference and reason, and the whole text passes `tools.text_safety.safe_text`: a model that
echoes a control or bidi character from the record does not write it back.
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
from tools.medgemma.errors import ModelProtocolError
from tools.medgemma.identity import model_identity
from tools.narrative import exclusion_lines, render_summary
from tools.text_safety import safe_text

NO_MODEL_NOTE = "no model configured: templated narrative, model findings skipped"


async def synthesize(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    out = await _narrate(state, runtime.context)
    series = state.get("series")
    lines = exclusion_lines(series.excluded()) if series is not None else []
    narrative = out["narrative"].rstrip("\n") + ("\n\n" + "\n".join(lines) if lines else "") + "\n"
    return {**out, "narrative": safe_text(narrative, multiline=True, limit=None)}


async def _narrate(state: SummarizeState, context: RunContext) -> SummarizeState:
    trends = state["trends"]
    # "As of" the newest result, not the wall clock: the same inputs give the same text.
    as_of = max(t.latest.time for t in trends)
    model = context.model
    if model is None:
        # The report's subject names the patient; the text need not repeat identifying data.
        return {"narrative": render_summary(None, trends, as_of=as_of), "synthesis_note": NO_MODEL_NOTE}
    try:
        result = await model.generate(build_summary_request(trends, as_of=as_of))
    except ModelProtocolError as exc:  # its message names the path and fields, never the answer
        reason: str | None = f"the server's answer could not be read: {exc}"
    else:
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
