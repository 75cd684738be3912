"""Typed routing decisions of the summarization graph."""

from __future__ import annotations

from typing import Final, Literal

from agent.state import SummarizeState

# langgraph.graph.END, spelled out: it is typed as plain `str`, and routing is typed.
END: Final = "__end__"


def after_trends(state: SummarizeState) -> Literal["compare_imaging", "__end__"]:
    """Lab series get a summary and imaging studies their comparisons; a patient with neither has
    nothing more to analyse (its lab-report transcriptions are written already)."""
    if state.get("trends") or state["record"].of_type("ImagingStudy"):
        return "compare_imaging"
    return END


def after_imaging(state: SummarizeState) -> Literal["synthesize", "write_back"]:
    """Without lab series there is no summary: the imaging reports alone are written."""
    return "synthesize" if state.get("trends") else "write_back"
