"""The model interface every backend implements and every task talks to.

A request is a list of chat messages whose content mixes text and images (uint8 RGB arrays
exactly as prepared by `tools.imaging`) plus generation settings; a result is the text with
token counts and timings. Backends: in-process transformers, an OpenAI-compatible server,
and a scripted fake for tests of agent logic (never chosen implicitly).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator

Role = Literal["system", "user", "assistant"]


def _as_image(value: Any) -> npt.NDArray[np.uint8]:
    array = np.asarray(value)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"an image must be uint8 H x W x 3, got {array.dtype} {array.shape}")
    return array


ImageArray = Annotated[
    npt.NDArray[np.uint8],
    PlainValidator(_as_image),
    PlainSerializer(lambda a: f"<image {a.shape[0]}x{a.shape[1]}>", return_type=str),
]


class TextPart(BaseModel):
    model_config = ConfigDict(frozen=True)
    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    type: Literal["image"] = "image"
    image: ImageArray


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)
    role: Role
    content: tuple[Part, ...]

    @property
    def images(self) -> list[npt.NDArray[np.uint8]]:
        return [p.image for p in self.content if isinstance(p, ImagePart)]


class GenerationSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    max_new_tokens: int = Field(default=1024, ge=1, le=32768)
    # Greedy by default, as Google's MedGemma notebooks decode.
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None


class ModelRequest(BaseModel):
    model_config = ConfigDict(frozen=True)
    messages: tuple[Message, ...]
    settings: GenerationSettings = GenerationSettings()

    @property
    def image_count(self) -> int:
        return sum(len(m.images) for m in self.messages)


class ModelResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    text: str
    prompt_tokens: int
    completion_tokens: int
    # Wall time of the request in the backend, and of the batch it ran in when batched.
    latency_s: float
    time_to_first_token_s: float | None = None
    batch_size: int = 1
    finish_reason: Literal["stop", "length", "error"] = "stop"


class ModelInfo(BaseModel):
    """Who answered: flows into the Device and Provenance that write-back creates."""

    model_config = ConfigDict(frozen=True)
    name: str
    revision: str | None = None
    dtype: str | None = None
    device: str | None = None
    backend: Literal["transformers", "openai", "fake"]


@runtime_checkable
class ModelBackend(Protocol):
    """One async interface for every backend. Implementations are safe to call concurrently."""

    @property
    def info(self) -> ModelInfo: ...

    async def generate(self, request: ModelRequest) -> ModelResult: ...

    async def aclose(self) -> None: ...
