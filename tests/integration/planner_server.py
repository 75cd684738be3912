"""A scripted OpenAI-compatible planner server (`POST /v1/chat/completions`, native tool calls),
an ASGI app to serve on loopback (`live_app.serve_on`): for the chat endpoint's tests and
benchmark (the chat's `NativeToolPlanner` talks to it through the real SDK and HTTP)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request

# messages of the request -> the assistant's message: {"content": ...} or {"tool_calls": [...]}
Script = Callable[[list[dict[str, Any]]], dict[str, Any]]
_REFERENCE = re.compile(r"\[([A-Z][A-Za-z]+/[A-Za-z0-9\-.]+)\]")


def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """An assistant message calling one tool."""
    return {
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{uuid.uuid4().hex[:8]}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ],
    }


def answer(text: str) -> dict[str, Any]:
    return {"content": text}


def question(messages: list[dict[str, Any]]) -> str:
    """The question of this step (the last user message)."""
    return next(str(m["content"]) for m in reversed(messages) if m["role"] == "user")


def tool_answers(messages: list[dict[str, Any]], tool: str) -> list[str]:
    """The contents of the `tool` messages answering calls of `tool` in this step."""
    names = {
        c["id"]: c["function"]["name"]
        for m in messages
        for c in (m.get("tool_calls") or [])
        if m["role"] == "assistant"
    }
    return [
        str(m["content"]) for m in messages if m["role"] == "tool" and names.get(m["tool_call_id"]) == tool
    ]


def references(text: str) -> list[str]:
    return _REFERENCE.findall(text)


class ScriptedPlanner:
    """Answers each chat completion with `script(messages)`, after `delay_s` (0: instant)."""

    def __init__(self, script: Script, *, delay_s: float = 0.0, model: str = "scripted-planner") -> None:
        self.script = script
        self.delay_s = delay_s
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._complete)

    async def _complete(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        self.requests.append(body)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        message = {"role": "assistant", **self.script(body["messages"])}
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
