"""The chat graph's stream as AG-UI events (pure: no I/O, no clock).

`RunEvents` turns each node update of `agent.graphs.chat` (LangGraph `stream_mode="updates"`)
into protocol events: the record manifest of `start_turn` and each `plan` -> `act` step become
`TOOL_CALL_START/ARGS/END` and `TOOL_CALL_RESULT` (the result's facts with their citations, as
JSON); an answer becomes `TEXT_MESSAGE_START/CONTENT/END` (the text in chunks: the planners
answer whole, so the answer is chunked here); the run ends with `RUN_FINISHED` (the `AskResult`
of `chartagent ask --json` as its `result`; outcome `interrupt` while a note waits for a
person's decision) or `RUN_ERROR` with a fixed, PHI-free message per error class.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from ag_ui.core import (
    BaseEvent,
    Interrupt,
    RunErrorEvent,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from pydantic import BaseModel

from agent.chat.actions import AskResult, CitedValue, ToolCallEcho
from fhir_adapters.error_tree import (
    BadInputError,
    ChartAgentError,
    ConfigurationError,
    ServiceError,
    ServiceHttpError,
    ServiceOutcomeUnknown,
    ServiceProtocolError,
    ServiceTransportError,
)
from tools.registry import ToolResult

__all__ = [
    "CHUNK_CHARS",
    "INTERRUPT_REASON",
    "PendingNote",
    "RunEvents",
    "ask_result",
    "chunk_text",
    "error_event",
    "tool_result_content",
]

# Characters per TEXT_MESSAGE_CONTENT delta (cut at whitespace; a longer word is one delta).
CHUNK_CHARS: Final = 64
INTERRUPT_REASON: Final = "confirm_write"
# What a resume must carry: forwardedProps {"command": {"resume": "approve" | "reject"}}.
RESUME_SCHEMA: Final = {
    "type": "object",
    "properties": {"resume": {"enum": ["approve", "reject"]}},
    "required": ["resume"],
}

# One message per branch of the error tree, most specific first: never the exception's text,
# which may quote a resource, a URL with a patient id, or a model's output.
_ERRORS: Final[tuple[tuple[type[BaseException], str, str], ...]] = (
    (
        ServiceOutcomeUnknown,
        "outcome_unknown",
        "A write to the record failed after the server may have stored it; check the record before retrying.",
    ),
    (ServiceTransportError, "service_unreachable", "A server the chat needs could not be reached."),
    (ServiceHttpError, "service_error", "A server the chat needs answered with an error."),
    (ServiceProtocolError, "service_protocol", "A server the chat needs gave an answer that cannot be used."),
    (ServiceError, "service_error", "A server the chat needs failed."),
    (ConfigurationError, "configuration", "The service is not configured for this chat."),
    (BadInputError, "bad_input", "The request could not be used."),
    (ChartAgentError, "chat_failed", "The chat could not answer."),
)
_INTERNAL: Final = ("internal", "Internal error: the chat stopped.")
_PIECE: Final = re.compile(r"\s*\S+|\s+$")


class PendingNote(BaseModel):
    """A proposed write the run paused on (the graph's interrupt)."""

    interrupt_id: str
    proposal: str


def chunk_text(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """`text` in deltas of about `size` characters, cut before whitespace; joined, it is `text`."""
    chunks: list[str] = []
    current = ""
    for piece in _PIECE.findall(text):
        if current and len(current) + len(piece) > size:
            chunks.append(current)
            current = ""
        current += piece
    if current:
        chunks.append(current)
    return chunks


def tool_result_content(result: ToolResult) -> str:
    """The TOOL_CALL_RESULT content: the facts with the citations they rest on (JSON)."""
    body = {
        "tool": result.tool,
        "ok": result.ok,
        "facts": [
            {
                "text": f.text,
                "citations": [c.model_dump(mode="json", exclude_none=True) for c in f.citations],
            }
            for f in result.facts
        ],
        "note": result.note,
        "error": result.error,
    }
    return json.dumps(body, separators=(",", ":"))


def ask_result(state: Mapping[str, Any], model: str | None, extra_flags: list[str]) -> AskResult:
    """The run's `AskResult` (the `chartagent ask --json` contract) from the graph's state."""
    return AskResult(
        answer=state.get("answer") or "",
        citations=[CitedValue.model_validate(c) for c in state.get("citations") or []],
        tool_calls=[ToolCallEcho(tool=r["tool"], input=r["input"]) for r in state.get("results") or []],
        model=model,
        flags=[*(state.get("flags") or []), *extra_flags],
    )


def error_event(exc: BaseException) -> RunErrorEvent:
    for kind, code, message in _ERRORS:
        if isinstance(exc, kind):
            return RunErrorEvent(message=message, code=code)
    code, message = _INTERNAL
    return RunErrorEvent(message=message, code=code)


class RunEvents:
    """The events of one run. Ids are derived from the run id (tool call n: `<run>-tool-<n>`)."""

    def __init__(self, thread_id: str, run_id: str) -> None:
        self.thread_id = thread_id
        self.run_id = run_id
        self._calls = 0
        self._messages = 0
        # The tool call `plan` announced and `act` has not answered yet.
        self._open_call: str | None = None

    def started(self) -> RunStartedEvent:
        return RunStartedEvent(thread_id=self.thread_id, run_id=self.run_id)

    def _next_call_id(self) -> str:
        self._calls += 1
        return f"{self.run_id}-tool-{self._calls}"

    def _next_message_id(self) -> str:
        self._messages += 1
        return f"{self.run_id}-msg-{self._messages}"

    def tool_call(self, call_id: str, tool: str, arguments: Mapping[str, Any]) -> list[BaseEvent]:
        return [
            ToolCallStartEvent(tool_call_id=call_id, tool_call_name=tool),
            ToolCallArgsEvent(tool_call_id=call_id, delta=json.dumps(dict(arguments), separators=(",", ":"))),
            ToolCallEndEvent(tool_call_id=call_id),
        ]

    def tool_result(self, call_id: str, result: ToolResult) -> ToolCallResultEvent:
        return ToolCallResultEvent(
            message_id=self._next_message_id(),
            tool_call_id=call_id,
            content=tool_result_content(result),
            role="tool",
        )

    def text(self, text: str) -> list[BaseEvent]:
        """One assistant message (nothing for empty text: a delta may not be empty)."""
        if not text:
            return []
        message_id = self._next_message_id()
        return [
            TextMessageStartEvent(message_id=message_id, role="assistant"),
            *(TextMessageContentEvent(message_id=message_id, delta=c) for c in chunk_text(text)),
            TextMessageEndEvent(message_id=message_id),
        ]

    def on_update(self, node: str, update: Mapping[str, Any] | None) -> list[BaseEvent]:
        """The events of one node's state update (other nodes and keys: none)."""
        if not update:
            return []
        if node == "start_turn":
            # The record manifest ran inside start_turn: announce and answer it at once.
            results = update.get("results") or []
            if not results:
                return []  # refused before any tool ran
            manifest = ToolResult.model_validate(results[-1])
            call_id = self._next_call_id()
            announce = self.tool_call(call_id, manifest.tool, manifest.input)
            return [*announce, self.tool_result(call_id, manifest)]
        if node == "plan":
            action = update.get("action") or {}
            if action.get("action") != "call":
                return []
            self._open_call = self._next_call_id()
            return self.tool_call(self._open_call, str(action.get("tool")), action.get("input") or {})
        if node == "act":
            results = update.get("results") or []
            if not results or self._open_call is None:
                return []
            call_id, self._open_call = self._open_call, None
            return [self.tool_result(call_id, ToolResult.model_validate(results[-1]))]
        if node in ("answer", "confirm_note"):
            return self.text(str(update.get("answer") or ""))
        return []

    def finished(self, result: AskResult, pending: PendingNote | None = None) -> RunFinishedEvent:
        outcome = None
        if pending is not None:
            outcome = RunFinishedInterruptOutcome(
                interrupts=[
                    Interrupt(
                        id=pending.interrupt_id,
                        reason=INTERRUPT_REASON,
                        message=pending.proposal,
                        response_schema=RESUME_SCHEMA,
                    )
                ]
            )
        return RunFinishedEvent(
            thread_id=self.thread_id,
            run_id=self.run_id,
            result=result.model_dump(mode="json"),
            outcome=outcome,
        )
