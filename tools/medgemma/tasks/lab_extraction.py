"""Lab-report extraction: page images in, validated results out.

Prompt layout: the instruction, then each page image followed by `PAGE n`, then the answer format.
The answer asked for is JSON:
    {"results": [{"name": "Hemoglobin", "value": 13.2, "unit": "g/dL",
                  "reference_range": "12.0-16.0", "flag": "N"}]}
Strict validation: `name` non-empty; `value` a JSON number or a non-empty string as printed (e.g.
"<5", "negative") - a number written as a string stays a string; `unit` and `reference_range`
strings or null; `flag` one of the FHIR ObservationInterpretation codes H, L, HH, LL, N, A or null
(the words high, low, normal, abnormal, critical high, critical low are read as those codes).
An empty `results` list is a page without results. Anything else is a ModelOutputError.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated

from pydantic import Field, Strict, field_validator

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

TASK = "lab-extraction"
PROMPT_VERSION = "lab-extraction/1"
DEFAULT_SETTINGS = GenerationSettings(max_new_tokens=2048)


class LabFlag(StrEnum):
    """FHIR ObservationInterpretation (v3) codes a lab report prints."""

    HIGH = "H"
    LOW = "L"
    CRITICAL_HIGH = "HH"
    CRITICAL_LOW = "LL"
    NORMAL = "N"
    ABNORMAL = "A"


_FLAG_WORDS = {
    "high": LabFlag.HIGH,
    "low": LabFlag.LOW,
    "critical high": LabFlag.CRITICAL_HIGH,
    "critical low": LabFlag.CRITICAL_LOW,
    "normal": LabFlag.NORMAL,
    "abnormal": LabFlag.ABNORMAL,
}
_FORMAT = fenced_json_instruction(
    '{"results": [{"name": "...", "value": 13.2, "unit": "g/dL", "reference_range": "12.0-16.0", '
    '"flag": "H|L|HH|LL|N|A|null"}]}'
) + (
    "\nOne entry per result, as printed: the value as a number when it is one, else as printed text; "
    "unit and reference_range null when not printed; flag null when the report prints none."
)


class LabResult(AnswerSchema):
    name: str = Field(min_length=1)
    value: Annotated[float, Strict()] | Annotated[str, Field(min_length=1)]
    unit: str | None = None
    reference_range: str | None = None
    flag: LabFlag | None = None

    @field_validator("flag", mode="before")
    @classmethod
    def _flag_word(cls, value: object) -> object:
        if isinstance(value, str):
            key = " ".join(value.lower().split())
            if key in _FLAG_WORDS:
                return _FLAG_WORDS[key]
            return value.strip().upper()
        return value

    @field_validator("unit", "reference_range", mode="after")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


class _Answer(AnswerSchema):
    results: tuple[LabResult, ...]


class LabExtraction(TaskOutput):
    results: tuple[LabResult, ...]


def build_request(
    pages: Sequence[Image] | Image,
    *,
    thinking: bool = False,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> ModelRequest:
    """Instruction, then each page followed by `PAGE n`, then the answer format."""
    images = as_images(pages, TASK)
    parts: list[Part] = [
        text(
            f"The {len(images)} image(s) below are the pages of one laboratory report, in order. "
            "Extract every test result printed on them."
        )
    ]
    for n, page in enumerate(images, start=1):
        parts += [image(page), text(f"PAGE {n}")]
    parts.append(text(_FORMAT))
    return user_request(parts, settings=settings, thinking=thinking)


def parse(raw_text: str) -> LabExtraction:
    parsed = extract_json(raw_text, TASK)
    answer = validate(_Answer, parsed.value, task=TASK, raw_text=raw_text)
    return LabExtraction(results=answer.results, parse_notes=parsed.notes)


__all__ = [
    "DEFAULT_SETTINGS",
    "PROMPT_VERSION",
    "TASK",
    "LabExtraction",
    "LabFlag",
    "LabResult",
    "build_request",
    "parse",
]
