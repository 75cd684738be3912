"""Nodes of the chat graph: start the turn (with the record manifest), plan, call a tool, answer,
and confirm a proposed write (LangGraph `interrupt`: nothing is written without a person's yes)."""

from __future__ import annotations

from typing import Any, Final

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import TypeAdapter

from agent.chat.actions import Action, Answer, CallTool, CitedValue, ProposeNote
from agent.chat.citations import check_answer, known_text
from agent.chat.context import ChatContext
from agent.chat.retrieval import RetrievalPlanner, retrieval_answer
from agent.chat.scope import names_other_patient
from agent.chat.state import ChatState
from agent.chat.view import PlanView, Turn
from fhir_adapters.confirmed import post_transaction
from fhir_adapters.error_tree import ChartAgentError
from tools.registry import Citation, ToolResult
from tools.writeback.ai_labels import ModelIdentity, chartagent_version
from tools.writeback.chat_note import build_note_transaction, note_reference

__all__ = ["act", "answer", "confirm_note", "plan", "start_turn"]

_ACTION: Final = TypeAdapter(Action)
REFUSAL: Final = "This conversation is about one patient only; questions about another patient are refused."
RETRIEVAL_ENGINE: Final = "chartagent-retrieval"


def _results(state: ChatState) -> list[ToolResult]:
    return [ToolResult.model_validate(r) for r in state.get("results") or []]


def _remember(state: ChatState, result: ToolResult) -> ChatState:
    """The result joins this turn's results and the thread's memory of what was retrieved."""
    retrieved = dict(state.get("retrieved") or {})
    for fact in result.facts:
        for c in fact.citations:
            retrieved.setdefault(c.reference, c.model_dump(mode="json"))
    known = [*(state.get("known") or []), *result.fact_lines()]
    return {
        "results": [*(state.get("results") or []), result.model_dump(mode="json")],
        "retrieved": retrieved,
        "known": known,
    }


async def start_turn(state: ChatState, runtime: Runtime[ChatContext]) -> ChatState:
    ctx = runtime.context
    patient = ctx.tools.patient_id
    fresh: ChatState = {
        "results": [],
        "steps": 0,
        "action": None,
        "fallback": False,
        "flags": [],
        "proposal": None,
        "written": None,
        "thread_patient": state.get("thread_patient") or patient,
    }
    other_thread = bool(state.get("thread_patient")) and state.get("thread_patient") != patient
    if other_thread or names_other_patient(state["question"], patient):
        return {**fresh, "action": Answer(answer=REFUSAL).model_dump(), "flags": ["refused: another patient"]}
    # Manifest first: what the record holds is what the planner chooses tools from.
    manifest = await ctx.registry.call("record_manifest", {}, ctx.tools)
    return {**fresh, **_remember({**state, **fresh}, manifest)}


async def plan(state: ChatState, runtime: Runtime[ChatContext]) -> ChatState:
    ctx = runtime.context
    history = [Turn(**t) for t in state.get("history") or []]
    view = PlanView(question=state["question"], tools=ctx.registry, history=history, results=_results(state))
    flags = list(state.get("flags") or [])
    if state.get("steps", 0) >= ctx.max_steps:
        flags.append(f"stopped after {ctx.max_steps} tool calls: answered from what was found")
        answer = retrieval_answer(view.question, view.results)
        return {"action": Answer(answer=answer).model_dump(), "flags": flags}
    planner = RetrievalPlanner() if state.get("fallback") else ctx.planner
    try:
        action = await planner.next_action(view)
    except ChartAgentError as exc:  # PlannerOutputError included
        # The conversation goes on without the model: retrieval answers, and says why.
        flags.append(f"the planner failed ({exc}); answered from retrieval")
        action = await RetrievalPlanner().next_action(view)
        return {"action": action.model_dump(), "fallback": True, "flags": flags}
    return {"action": action.model_dump(), "flags": flags}


def route(state: ChatState) -> str:
    action = _ACTION.validate_python(state["action"])
    if isinstance(action, CallTool):
        return "act"
    if isinstance(action, ProposeNote):
        return "confirm_note"
    return "answer"


async def act(state: ChatState, runtime: Runtime[ChatContext]) -> ChatState:
    ctx = runtime.context
    action = _ACTION.validate_python(state["action"])
    assert isinstance(action, CallTool)
    result = await ctx.registry.call(action.tool, action.input, ctx.tools)
    return {**_remember(state, result), "steps": state.get("steps", 0) + 1}


def _cited(references: list[str], retrieved: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for ref in references:
        c = Citation.model_validate(retrieved[ref])
        out.append(CitedValue(reference=ref, value=c.value, time=c.time).model_dump())
    return out


def answer(state: ChatState) -> ChatState:
    action = _ACTION.validate_python(state["action"])
    assert isinstance(action, Answer)
    retrieved = state.get("retrieved") or {}
    citations = {k: Citation.model_validate(v) for k, v in retrieved.items()}
    checked = check_answer(action.answer, citations, known_text(citations, state.get("known") or []))
    return {
        "answer": checked.text,
        "citations": _cited(checked.cited, retrieved),
        "flags": [*(state.get("flags") or []), *checked.flags],
        "history": _with_turn(state, checked.text),
    }


def _with_turn(state: ChatState, answer: str) -> list[dict[str, str]]:
    """The thread's history with this turn added."""
    return [*(state.get("history") or []), {"question": state["question"], "answer": answer}]


async def confirm_note(state: ChatState, runtime: Runtime[ChatContext]) -> ChatState:
    """Pause for a person's decision; write only on an explicit yes."""
    ctx = runtime.context
    action = _ACTION.validate_python(state["action"])
    assert isinstance(action, ProposeNote)
    decision = interrupt({"proposal": action.text, "kind": "note"})
    approved = isinstance(decision, dict) and decision.get("approve") is True
    flags = list(state.get("flags") or [])
    if not approved:
        text = "The note was not saved (not confirmed)."
        return {
            "answer": text,
            "citations": [],
            "flags": flags,
            "proposal": action.text,
            "history": _with_turn(state, text),
        }
    retrieved = state.get("retrieved") or {}
    sources = [r for r in retrieved if not r.startswith("Patient/")]
    identity = ModelIdentity(name=ctx.planner.name or RETRIEVAL_ENGINE, version=chartagent_version())
    bundle, token = build_note_transaction(
        subject=f"Patient/{ctx.tools.patient_id}",
        text=action.text,
        sources=sources,
        identity=identity,
        created=ctx.tools.now,
    )
    reference = note_reference(await post_transaction(ctx.tools.fhir, bundle), token)
    text = f"Saved the note as {reference} (AI-generated, preliminary)."
    return {
        "answer": text,
        "citations": [],
        "flags": flags,
        "proposal": action.text,
        "written": reference,
        "history": _with_turn(state, text),
    }
