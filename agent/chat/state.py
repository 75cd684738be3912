"""Typed state of the chat graph. Plain JSON values only: the checkpointer keeps a thread's memory."""

from __future__ import annotations

from typing import Any, TypedDict


class ChatState(TypedDict, total=False):
    # Input of a turn.
    question: str
    patient_id: str
    # The patient the thread is about (set on its first turn; a later turn on another is refused).
    thread_patient: str
    # Memory of the thread: earlier turns, and everything any tool returned in it.
    history: list[dict[str, str]]  # [{"question": .., "answer": ..}]
    retrieved: dict[str, dict[str, Any]]  # reference -> Citation (model_dump)
    known: list[str]  # fact lines: where an answer's numbers may come from
    # This turn.
    results: list[dict[str, Any]]  # ToolResult dumps, in call order
    steps: int
    action: dict[str, Any] | None
    # Set when the model planner failed or broke the protocol: the turn goes on from retrieval.
    fallback: bool
    answer: str
    citations: list[dict[str, Any]]
    flags: list[str]
    proposal: str | None
    written: str | None  # the note's reference once confirmed and written
