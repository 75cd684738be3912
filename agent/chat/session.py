"""One question to the chat graph, with its thread's memory on the checkpointer.

`ask` runs a turn (or resumes one paused on a proposed write with the person's decision) and
returns the `AskResult` contract. A turn paused on a proposal answers with the proposal and the
flag `write proposed: not saved until confirmed`.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command

from agent.chat.actions import AskResult, CitedValue, ToolCallEcho
from agent.chat.context import ChatContext
from agent.chat.state import ChatState
from agent.graphs.chat import build_chat_graph

__all__ = ["AWAITING_CONFIRMATION", "ask"]

AWAITING_CONFIRMATION: Final = "write proposed: not saved until confirmed"


async def ask(
    ctx: ChatContext,
    question: str | None,
    *,
    saver: BaseCheckpointSaver[Any],
    thread_id: str | None = None,
    decision: bool | None = None,
) -> AskResult:
    """Ask `question` on `thread_id` (a new thread when None), or with `decision` set, answer the
    proposal the thread is paused on (True: write it; False: drop it)."""
    graph = build_chat_graph().compile(checkpointer=saver, name="chat")
    config: Any = {"configurable": {"thread_id": thread_id or str(uuid.uuid4())}}
    if decision is not None:
        paused = await graph.aget_state(config)
        if not paused.interrupts:
            return _result({}, ctx, ["nothing is waiting for confirmation on this thread"])
        state = await graph.ainvoke(Command(resume={"approve": decision}), config=config, context=ctx)
    else:
        if not question or not question.strip():
            return _result({}, ctx, ["the question is empty"])
        turn: ChatState = {"question": question.strip(), "patient_id": ctx.tools.patient_id}
        state = await graph.ainvoke(turn, config=config, context=ctx)
    snapshot = await graph.aget_state(config)
    if snapshot.interrupts:
        proposal = snapshot.interrupts[0].value.get("proposal", "")
        values = dict(snapshot.values)
        values["answer"] = f"Proposed note (not saved until confirmed):\n{proposal}"
        return _result(values, ctx, [AWAITING_CONFIRMATION])
    return _result(dict(state), ctx, [])


def _result(state: dict[str, Any], ctx: ChatContext, extra_flags: list[str]) -> AskResult:
    calls = [ToolCallEcho(tool=r["tool"], input=r["input"]) for r in state.get("results") or []]
    return AskResult(
        answer=state.get("answer") or "",
        citations=[CitedValue.model_validate(c) for c in state.get("citations") or []],
        tool_calls=calls,
        model=ctx.planner.name,
        flags=[*(state.get("flags") or []), *extra_flags],
    )
