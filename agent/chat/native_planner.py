"""OpenAI-compatible native tool calling (vLLM, TGI, a hosted planner) through the official SDK.

Each step rebuilds the conversation: the rules as the system message, earlier turns, the
question, then for each tool already run an assistant `tool_calls` message and its `tool`
answer (the result's `[reference] text` lines). The model answers with a tool call (the first is
taken) or with the answer text. `propose_note` is offered as a tool: calling it only proposes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import httpx

from agent.chat.actions import Action, Answer, CallTool, ProposeNote
from agent.chat.planner import ANSWER_RULES, PlannerOutputError
from agent.chat.view import PlanView
from tools.medgemma.errors import ModelProtocolError, ModelServerError, ModelTransportError

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["PROPOSE_NOTE_TOOL", "NativeToolPlanner", "build_messages"]

_PATH: Final = "/chat/completions"
PROPOSE_NOTE_TOOL: Final = {
    "type": "function",
    "function": {
        "name": "propose_note",
        "description": "Propose saving a note to the chart; a person confirms before anything is written.",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string", "description": "The note's text."}},
            "required": ["text"],
        },
    },
}


def build_messages(view: PlanView) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": ANSWER_RULES}]
    for turn in view.history[-6:]:
        messages += [
            {"role": "user", "content": turn.question},
            {"role": "assistant", "content": turn.answer},
        ]
    messages.append({"role": "user", "content": view.question})
    for i, result in enumerate(view.results):
        call_id = f"call_{i}"
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": result.tool, "arguments": json.dumps(result.input)},
                    }
                ],
            }
        )
        if result.ok:
            body = "\n".join(result.fact_lines()) or f"(no facts{': ' + result.note if result.note else ''})"
        else:
            body = f"FAILED: {result.error}"
        messages.append({"role": "tool", "tool_call_id": call_id, "content": body})
    return messages


class NativeToolPlanner:
    """`client`: an `openai.AsyncOpenAI` built over our own httpx client (see `open_native_planner`)."""

    def __init__(self, client: AsyncOpenAI, model: str) -> None:
        self._client = client
        self._model = model

    @property
    def name(self) -> str | None:
        return self._model

    async def next_action(self, view: PlanView) -> Action:
        import openai

        tools = [*view.tools.openai_tools(), PROPOSE_NOTE_TOOL]
        try:
            response = await self._client.chat.completions.create(
                model=self._model,
                messages=build_messages(view),  # type: ignore[arg-type]
                tools=tools,  # type: ignore[arg-type]
                temperature=0.0,
            )
        except openai.APIStatusError as exc:
            raise ModelServerError(exc.status_code, _PATH) from None
        except openai.APIConnectionError as exc:
            raise ModelTransportError(_PATH, type(exc).__name__) from None
        except openai.APIResponseValidationError:
            raise ModelProtocolError(f"POST {_PATH}: the answer is not a chat completion") from None
        if not response.choices:
            raise PlannerOutputError("the planner answered no choice")
        message = response.choices[0].message
        for call in message.tool_calls or []:
            function = getattr(call, "function", None)
            if function is None:
                continue
            try:
                arguments = json.loads(function.arguments or "{}")
            except json.JSONDecodeError:
                raise PlannerOutputError(f"the arguments of a {function.name!r} call are not JSON") from None
            if not isinstance(arguments, dict):
                raise PlannerOutputError(f"the arguments of a {function.name!r} call are not an object")
            if function.name == "propose_note":
                return ProposeNote(text=str(arguments.get("text", "")) or "(empty)")
            return CallTool(tool=function.name, input=arguments)
        if not message.content or not message.content.strip():
            raise PlannerOutputError("the planner answered neither a tool call nor text")
        return Answer(answer=message.content.strip()[:6000])


def open_native_planner(
    base_url: str, model: str, api_key: str | None, *, timeout_s: float
) -> NativeToolPlanner:
    """The SDK over an httpx client of ours (timeouts; no proxies from the environment)."""
    from openai import AsyncOpenAI

    http = httpx.AsyncClient(timeout=timeout_s, trust_env=False)
    client = AsyncOpenAI(base_url=base_url, api_key=api_key or "none", http_client=http, max_retries=2)
    return NativeToolPlanner(client, model)
