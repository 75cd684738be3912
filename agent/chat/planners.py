"""Which planner the chat uses, from the settings: a planner server, MedGemma, or retrieval only."""

from __future__ import annotations

from agent.chat.json_planner import JsonActionPlanner
from agent.chat.planner import Planner
from agent.chat.retrieval import RetrievalPlanner
from agent.settings import Settings
from tools.medgemma.types import ModelBackend

__all__ = ["choose_planner"]


def choose_planner(settings: Settings, model: ModelBackend | None) -> Planner:
    """CHARTAGENT_PLANNER_URL wins (native tool calls, or JSON actions); else MedGemma with JSON
    actions when a model is configured; else retrieval without a model."""
    if settings.planner_url:
        name = settings.planner_model or settings.model
        key = settings.planner_api_key.get_secret_value() if settings.planner_api_key else None
        if settings.planner_protocol == "tools":
            from agent.chat.native_planner import open_native_planner

            return open_native_planner(settings.planner_url, name, key, timeout_s=settings.planner_timeout_s)
        from tools.medgemma.openai_backend import OpenAIChatBackend

        backend = OpenAIChatBackend(
            settings.planner_url,
            model=name,
            api_key=settings.planner_api_key,
            timeout=settings.planner_timeout_s,
        )
        return JsonActionPlanner(backend)
    if model is not None:
        return JsonActionPlanner(model)
    return RetrievalPlanner()
