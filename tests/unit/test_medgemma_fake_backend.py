"""ScriptedBackend: scripted answers in order or by request, recorded requests, clear exhaustion."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tools.medgemma.errors import ModelError
from tools.medgemma.fake_backend import ScriptedBackend, ScriptExhaustedError
from tools.medgemma.types import (
    GenerationSettings,
    ImagePart,
    Message,
    ModelBackend,
    ModelRequest,
    TextPart,
)


def ask(text: str, *, images: int = 0, max_new_tokens: int = 100) -> ModelRequest:
    img = np.zeros((4, 4, 3), dtype=np.uint8)
    parts = (TextPart(text=text), *(ImagePart(image=img) for _ in range(images)))
    return ModelRequest(
        messages=(Message(role="user", content=parts),),
        settings=GenerationSettings(max_new_tokens=max_new_tokens),
    )


async def test_answers_in_order_and_records_requests() -> None:
    model = ScriptedBackend(["first", lambda r: f"echo {r.messages[0].content[0].text}"])  # type: ignore[union-attr]
    assert isinstance(model, ModelBackend)
    assert model.info.backend == "fake"
    a = await model.generate(ask("one two", images=2))
    b = await model.generate(ask("hello"))
    assert (a.text, b.text) == ("first", "echo hello")
    assert a.prompt_tokens == 2 + 2 * 256
    assert a.completion_tokens == 1
    assert [r.messages[0].content[0] for r in model.requests] == [
        TextPart(text="one two"),
        TextPart(text="hello"),
    ]
    with pytest.raises(ScriptExhaustedError, match="2 answers and request 3"):
        await model.generate(ask("again"))


async def test_cycle_repeats_and_concurrent_calls_keep_arrival_order() -> None:
    model = ScriptedBackend(["a", "b"], cycle=True)
    results = await asyncio.gather(*(model.generate(ask(str(i))) for i in range(5)))
    assert [r.text for r in results] == ["a", "b", "a", "b", "a"]
    assert len(model.requests) == 5


async def test_long_answers_are_cut_at_max_new_tokens() -> None:
    model = ScriptedBackend(["w1 w2 w3 w4 w5"])
    result = await model.generate(ask("q", max_new_tokens=3))
    assert (result.text, result.finish_reason, result.completion_tokens) == ("w1 w2 w3", "length", 3)


async def test_closed_backend_refuses_and_empty_script_is_refused() -> None:
    model = ScriptedBackend(["x"], name="google/medgemma-1.5-4b-it", revision="abc")
    assert (model.info.name, model.info.revision) == ("google/medgemma-1.5-4b-it", "abc")
    await model.aclose()
    with pytest.raises(ModelError, match="closed"):
        await model.generate(ask("q"))
    with pytest.raises(ValueError, match="at least one"):
        ScriptedBackend([])
