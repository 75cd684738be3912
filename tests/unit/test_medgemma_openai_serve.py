"""The serve app and the wire format: OpenAIChatBackend -> create_app(backend) in-process (ASGI)."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tools.medgemma.errors import ModelServerError
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.openai_backend import OpenAIChatBackend
from tools.medgemma.openai_wire import (
    ChatCompletionRequest,
    ImageDataUrlError,
    decode_image_data_url,
    encode_png_data_url,
    finish_reason_of,
    from_chat_request,
)
from tools.medgemma.serve_app import create_app
from tools.medgemma.types import GenerationSettings, ImagePart, Message, ModelRequest, TextPart

NAME = "google/medgemma-1.5-4b-it"
SECRET_TEXT = "Jane Roe 1970-01-01"


def slices(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (12, 9, 3), dtype=np.uint8) for _ in range(n)]


def ct_request(images: list[np.ndarray]) -> ModelRequest:
    parts: list[TextPart | ImagePart] = [TextPart(text="Findings?")]
    for i, img in enumerate(images, 1):
        parts += [ImagePart(image=img), TextPart(text=f"SLICE {i}")]
    return ModelRequest(
        messages=(Message(role="user", content=tuple(parts)),),
        settings=GenerationSettings(max_new_tokens=50, temperature=0.3, top_p=0.8, seed=5),
    )


def client_of(served: ScriptedBackend) -> OpenAIChatBackend:
    transport = httpx.ASGITransport(app=create_app(served))
    return OpenAIChatBackend("http://served/v1", model=NAME, transport=transport)


async def test_round_trip_keeps_images_order_and_settings() -> None:
    served = ScriptedBackend(["Hypodense lesion in slice 2."], name=NAME)
    images = slices(3)
    async with client_of(served) as client:
        result = await client.generate(ct_request(images))
    assert result.text == "Hypodense lesion in slice 2."
    assert result.finish_reason == "stop"
    assert result.completion_tokens == 5
    (got,) = served.requests
    assert got.settings == GenerationSettings(max_new_tokens=50, temperature=0.3, top_p=0.8, seed=5)
    parts = got.messages[0].content
    assert [p.type for p in parts] == ["text"] + ["image", "text"] * 3
    for sent, part in zip(images, parts[1::2], strict=True):
        assert isinstance(part, ImagePart)
        np.testing.assert_array_equal(part.image, sent)  # PNG: bit-exact through the server


async def test_length_and_models_listing() -> None:
    served = ScriptedBackend(["a b c d"], name=NAME)
    async with client_of(served) as client:
        request = ct_request([]).model_copy(update={"settings": GenerationSettings(max_new_tokens=2)})
        assert (await client.generate(request)).finish_reason == "length"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(served)), base_url="http://s"
    ) as h:
        listing = (await h.get("/v1/models")).json()
        assert [m["id"] for m in listing["data"]] == [NAME]
        assert (await h.get("/health")).status_code == 200


async def test_unknown_model_is_404_naming_it() -> None:
    served = ScriptedBackend(["x"], name="other-model")
    async with client_of(served) as client:
        with pytest.raises(ModelServerError) as info:
            await client.generate(ct_request([]))
    assert info.value.status == 404
    assert NAME in str(info.value)
    assert served.requests == []


async def post(body: dict[str, Any]) -> httpx.Response:
    app = create_app(ScriptedBackend(["x"], name=NAME))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as h:
        return await h.post("/v1/chat/completions", json=body)


def user(content: Any) -> dict[str, Any]:
    return {"model": NAME, "messages": [{"role": "user", "content": content}]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (user([{"type": "image_url", "image_url": {"url": "https://example.org/x.png"}}]), "never fetched"),
        (user([{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!"}}]), "invalid base64"),
        (user([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]), "readable image"),
        (user(SECRET_TEXT) | {"stream": True}, "stream"),
        (user(SECRET_TEXT) | {"max_tokens": 10**6}, "max_new_tokens"),
        ({"model": NAME, "messages": [{"role": "user", "content": 7, "note": SECRET_TEXT}]}, "messages.0"),
    ],
)
async def test_bad_requests_are_400_in_openai_shape_without_echoing_input(
    body: dict[str, Any], message: str
) -> None:
    resp = await post(body)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert message in error["message"]
    assert SECRET_TEXT not in resp.text
    assert "10000000" not in resp.text


def test_png_data_urls_are_lossless_and_jpeg_is_accepted_from_clients() -> None:
    (img,) = slices(1)
    np.testing.assert_array_equal(decode_image_data_url(encode_png_data_url(img)), img)
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="JPEG")
    url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert decode_image_data_url(url).shape == img.shape
    with pytest.raises(ImageDataUrlError, match="data:image/png;base64"):
        decode_image_data_url("data:text/plain;base64,aGk=")


def test_unset_settings_decode_greedy_not_openai_temperature_one() -> None:
    request = from_chat_request(ChatCompletionRequest.model_validate(user("hi")))
    assert request.settings == GenerationSettings()
    assert request.messages[0].content == (TextPart(text="hi"),)
    both = ChatCompletionRequest.model_validate(user("hi") | {"max_tokens": 5, "max_completion_tokens": 9})
    assert from_chat_request(both).settings.max_new_tokens == 9


@pytest.mark.parametrize(
    ("reason", "ours"),
    [(None, "stop"), ("stop", "stop"), ("eos_token", "stop"), ("length", "length"),
     ("content_filter", "error"), ("abort", "error")],
)  # fmt: skip
def test_finish_reasons(reason: str | None, ours: str) -> None:
    assert finish_reason_of(reason) == ours
