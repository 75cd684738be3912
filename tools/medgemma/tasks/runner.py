"""Running one task on a backend: generate, then parse strictly (the thin async shell over the tasks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tools.medgemma.tasks.errors import ModelOutputError
from tools.medgemma.tasks.output import TaskOutput
from tools.medgemma.types import ModelBackend, ModelInfo, ModelRequest, ModelResult

Output = TypeVar("Output", bound=TaskOutput)


@dataclass(frozen=True)
class TaskRun(Generic[Output]):
    """A parsed result with who answered, how (token counts, timings) and which prompt version."""

    result: Output
    model: ModelInfo
    model_result: ModelResult
    prompt_version: str


async def run_task(
    backend: ModelBackend,
    request: ModelRequest,
    parse: Callable[[str], Output],
    *,
    prompt_version: str,
) -> TaskRun[Output]:
    """Generate and parse; an unreadable answer is a ModelOutputError carrying the backend's result.

    When the answer also hit `max_new_tokens`, the reason says so: the fix is more tokens, not a
    different parser.
    """
    model_result = await backend.generate(request)
    try:
        result = parse(model_result.text)
    except ModelOutputError as exc:
        reason = exc.reason
        if model_result.finish_reason == "length":
            reason += f" (the answer stopped at max_new_tokens={request.settings.max_new_tokens})"
        raise ModelOutputError(exc.task, reason, exc.raw_text, model_result=model_result) from exc
    return TaskRun(
        result=result, model=backend.info, model_result=model_result, prompt_version=prompt_version
    )


__all__ = ["TaskRun", "run_task"]
