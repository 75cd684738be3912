"""Typed routing decisions of the summarization graph."""

from __future__ import annotations

from typing import Final, Literal

from agent.planning.worklist import WorkKind
from agent.state import SummarizeState

# langgraph.graph.END, spelled out: it is typed as plain `str`, and routing is typed.
END: Final = "__end__"


def after_join(state: SummarizeState) -> Literal["compute_trends", "__end__"]:
    """The lab summary is recomputed only when the worklist says its inputs changed."""
    return "compute_trends" if state["worklist"].of_kind(WorkKind.LAB_SUMMARY) else END


def after_trends(state: SummarizeState) -> Literal["synthesize", "__end__"]:
    """Without any lab series there is no summary (transcriptions and imaging reports are written)."""
    return "synthesize" if state.get("trends") else END


def after_check(state: SummarizeState) -> Literal["gather", "__end__"]:
    """Unchanged since the last complete run: nothing is read or recomputed."""
    return END if state.get("unchanged_since") else "gather"
