"""The agent's typed tools (`ToolRegistry`), each with a pydantic input and output, facts and citations."""

from __future__ import annotations

from tools.registry.imaging_tools import ANALYZE_STUDY, COMPARE_WITH_PRIOR, LIST_IMAGING_STUDIES
from tools.registry.lab_tools import LAB_TREND, READ_LAB_REPORT
from tools.registry.model import Citation, ToolContext, ToolFact, ToolOutput
from tools.registry.record_tools import CONDITIONS_AND_MEDICATIONS, RECORD_MANIFEST, SEARCH_RESOURCES
from tools.registry.registry import PatientScoped, Tool, ToolRegistry, ToolResult

__all__ = [
    "Citation",
    "PatientScoped",
    "Tool",
    "ToolContext",
    "ToolFact",
    "ToolOutput",
    "ToolRegistry",
    "ToolResult",
    "read_tools",
]


def read_tools() -> ToolRegistry:
    """Every tool that only reads: what a planner may call without asking anyone."""
    return ToolRegistry(
        [
            RECORD_MANIFEST,
            SEARCH_RESOURCES,
            LAB_TREND,
            READ_LAB_REPORT,
            LIST_IMAGING_STUDIES,
            ANALYZE_STUDY,
            COMPARE_WITH_PRIOR,
            CONDITIONS_AND_MEDICATIONS,
        ]
    )
