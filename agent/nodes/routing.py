"""Typed routing decisions of the summarization graph."""

from __future__ import annotations

from typing import Final, Literal

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.state import SummarizeState

# langgraph.graph.END, spelled out: it is typed as plain `str`, and routing is typed.
END: Final = "__end__"


def after_trends(state: SummarizeState) -> Literal["compare_imaging", "__end__"]:
    """A patient without any numeric lab series gets no report: there is nothing to summarise."""
    return "compare_imaging" if state.get("trends") else END


def after_bundle(state: SummarizeState, runtime: Runtime[RunContext]) -> Literal["write_back", "__end__"]:
    return END if runtime.context.dry_run else "write_back"
