"""Synthesis: the narrative of the summary.

While no model is configured the narrative is templated from the computed facts only; the
MedGemma node plugs in here later (the same inputs, a model identity in the provenance).
"""

from __future__ import annotations

from agent.state import SummarizeState
from tools.narrative import render_summary


def synthesize(state: SummarizeState) -> SummarizeState:
    trends = state["trends"]
    # "As of" the newest result, not the wall clock: the same inputs give the same text.
    as_of = max(t.latest.time for t in trends)
    # The report's subject names the patient; the text need not repeat identifying data.
    narrative = render_summary(None, trends, as_of=as_of)
    return {"narrative": narrative}
