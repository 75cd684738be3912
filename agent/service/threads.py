"""Chat threads: their checkpointer key (namespaced by patient), the busy-thread registry (this
process's, and the replicas' shared claims: agent.service.thread_runs), and
`GET /api/threads/{id}` (the thread's history, for the principal's own patient only).

A client's `threadId` is stored as `chat/<server>/<patient>/<threadId>` (`<server>` a digest of the
FHIR server's base URL): the same id sent by a session of another patient, or of the same patient
id at another EHR, names another (empty) thread, so a thread can never be read or resumed from
another patient's session, and the answer (404) does not say whether the id exists elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from agent.chat.actions import CitedValue
from agent.chat.session import AWAITING_CONFIRMATION
from agent.service.authz import current_principal
from agent.service.fhir_access import fhir_base_of
from agent.service.principal import Principal
from agent.service.runtime import runtime_of
from agent.service.thread_runs import SharedThreadRuns, ThreadRunsUnavailable
from tools.record import DEFAULT_TYPES

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    from agent.chat.context import ChatContext
    from agent.chat.state import ChatState

    ChatGraph = CompiledStateGraph[ChatState, ChatContext, ChatState, ChatState]

__all__ = [
    "CHAT_READS",
    "NOTE_WRITES",
    "THREAD_ID_PATTERN",
    "BusyThreads",
    "HistoryMessage",
    "PendingWrite",
    "ThreadHistory",
    "ThreadLease",
    "checkpoint_thread",
    "install",
    "may_save_notes",
    "read_history",
    "require_chat_reads",
    "valid_thread_id",
]

log = logging.getLogger(__name__)

# What a client may use as a thread id (AG-UI clients send UUIDs): no slash, bounded.
THREAD_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_THREAD_ID: Final = re.compile(THREAD_ID_PATTERN)
NOT_FOUND: Final = "no such thread"
# What the chat's tools read (the record's types and the Patient), each with read and search.
CHAT_READS: Final = ("Patient", *DEFAULT_TYPES)
# What a confirmed note's transaction creates (tools.writeback.chat_note; a test keeps them equal).
NOTE_WRITES: Final = ("DocumentReference", "Device", "Provenance")


def require_chat_reads(principal: Principal) -> None:
    """403 unless the principal may read and search everything the chat's tools read."""
    for resource_type in CHAT_READS:
        principal.require(resource_type, "r")
        principal.require(resource_type, "s")


def may_save_notes(principal: Principal) -> bool:
    return all(principal.may(t, "c") for t in NOTE_WRITES)


def valid_thread_id(thread_id: str) -> bool:
    return _THREAD_ID.fullmatch(thread_id) is not None


def checkpoint_thread(fhir_base: str, patient_id: str, thread_id: str) -> str:
    """The checkpointer's thread for a client's `thread_id` in the conversations about
    `patient_id` of the FHIR server `fhir_base` (named by a digest: no URL in the key)."""
    server = hashlib.sha256(fhir_base.rstrip("/").encode()).hexdigest()[:16]
    return f"chat/{server}/{patient_id}/{thread_id}"


class ThreadLease:
    """A claim on one thread for the length of a run; `release` may be called more than once.
    With the shared claims (`BusyThreads.shared`) it renews its claim there until released."""

    def __init__(self, owner: BusyThreads, key: str, shared: SharedThreadRuns | None) -> None:
        self._owner = owner
        self._key = key
        self._held = True
        self._shared = shared
        self._holder = uuid.uuid4().hex
        self._renewal: asyncio.Task[None] | None = None

    async def _claim_shared(self) -> bool:
        if self._shared is None:
            return True
        if not await self._shared.claim(self._key, self._holder):
            return False
        self._renewal = asyncio.create_task(self._renew(self._shared))
        return True

    async def _renew(self, shared: SharedThreadRuns) -> None:
        while True:
            await asyncio.sleep(shared.ttl_s / 3)
            try:
                if not await shared.renew(self._key, self._holder):
                    log.warning("a chat run lost its thread's claim (not renewed in %.0f s)", shared.ttl_s)
                    return
            except ThreadRunsUnavailable as exc:  # tried again at the next turn, before it expires
                log.warning("%s", exc)

    async def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
        try:
            if self._shared is not None:
                await self._release_shared(self._shared)
        finally:
            self._owner._release(self._key)

    async def _release_shared(self, shared: SharedThreadRuns) -> None:
        try:
            await shared.release(self._key, self._holder)
        except ThreadRunsUnavailable as exc:  # the claim expires by itself
            log.warning("%s; it expires within %.0f s", exc, shared.ttl_s)


class BusyThreads:
    """Threads with a run in progress: a second run on one is refused (409), never interleaved.
    In this process by a set; across the replicas that share the state database by the claims of
    `shared` (agent.service.thread_runs), which the app's lifespan sets."""

    def __init__(self) -> None:
        self._held: set[str] = set()
        self.shared: SharedThreadRuns | None = None

    async def claim(self, thread: str) -> ThreadLease | None:
        """A lease on the thread (its `checkpoint_thread` key), or None while another run holds it.
        The process's own set is tested and taken with no await between (atomic on the event
        loop), then the shared claim. Raises `ThreadRunsUnavailable` when the shared claims cannot
        be reached."""
        if thread in self._held:
            return None
        self._held.add(thread)
        lease = ThreadLease(self, thread, self.shared)
        claimed = False
        try:
            claimed = await lease._claim_shared()
        finally:
            if not claimed:
                self._held.discard(thread)
        return lease if claimed else None

    def _release(self, thread: str) -> None:
        self._held.discard(thread)


class _Wire(BaseModel):
    # camelCase on the wire, like AG-UI's own shapes.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class HistoryMessage(_Wire):
    id: str
    role: Literal["user", "assistant"]
    content: str
    citations: list[CitedValue] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)


class PendingWrite(_Wire):
    """The note the thread is paused on: resume with forwardedProps.command.resume."""

    interrupt_id: str
    proposal: str


class ThreadHistory(_Wire):
    thread_id: str
    messages: list[HistoryMessage]
    pending: PendingWrite | None = None


async def read_history(graph: ChatGraph, thread: str, thread_id: str) -> ThreadHistory | None:
    """The thread's finished turns, oldest first, and the proposal it waits on; None when the
    thread (its `checkpoint_thread` key; `thread_id` the client's) has no checkpoint."""
    config: Any = {"configurable": {"thread_id": thread}}
    latest = await graph.aget_state(config)
    if not latest.values:
        return None
    # A turn ends in a checkpoint with nothing left to run; its `history` has grown by one.
    turns: dict[int, tuple[str, dict[str, Any]]] = {}
    async for snapshot in graph.aget_state_history(config):
        values = snapshot.values
        done = len(values.get("history") or [])
        if snapshot.next or not done or done in turns:
            continue
        checkpoint_id = str(snapshot.config["configurable"].get("checkpoint_id", done))
        turns[done] = (checkpoint_id, values)
    messages: list[HistoryMessage] = []
    for _, (checkpoint_id, values) in sorted(turns.items()):
        messages += [
            HistoryMessage(id=f"{checkpoint_id}-user", role="user", content=str(values.get("question", ""))),
            HistoryMessage(
                id=f"{checkpoint_id}-assistant",
                role="assistant",
                content=str(values.get("answer", "")),
                citations=[CitedValue.model_validate(c) for c in values.get("citations") or []],
                flags=list(values.get("flags") or []),
            ),
        ]
    pending = None
    if latest.interrupts:
        first = latest.interrupts[0]
        proposal = first.value.get("proposal", "") if isinstance(first.value, dict) else ""
        pending = PendingWrite(interrupt_id=first.id, proposal=str(proposal))
        messages += [
            HistoryMessage(id=f"{first.id}-user", role="user", content=latest.values.get("question") or ""),
            HistoryMessage(
                id=f"{first.id}-assistant",
                role="assistant",
                content=f"Proposed note (not saved until confirmed):\n{pending.proposal}",
                flags=[*(latest.values.get("flags") or []), AWAITING_CONFIRMATION],
            ),
        ]
    return ThreadHistory(thread_id=thread_id, messages=messages, pending=pending)


router = APIRouter(tags=["chat"])


@router.get(
    "/api/threads/{thread_id}",
    response_model=ThreadHistory,
    responses={404: {"description": "No such thread for this session's patient."}},
)
async def get_thread(
    request: Request,
    thread_id: Annotated[str, Path(pattern=THREAD_ID_PATTERN)],
    principal: Annotated[Principal, Depends(current_principal)],
) -> ThreadHistory:
    """The thread's messages (role, content, citations, flags) for the principal's own patient."""
    patient = principal.bound_patient()
    require_chat_reads(principal)
    chat = runtime_of(request).chat
    if chat is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND)
    parts = await chat.parts()
    thread = checkpoint_thread(fhir_base_of(request, principal), patient, thread_id)
    history = await read_history(parts.graph, thread, thread_id)
    if history is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND)
    return history


def install(app: FastAPI) -> None:
    app.include_router(router)
