"""The chat endpoint: `POST /api/agent`, AG-UI over server-sent events.

The body is an AG-UI `RunAgentInput`. The question is the last `user` message (earlier messages
are not read: the thread's memory is the checkpointer's). The patient is the principal's
(`bound_patient()`), never the body's: `state`, `context`, `tools` and `forwardedProps` naming a
patient change nothing, and a question about another patient is refused by the chat's own rule.
`threadId` is the checkpointer's thread (`agent.service.threads.checkpoint_thread`).

Resuming a run that finished with outcome `interrupt` (a note proposed, nothing written): send a
`RunAgentInput` on the same `threadId` with

    "forwardedProps": {"command": {"resume": "approve"}}      (or "reject")

or, in AG-UI 1.0's own form, `"resume": [{"interruptId": "<id>", "status": "resolved",
"payload": "approve"}]` (`"status": "cancelled"` rejects). An interrupt id (`interruptId` beside
`resume` in the command, or the entry's) must name the proposal the thread waits on, else 409.
Approving needs the `.c` scope on every type the note's transaction creates (`NOTE_WRITES`); a
session without it has the proposal refused (the run says so, and nothing is written).

A run may write (an approved note): a session's POST carries its CSRF token (`X-CSRF-Token`,
`agent.service.csrf`); bearer-token callers send no ambient credentials and are exempt.

Answers: 200 with the event stream; 401/403 (no principal, system caller, scopes); 404 (resume
on a thread this patient does not have); 409 (a run is in progress on the thread, in this replica
or another sharing its state database, or a resume with nothing waiting or naming another
proposal); 422 (no question, bad thread id or resume value); 503 (the checkpointer, the model or
the shared record of running threads cannot be reached). A client that disconnects
cancels the run: the graph's task is cancelled and the thread released.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import anyio
from ag_ui.core import BaseEvent, RunAgentInput, TextPart, UserMessage
from ag_ui.encoder import EventEncoder
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command
from starlette.types import Receive, Scope, Send

from agent.chat.planner import Planner
from agent.chat.session import AWAITING_CONFIRMATION
from agent.metrics import chat_run
from agent.service import threads
from agent.service.agui_events import PendingNote, RunEvents, ask_result, error_event
from agent.service.csrf import require_csrf
from agent.service.fhir_access import fhir_base_of, fhir_for
from agent.service.lifespans import add_lifespan
from agent.service.principal import Principal
from agent.service.record_reuse import reused_record
from agent.service.runtime import ServiceRuntime, runtime_of
from agent.service.thread_runs import ThreadRunsUnavailable, open_thread_runs
from agent.service.threads import (
    NOTE_WRITES,
    BusyThreads,
    ThreadLease,
    checkpoint_thread,
    may_save_notes,
    require_chat_reads,
    valid_thread_id,
)
from tools.registry import ToolContext, ToolRegistry

if TYPE_CHECKING:
    from agent.service.threads import ChatGraph
    from tools.imaging.dicomweb import DicomWebClient
    from tools.medgemma.types import ModelBackend

__all__ = [
    "ChatParts",
    "ChatService",
    "Resume",
    "install",
    "question_of",
    "resume_of",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

WRITE_REFUSED: Final = (
    "This session may not save notes to the chart (its scopes do not allow creating "
    + ", ".join(NOTE_WRITES)
    + "): the note was not saved."
)
WRITE_REFUSED_FLAG: Final = "write refused: the session's scopes do not allow saving notes"
MAX_QUESTION_CHARS: Final = 4000
# How long a cancelled run may take to unwind before its thread is released anyway.
CANCEL_WAIT_S: Final = 10.0


def question_of(body: RunAgentInput) -> str | None:
    """The text of the last user message (its text parts joined), or None."""
    for message in reversed(body.messages):
        if isinstance(message, UserMessage):
            content = message.content
            if isinstance(content, str):
                return content.strip() or None
            text = "\n".join(p.text for p in content if isinstance(p, TextPart)).strip()
            return text or None
    return None


@dataclass(frozen=True)
class Resume:
    """A person's decision on the proposal a thread waits on."""

    approve: bool
    # The interrupt answered, when the client names it: it must be the one the thread waits on
    # (a stale approval never approves a newer proposal).
    interrupt_id: str | None = None


def resume_of(body: RunAgentInput) -> Resume | None:
    """The decision when the body resumes an interrupt, else None; 422 for a resume that says
    neither approve nor reject."""
    props = body.forwarded_props
    if isinstance(props, Mapping):
        command = props.get("command")
        if isinstance(command, Mapping) and "resume" in command:
            named = command.get("interruptId")
            return Resume(_decision(command["resume"]), named if isinstance(named, str) else None)
    if body.resume:
        entry = body.resume[0]
        if entry.status == "cancelled":
            return Resume(False, entry.interrupt_id)
        return Resume(_decision(entry.payload), entry.interrupt_id)
    return None


def _decision(value: Any) -> bool:
    if value in ("approve", "reject"):
        return bool(value == "approve")
    if isinstance(value, Mapping) and isinstance(value.get("approve"), bool):
        return bool(value["approve"])
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail='resume must be "approve" or "reject"')


@dataclass(frozen=True)
class ChatParts:
    """What every chat run shares: opened once, on first use."""

    saver: BaseCheckpointSaver[Any]
    graph: ChatGraph
    registry: ToolRegistry
    planner: Planner
    model: ModelBackend | None
    dicomweb: DicomWebClient | None


class ChatService:
    """The chat's process-wide parts (opened lazily, closed at shutdown) and its busy threads."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self._runtime = runtime
        self.busy = BusyThreads()
        self._parts: ChatParts | None = None
        self._stack: AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    async def parts(self) -> ChatParts:
        if self._parts is not None:
            return self._parts
        async with self._lock:
            if self._parts is None:
                self._parts = await self._open()
            return self._parts

    async def _open(self) -> ChatParts:
        from agent.chat.planners import choose_planner
        from agent.checkpoints import open_checkpointer
        from agent.connections import open_dicomweb_client
        from agent.graphs.chat import build_chat_graph
        from tools.medgemma.factory import open_backend
        from tools.registry import read_tools

        settings = self._runtime.settings
        # Whatever fails while opening closes what was opened; on success the parts stay open.
        async with AsyncExitStack() as stack:
            saver = await stack.enter_async_context(open_checkpointer(settings))
            model = await stack.enter_async_context(open_backend(settings))
            # Pixels are fetched only when a model can read them (as `chartagent ask`).
            pacs_url = self._runtime.dicomweb_url if model is not None else None
            pacs = None
            if pacs_url:
                pacs = await stack.enter_async_context(open_dicomweb_client(pacs_url, settings))
            parts = ChatParts(
                saver=saver,
                graph=build_chat_graph().compile(checkpointer=saver, name="chat"),
                registry=read_tools(),
                planner=choose_planner(settings, model),
                model=model,
                dicomweb=pacs,
            )
            opened = stack.pop_all()
        self._stack = opened
        return parts

    async def aclose(self) -> None:
        async with self._lock:
            stack, self._stack, self._parts = self._stack, None, None
            if stack is not None:
                await stack.aclose()


def chat_of(request: Request) -> ChatService:
    chat = runtime_of(request).chat
    if chat is None:  # install() sets it; a route without it is a wiring defect
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="the chat is not installed")
    return chat


class _LeasedStream(StreamingResponse):
    """A stream that holds its thread's lease until the response is over, however it ends (the
    body's generator may never start when the client leaves at once)."""

    def __init__(self, content: AsyncIterator[str], lease: ThreadLease, media_type: str) -> None:
        super().__init__(
            content, media_type=media_type, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        self._content = content
        self._lease = lease

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self._content, "aclose", None)
                if aclose is not None:
                    await aclose()
                await self._lease.release()


@dataclass(frozen=True)
class _Run:
    request: Request
    principal: Principal
    patient: str
    parts: ChatParts
    config: Any
    question: str | None
    decision: bool | None


_DONE: Final = object()


async def _drive(run: _Run, events: RunEvents, queue: asyncio.Queue[object]) -> None:
    """Run the graph, putting each event on `queue`, then `_DONE` (also after a failure)."""
    parts = run.parts
    runtime = runtime_of(run.request)
    settings = runtime.settings
    try:
        async with fhir_for(run.request, run.principal) as fhir:
            tools = ToolContext(
                fhir=fhir,
                patient_id=run.patient,
                dicomweb=parts.dicomweb,
                model=parts.model,
                lab_timezone=settings.lab_zone,
                record_source=reused_record(
                    runtime.records,
                    run.principal,
                    fhir_base_of(run.request, run.principal),
                    fhir,
                    run.patient,
                ),
            )
            from agent.chat.context import ChatContext

            ctx = ChatContext(tools=tools, registry=parts.registry, planner=parts.planner)
            graph_input: Any
            if run.decision is not None:
                graph_input = Command(resume={"approve": run.decision})
            else:
                graph_input = {"question": run.question, "patient_id": run.patient}
            stream = parts.graph.astream(graph_input, run.config, context=ctx, stream_mode="updates")
            async for chunk in stream:
                for node, update in chunk.items():
                    for event in events.on_update(node, update if isinstance(update, Mapping) else None):
                        queue.put_nowait(event)
            snapshot = await parts.graph.aget_state(run.config)
            model = parts.planner.name
            if not snapshot.interrupts:
                queue.put_nowait(events.finished(ask_result(snapshot.values, model, [])))
                chat_run("answered")
                return
            first = snapshot.interrupts[0]
            proposal = str(first.value.get("proposal", "")) if isinstance(first.value, Mapping) else ""
            if not may_save_notes(run.principal):
                # Not left waiting for a yes this session may not give: the proposal is dropped.
                async for _ in parts.graph.astream(
                    Command(resume={"approve": False}), run.config, context=ctx, stream_mode="updates"
                ):
                    pass
                for event in events.text(WRITE_REFUSED):
                    queue.put_nowait(event)
                result = ask_result({**snapshot.values, "answer": WRITE_REFUSED}, model, [WRITE_REFUSED_FLAG])
                queue.put_nowait(events.finished(result))
                chat_run("refused")
                return
            text = f"Proposed note (not saved until confirmed):\n{proposal}"
            for event in events.text(text):
                queue.put_nowait(event)
            result = ask_result({**snapshot.values, "answer": text}, model, [AWAITING_CONFIRMATION])
            queue.put_nowait(events.finished(result, PendingNote(interrupt_id=first.id, proposal=proposal)))
            chat_run("proposed")
    except asyncio.CancelledError:
        chat_run("cancelled")
        raise
    except Exception as exc:
        # The type only: the message may quote patient data.
        log.warning("chat run failed (%s) for %s", type(exc).__name__, run.principal.label)
        queue.put_nowait(error_event(exc))
        chat_run("failed")
    finally:
        queue.put_nowait(_DONE)


async def _stream(run: _Run, events: RunEvents, encoder: EventEncoder) -> AsyncIterator[str]:
    yield encoder.encode(events.started())
    queue: asyncio.Queue[object] = asyncio.Queue()
    task = asyncio.create_task(_drive(run, events, queue), name="chat-run")
    try:
        while (item := await queue.get()) is not _DONE:
            assert isinstance(item, BaseEvent)
            yield encoder.encode(item)
    finally:
        if not task.done():
            # The client left (or the server stops): the run is cancelled, not finished unseen.
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({task}, timeout=CANCEL_WAIT_S)
        with suppress(asyncio.CancelledError):
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: _drive reports its own failures as events


async def _available(step: Awaitable[T]) -> T:
    """`step` (opening the chat's parts, reading a checkpoint), or 503 with a fixed message."""
    try:
        return await step
    except Exception as exc:
        log.warning("the chat is not available (%s)", type(exc).__name__)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="the chat is not available now"
        ) from None


router = APIRouter(tags=["chat"])


@router.post(
    "/api/agent",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "AG-UI events (server-sent events)."},
        403: {"description": "A system caller, or scopes that do not allow the chat or the approval."},
        404: {"description": "Resume on a thread this patient does not have."},
        409: {"description": "A run is in progress on this thread, or nothing waits for a decision."},
    },
)
async def run_agent(
    body: RunAgentInput, request: Request, principal: Annotated[Principal, Depends(require_csrf)]
) -> StreamingResponse:
    """Run the chat on one question (or resume a proposed note) and stream AG-UI events."""
    patient = principal.bound_patient()
    require_chat_reads(principal)
    if not valid_thread_id(body.thread_id):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="threadId: up to 128 letters, digits and ._:-"
        )
    resume = resume_of(body)
    question = None
    if resume is None:
        question = question_of(body)
        if question is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="no user message to answer")
        if len(question) > MAX_QUESTION_CHARS:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="the question is too long")
    elif resume.approve and not may_save_notes(principal):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=WRITE_REFUSED)
    chat = chat_of(request)
    parts = await _available(chat.parts())
    thread = checkpoint_thread(fhir_base_of(request, principal), patient, body.thread_id)
    try:
        lease = await chat.busy.claim(thread)
    except ThreadRunsUnavailable:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="the chat cannot check its running threads now"
        ) from None
    if lease is None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="a run is in progress on this thread")
    config: Any = {"configurable": {"thread_id": thread}}
    handed_over = False  # the stream releases the lease once it ends
    try:
        if resume is not None:
            paused = await _available(parts.graph.aget_state(config))
            if not paused.values:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=threads.NOT_FOUND)
            if not paused.interrupts:
                raise HTTPException(status.HTTP_409_CONFLICT, detail="nothing is waiting for confirmation")
            if resume.interrupt_id is not None and resume.interrupt_id != paused.interrupts[0].id:
                raise HTTPException(status.HTTP_409_CONFLICT, detail="that proposal is no longer waiting")
        decision = resume.approve if resume is not None else None
        run = _Run(request, principal, patient, parts, config, question, decision)
        encoder = EventEncoder(accept=request.headers.get("accept", "text/event-stream"))
        events = RunEvents(body.thread_id, body.run_id)
        response = _LeasedStream(_stream(run, events, encoder), lease, encoder.get_content_type())
        handed_over = True
        return response
    finally:
        if not handed_over:
            await lease.release()


def install(app: FastAPI) -> None:
    """The chat's routes (and its threads'), its runtime part, and its closing at shutdown."""
    runtime = app.state.runtime
    chat = ChatService(runtime)
    runtime.chat = chat
    app.include_router(router)
    threads.install(app)

    @asynccontextmanager
    async def chat_lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with open_thread_runs(runtime.settings) as shared:
            chat.busy.shared = shared
            try:
                yield
            finally:
                chat.busy.shared = None
                await chat.aclose()

    add_lifespan(app, chat_lifespan)
