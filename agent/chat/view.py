"""What a planner sees at each step: the question, the conversation so far, the tools, the results."""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.registry import ToolRegistry, ToolResult

__all__ = ["PlanView", "Turn"]


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str


@dataclass(frozen=True)
class PlanView:
    question: str
    tools: ToolRegistry
    history: list[Turn] = field(default_factory=list)
    # This turn's tool results, in call order (the first is always the record manifest).
    results: list[ToolResult] = field(default_factory=list)

    def called(self) -> set[tuple[str, str]]:
        return {(r.tool, repr(sorted(r.input.items()))) for r in self.results}
