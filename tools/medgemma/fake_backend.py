"""A scripted `ModelBackend` for tests of agent logic: answers come from a script, not a model.

Never chosen implicitly: no setting selects it; tests construct it. `info.backend == "fake"`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from tools.medgemma.errors import ModelError
from tools.medgemma.types import ModelInfo, ModelRequest, ModelResult, TextPart

__all__ = ["ScriptExhaustedError", "ScriptedBackend"]

Answer = str | Callable[[ModelRequest], str]
# What an image costs in MedGemma's prompt (896x896 -> 256 soft tokens), for plausible counts.
_TOKENS_PER_IMAGE: Final = 256


class ScriptExhaustedError(ModelError):
    """More requests came than the script has answers."""


class ScriptedBackend:
    """Answers request i with `script[i]` (a string, or a function of the request).

    With `cycle=True` the script repeats, e.g. `ScriptedBackend(["same answer"], cycle=True)`
    or `ScriptedBackend([lambda r: ...], cycle=True)` for a deterministic model. Every request
    is recorded in `requests`, in arrival order. Token counts are whitespace words (plus 256 per
    image); an answer longer than `max_new_tokens` words is cut there with finish_reason "length".
    """

    def __init__(
        self,
        script: Sequence[Answer],
        *,
        cycle: bool = False,
        name: str = "scripted-fake",
        revision: str | None = None,
        dtype: str | None = None,
    ) -> None:
        if not script:
            raise ValueError("a script needs at least one answer")
        self._script = tuple(script)
        self._cycle = cycle
        self._info = ModelInfo(name=name, revision=revision, dtype=dtype, device="cpu", backend="fake")
        self.requests: list[ModelRequest] = []
        self.closed = False

    @property
    def info(self) -> ModelInfo:
        return self._info

    async def generate(self, request: ModelRequest) -> ModelResult:
        if self.closed:
            raise ModelError("the scripted backend was closed")
        index = len(self.requests)
        if index >= len(self._script) and not self._cycle:
            raise ScriptExhaustedError(
                f"the script has {len(self._script)} answers and request {index + 1} came; "
                "add answers or pass cycle=True"
            )
        self.requests.append(request)  # before answering: the order is the arrival order
        answer = self._script[index % len(self._script)]
        text = answer(request) if callable(answer) else answer
        words = text.split()
        limit = request.settings.max_new_tokens
        truncated = len(words) > limit
        if truncated:
            words = words[:limit]
            text = " ".join(words)
        prompt_words = sum(
            len(p.text.split()) for m in request.messages for p in m.content if isinstance(p, TextPart)
        )
        return ModelResult(
            text=text,
            prompt_tokens=prompt_words + _TOKENS_PER_IMAGE * request.image_count,
            completion_tokens=len(words),
            latency_s=0.0,
            finish_reason="length" if truncated else "stop",
        )

    async def aclose(self) -> None:
        self.closed = True
