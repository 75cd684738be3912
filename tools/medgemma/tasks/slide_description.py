"""Whole-slide pathology description: tissue patches in, a description and findings out.

Prompt layout (Google's WSI recipe, DESIGN.md): the prompt text first (the question and the answer
format), then the patch images. The answer asked for is JSON:
    {"description": "...", "findings": ["...", "..."]}
JSON only; any other answer is a ModelOutputError.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from tools.medgemma.tasks.output import AnswerSchema, TaskOutput
from tools.medgemma.tasks.parsing import extract_json, validate
from tools.medgemma.tasks.prompting import (
    Image,
    as_images,
    fenced_json_instruction,
    image,
    text,
    user_request,
)
from tools.medgemma.types import GenerationSettings, ModelRequest, Part

TASK = "wsi-description"
PROMPT_VERSION = "wsi-description/1"
DEFAULT_SETTINGS = GenerationSettings(max_new_tokens=1024)

_DEFAULT_QUESTION = "Describe the histopathology of this slide: tissue, architecture, cells and any lesion."
_FORMAT = (
    fenced_json_instruction('{"description": "...", "findings": ["...", "..."]}')
    + "\nThe description is a short paragraph; findings lists each notable feature once (empty if none)."
)


class _Answer(AnswerSchema):
    description: str = Field(min_length=1)
    findings: tuple[str, ...]


class SlideDescription(TaskOutput):
    description: str
    findings: tuple[str, ...]


def build_request(
    patches: Sequence[Image] | Image,
    *,
    magnification: str | None = None,
    question: str | None = None,
    thinking: bool = False,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> ModelRequest:
    """The prompt text first, then the patches (e.g. `magnification="10X (0.97 um/px)"`)."""
    images = as_images(patches, TASK)
    where = f" at {magnification}" if magnification else ""
    intro = (
        f"You are a pathologist. The {len(images)} images below are non-overlapping tissue patches{where} "
        "from one H&E-stained whole-slide image."
    )
    asked = (question or "").strip() or _DEFAULT_QUESTION
    parts: list[Part] = [text(f"{intro}\n{asked}\n\n{_FORMAT}")]
    parts += [image(p) for p in images]
    return user_request(parts, settings=settings, thinking=thinking)


def parse(raw_text: str) -> SlideDescription:
    parsed = extract_json(raw_text, TASK)
    answer = validate(_Answer, parsed.value, task=TASK, raw_text=raw_text)
    findings = tuple(f for f in answer.findings if f)
    return SlideDescription(description=answer.description, findings=findings, parse_notes=parsed.notes)


__all__ = ["DEFAULT_SETTINGS", "PROMPT_VERSION", "TASK", "SlideDescription", "build_request", "parse"]
