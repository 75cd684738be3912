"""Per-conversation context of the chat graph (LangGraph `context_schema`)."""

from __future__ import annotations

from dataclasses import dataclass

from agent.chat.planner import Planner
from tools.registry import ToolContext, ToolRegistry


@dataclass(frozen=True)
class ChatContext:
    tools: ToolContext
    # What the planner may call: read-only tools only; writes are proposals (`ProposeNote`).
    registry: ToolRegistry
    planner: Planner
    # Tool calls per turn before the answer is given from what was found.
    max_steps: int = 8
