"""Building requests (pure): parts, the optional thinking instruction, one user turn."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from tools.medgemma.types import GenerationSettings, ImagePart, Message, ModelRequest, Part, TextPart

# MedGemma's switch for thinking (DESIGN.md); the answer then starts with <unused94>thought ... <unused95>.
THINKING_INSTRUCTION = "SYSTEM INSTRUCTION: think silently if needed."

Image = npt.NDArray[np.uint8]


def text(value: str) -> TextPart:
    return TextPart(text=value)


def image(value: Image) -> ImagePart:
    return ImagePart(image=value)


def as_images(images: Sequence[Image] | Image, what: str) -> list[Image]:
    """A list of H x W x 3 uint8 images from a list or an N x H x W x 3 array; none is an error."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        listed = list(images)
    elif isinstance(images, np.ndarray):
        listed = [images]
    else:
        listed = list(images)
    if not listed:
        raise ValueError(f"{what}: at least one image is needed")
    return listed


def user_request(
    parts: Iterable[Part], *, settings: GenerationSettings, thinking: bool = False
) -> ModelRequest:
    """One user turn, preceded by the thinking instruction as a system turn when asked."""
    messages = [Message(role="user", content=tuple(parts))]
    if thinking:
        messages.insert(0, Message(role="system", content=(text(THINKING_INSTRUCTION),)))
    return ModelRequest(messages=tuple(messages), settings=settings)


def fenced_json_instruction(example: str) -> str:
    """The answer-format sentence every JSON task ends its prompt with."""
    return f"Answer with JSON only, inside a ```json code block, exactly in this form:\n{example}"


__all__ = [
    "THINKING_INSTRUCTION",
    "Image",
    "as_images",
    "fenced_json_instruction",
    "image",
    "text",
    "user_request",
]
