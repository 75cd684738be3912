"""The OpenAI chat-completions wire format, both directions (pure).

`OpenAIChatBackend` turns a `ModelRequest` into this JSON and the server's answer into a
`ModelResult`; `serve_app` does the reverse. On the wire (POST {base}/chat/completions):

    {"model": "google/medgemma-1.5-4b-it",
     "messages": [{"role": "user", "content": [
         {"type": "text", "text": "..."},
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR..."}},
         {"type": "text", "text": "SLICE 1"}, ...]}],
     "max_tokens": 1024, "temperature": 0.0, "top_p": 1.0, "seed": 7}
    -> {"choices": [{"message": {"role": "assistant", "content": "..."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290}, ...}

Images travel as PNG data URLs. PNG, not JPEG: the arrays are already the model's input
(CT windows in R/G/B, MRI min-max, pathology patches). JPEG is lossy and its 4:2:0 chroma
subsampling mixes the three CT windows across neighbouring pixels, so a served model would
see other pixels than the in-process one and results would differ by backend. PNG decodes to
the same uint8 array; the cost is size (a 512x512 slice is 0.1-0.6 MB, ~4x JPEG) and about
30 ms of encoding per slice on one core here, done off the event loop by the backend.
Part order is kept: MedGemma's CT/MRI prompts interleave images and `SLICE n` texts.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Annotated, Any, Final, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from fhir_adapters.error_tree import BadInputError
from tools.medgemma.types import (
    GenerationSettings,
    ImagePart,
    Message,
    ModelRequest,
    ModelResult,
    Role,
    TextPart,
)

__all__ = [
    "ChatCompletion",
    "ChatCompletionRequest",
    "ImageDataUrlError",
    "decode_image_data_url",
    "encode_png_data_url",
    "finish_reason_of",
    "from_chat_request",
    "to_chat_completion",
    "to_chat_request",
    "to_model_result",
]

PNG_DATA_URL_PREFIX: Final = "data:image/png;base64,"
# Decoders we accept from clients of `serve_app` (OpenAI clients commonly send JPEG).
_ACCEPTED_IMAGE_FORMATS: Final = ("PNG", "JPEG", "WEBP")
# Refuse decompression bombs: 128 megapixels is far above any slice or patch.
_MAX_PIXELS: Final = 128 * 1024 * 1024


# ------------------------------------------------------------------ wire models


class _Wire(BaseModel):
    # Servers and clients add fields of their own (logprobs, system_fingerprint, ...).
    model_config = ConfigDict(extra="ignore")


class ChatTextPart(_Wire):
    type: Literal["text"]
    text: str


class ImageUrl(_Wire):
    url: str
    detail: str | None = None


class ChatImagePart(_Wire):
    type: Literal["image_url"]
    image_url: ImageUrl


ChatPart = Annotated[ChatTextPart | ChatImagePart, Field(discriminator="type")]


class ChatMessage(_Wire):
    role: Role
    content: str | list[ChatPart]


class ChatCompletionRequest(_Wire):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    n: int = 1
    stream: bool = False


class AssistantMessage(_Wire):
    role: str = "assistant"
    content: str | None = None


class ChatChoice(_Wire):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None = None


class Usage(_Wire):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletion(_Wire):
    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[ChatChoice] = Field(min_length=1)
    usage: Usage | None = None


# ------------------------------------------------------------------ images


def encode_png_data_url(image: npt.NDArray[np.uint8]) -> str:
    """A lossless `data:image/png;base64,...` URL of an H x W x 3 uint8 array."""
    buffer = io.BytesIO()
    # Level 1: zlib's fastest; higher levels save ~5% on slices for ~2x the time.
    Image.fromarray(image, mode="RGB").save(buffer, format="PNG", compress_level=1)
    return PNG_DATA_URL_PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii")


class ImageDataUrlError(BadInputError):
    """A client's image URL that is not used: remote, malformed, unreadable, of another format, too
    large. The message says which, never what the image holds."""


def decode_image_data_url(url: str) -> npt.NDArray[np.uint8]:
    """The uint8 H x W x 3 array of a base64 image data URL (PNG, JPEG or WebP).

    Raises ImageDataUrlError for anything else; remote URLs are refused, never fetched.
    """
    if not url.startswith("data:"):
        raise ImageDataUrlError("only data: image URLs are accepted (remote image URLs are never fetched)")
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64") or not header[5:].startswith("image/"):
        raise ImageDataUrlError("an image data URL must look like data:image/png;base64,<data>")
    try:
        raw = base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise ImageDataUrlError("an image data URL carries invalid base64") from None
    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.format not in _ACCEPTED_IMAGE_FORMATS:
                raise ImageDataUrlError(f"image format {img.format} is not accepted; send PNG (lossless)")
            if img.width * img.height > _MAX_PIXELS:
                raise ImageDataUrlError(f"image of {img.width}x{img.height} pixels is too large")
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError):
        raise ImageDataUrlError("an image data URL does not hold a readable image") from None


# ------------------------------------------------------------------ ModelRequest <-> wire


def _wire_content(message: Message) -> str | list[dict[str, Any]]:
    parts = message.content
    # A lone text part goes as a plain string: every server accepts that for every role.
    if len(parts) == 1 and isinstance(parts[0], TextPart):
        return parts[0].text
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            out.append({"type": "text", "text": part.text})
        else:
            out.append({"type": "image_url", "image_url": {"url": encode_png_data_url(part.image)}})
    return out


def to_chat_request(request: ModelRequest, model: str) -> dict[str, Any]:
    """The JSON body of POST /chat/completions for `request` (encodes images: CPU-bound)."""
    settings = request.settings
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": _wire_content(m)} for m in request.messages],
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
    }
    if settings.seed is not None:
        body["seed"] = settings.seed
    return body


def from_chat_request(body: ChatCompletionRequest) -> ModelRequest:
    """The `ModelRequest` of a client's chat request; unset settings take MedGemma's defaults
    (greedy, as Google's notebooks decode), not OpenAI's temperature 1."""
    messages: list[Message] = []
    for message in body.messages:
        if isinstance(message.content, str):
            parts: list[TextPart | ImagePart] = [TextPart(text=message.content)]
        else:
            parts = [
                TextPart(text=p.text)
                if isinstance(p, ChatTextPart)
                else ImagePart(image=decode_image_data_url(p.image_url.url))
                for p in message.content
            ]
        messages.append(Message(role=message.role, content=tuple(parts)))
    given: dict[str, Any] = {
        "max_new_tokens": body.max_completion_tokens or body.max_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "seed": body.seed,
    }
    settings = GenerationSettings(**{k: v for k, v in given.items() if v is not None})
    return ModelRequest(messages=tuple(messages), settings=settings)


def finish_reason_of(reason: str | None) -> Literal["stop", "length", "error"]:
    """OpenAI/vLLM/TGI finish reasons onto ours: `length` when max_tokens cut the answer."""
    if reason in (None, "stop", "eos_token", "stop_sequence", "end_turn"):
        return "stop"
    if reason in ("length", "max_tokens"):
        return "length"
    return "error"  # content_filter, tool_calls, abort: not a usable answer


def to_model_result(completion: ChatCompletion, *, latency_s: float) -> ModelResult:
    choice = completion.choices[0]
    usage = completion.usage or Usage()  # servers that omit usage: counts unknown, reported as 0
    return ModelResult(
        text=choice.message.content or "",
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        latency_s=latency_s,
        finish_reason=finish_reason_of(choice.finish_reason),
    )


_WIRE_FINISH: Final = {"stop": "stop", "length": "length", "error": "abort"}


def to_chat_completion(
    result: ModelResult, *, model: str, completion_id: str, created: int
) -> ChatCompletion:
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=model,
        choices=[
            ChatChoice(
                message=AssistantMessage(content=result.text),
                # "error" has no OpenAI spelling; vLLM's "abort" is the nearest and maps back.
                finish_reason=_WIRE_FINISH[result.finish_reason],
            )
        ],
        usage=Usage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            total_tokens=result.prompt_tokens + result.completion_tokens,
        ),
    )
