"""OpenAIChatBackend against httpx.MockTransport: the wire, retries, timeouts, errors, limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from fhir_adapters.retry import RetryPolicy
from tools.medgemma.errors import ModelProtocolError, ModelServerError, ModelTransportError
from tools.medgemma.openai_backend import OpenAIChatBackend
from tools.medgemma.openai_wire import decode_image_data_url
from tools.medgemma.types import GenerationSettings, ImagePart, Message, ModelRequest, TextPart

BASE = "http://model.test/v1"
PROMPT = "Patient Jane Roe, MRN 123456: describe this slice"
KEY = "sk-very-secret-key"


def completion(text: str = "No acute findings.", finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "medgemma",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 300, "completion_tokens": 4, "total_tokens": 304},
    }


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (20, 30, 3), dtype=np.uint8)


def request(*, images: int = 0, seed: int | None = 7) -> ModelRequest:
    parts: list[TextPart | ImagePart] = [TextPart(text=PROMPT)]
    for i in range(images):
        parts += [ImagePart(image=image(i)), TextPart(text=f"SLICE {i + 1}")]
    return ModelRequest(
        messages=(
            Message(role="system", content=(TextPart(text="SYSTEM INSTRUCTION: be brief."),)),
            Message(role="user", content=tuple(parts)),
        ),
        settings=GenerationSettings(max_new_tokens=64, temperature=0.0, top_p=0.9, seed=seed),
    )


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def backend(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    sleeps: Sleeps | None = None,
    api_key: str | None = KEY,
    base: str = BASE,
    **kwargs: Any,
) -> OpenAIChatBackend:
    return OpenAIChatBackend(
        base,
        model="google/medgemma-1.5-4b-it",
        api_key=SecretStr(api_key) if api_key else None,
        transport=httpx.MockTransport(handler),
        retry=kwargs.pop("retry", RetryPolicy(max_attempts=3, rng=lambda: 0.5)),
        sleep=sleeps or Sleeps(),
        **kwargs,
    )


async def test_sends_openai_chat_format_with_png_images_and_parses_the_answer() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json=completion())

    async with backend(handler) as model:
        result = await model.generate(request(images=2))
    (req,) = seen
    assert req.method == "POST"
    assert str(req.url) == f"{BASE}/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    body = json.loads(req.content)
    assert body["model"] == "google/medgemma-1.5-4b-it"
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (64, 0.0, 0.9, 7)
    system, user = body["messages"]
    assert system == {"role": "system", "content": "SYSTEM INSTRUCTION: be brief."}
    kinds = [p["type"] for p in user["content"]]
    assert kinds == ["text", "image_url", "text", "image_url", "text"]  # order kept
    assert user["content"][2]["text"] == "SLICE 1"
    url = user["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    np.testing.assert_array_equal(decode_image_data_url(url), image(0))  # lossless
    assert result.text == "No acute findings."
    assert (result.prompt_tokens, result.completion_tokens, result.finish_reason) == (300, 4, "stop")
    assert result.latency_s >= 0
    assert model.info.backend == "openai"
    assert model.info.name == "google/medgemma-1.5-4b-it"


async def test_no_seed_and_no_key_are_left_out() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json=completion(finish="length"))

    async with backend(handler, api_key=None) as model:
        result = await model.generate(request(seed=None))
    assert "seed" not in json.loads(seen[0].content)
    assert "authorization" not in seen[0].headers
    assert result.finish_reason == "length"


async def test_429_is_retried_after_the_servers_retry_after() -> None:
    statuses = iter([429, 503, 200])
    sleeps = Sleeps()

    def handler(req: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status == 200:
            return httpx.Response(200, json=completion())
        return httpx.Response(status, headers={"Retry-After": "3"} if status == 429 else {})

    async with backend(handler, sleeps=sleeps) as model:
        result = await model.generate(request())
    assert result.text == "No acute findings."
    # Retry-After wins over backoff; the 503 without it gets jittered backoff (0.5 * 0.25 * 2).
    assert sleeps.waits == [3.0, 0.25]


async def test_retry_after_is_capped_by_the_policy() -> None:
    statuses = iter([429, 200])
    sleeps = Sleeps()

    def handler(req: httpx.Request) -> httpx.Response:
        status = next(statuses)
        return (
            httpx.Response(200, json=completion())
            if status == 200
            else httpx.Response(429, headers={"Retry-After": "3600"})
        )

    policy = RetryPolicy(max_attempts=2, max_retry_after=30.0)
    async with backend(handler, sleeps=sleeps, retry=policy) as model:
        await model.generate(request())
    assert sleeps.waits == [30.0]


async def test_retries_give_up_with_the_path_and_status_and_no_prompt_or_key() -> None:
    calls = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        message = f"overloaded; Incorrect API key provided: {KEY}; prompt was {PROMPT}"
        return httpx.Response(503, json={"error": {"message": message}})

    async with backend(handler) as model:
        with pytest.raises(ModelServerError) as info:
            await model.generate(request())
    assert calls == 3
    err = info.value
    assert (err.status, err.path) == (503, "/v1/chat/completions")
    text = str(err)
    assert text.startswith("POST /v1/chat/completions -> HTTP 503")
    assert KEY not in text
    assert PROMPT not in text
    assert "<api key>" in text
    assert "<prompt text>" in text
    assert len(err.detail or "") <= 200


@pytest.mark.parametrize("status", [400, 401, 404, 500])
async def test_client_errors_and_500_are_not_retried(status: int) -> None:
    calls = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, json={"error": "At most 1 image(s) may be provided"})

    async with backend(handler) as model:
        with pytest.raises(ModelServerError) as info:
            await model.generate(request())
    assert calls == 1
    assert info.value.status == status
    assert "At most 1 image(s)" in str(info.value)  # TGI-style {"error": "..."} is read too
    assert PROMPT not in str(info.value)


async def test_404_without_v1_hints_at_the_base_url() -> None:
    async with backend(lambda r: httpx.Response(404), base="http://model.test:8000") as model:
        with pytest.raises(ModelServerError, match="end CHARTAGENT_MODEL_URL with /v1"):
            await model.generate(request())


async def test_read_timeout_is_not_retried() -> None:
    calls = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("timed out", request=req)

    async with backend(handler) as model:
        with pytest.raises(ModelTransportError, match="no answer in time") as info:
            await model.generate(request())
    assert calls == 1
    assert PROMPT not in str(info.value)


async def test_connect_errors_are_retried_then_reported() -> None:
    calls = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=req)

    async with backend(handler) as model:
        with pytest.raises(ModelTransportError, match="could not connect"):
            await model.generate(request())
    assert calls == 3


async def test_a_dropped_connection_is_retried() -> None:
    outcomes = iter(["drop", "ok"])

    def handler(req: httpx.Request) -> httpx.Response:
        if next(outcomes) == "drop":
            raise httpx.RemoteProtocolError("server disconnected", request=req)
        return httpx.Response(200, json=completion())

    async with backend(handler) as model:
        assert (await model.generate(request())).text == "No acute findings."


@pytest.mark.parametrize(
    "answer",
    [b"<html>bad gateway</html>", b'{"choices": []}', b'{"object": "chat.completion"}'],
)
async def test_a_2xx_that_is_no_chat_completion_is_a_protocol_error(answer: bytes) -> None:
    async with backend(lambda r: httpx.Response(200, content=answer)) as model:
        with pytest.raises(ModelProtocolError, match=r"POST /v1/chat/completions answered 200"):
            await model.generate(request())


async def test_concurrency_is_bounded() -> None:
    in_flight = peak = 0

    class Slow(httpx.AsyncBaseTransport):
        async def handle_async_request(self, req: httpx.Request) -> httpx.Response:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            return httpx.Response(200, json=completion())

    model = OpenAIChatBackend(BASE, model="m", transport=Slow(), max_concurrency=2)
    async with model:
        results = await asyncio.gather(*(model.generate(request()) for _ in range(7)))
    assert len(results) == 7
    assert peak == 2


@pytest.mark.parametrize(
    ("base", "kwargs", "message"),
    [
        ("model.test/v1", {}, "absolute http"),
        ("http://model.test/v1?x=1", {}, "query"),
        (BASE, {"max_concurrency": 0}, "max_concurrency"),
        (BASE, {"timeout": 0}, "timeout"),
        (BASE, {"model": ""}, "served model"),
    ],
)
def test_bad_construction_is_refused(base: str, kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("model", "m")
    with pytest.raises(ValueError, match=message):
        OpenAIChatBackend(base, **kwargs)
