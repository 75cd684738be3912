"""Longitudinal chest X-ray comparison (MS-CXR-T style): prior and current in, change per finding out.

Prompt layout (DESIGN.md): the prior image, then the current image, then the comparison prompt.
The answer asked for is JSON:
    {"comparisons": [{"finding": "pleural effusion", "change": "improved", "evidence": "..."}],
     "summary": "..."}
`change` is one of improved / stable / worsened; a few exact synonyms are accepted (better,
improving -> improved; unchanged, no change -> stable; worse, worsening, progressed -> worsened).
Anything else (e.g. "decreased", which reads either way) is a ModelOutputError.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pydantic import Field, field_validator

from tools.medgemma.tasks.output import AnswerSchema, TaskOutput
from tools.medgemma.tasks.parsing import extract_json, validate
from tools.medgemma.tasks.prompting import Image, fenced_json_instruction, image, text, user_request
from tools.medgemma.types import GenerationSettings, ModelRequest

TASK = "cxr-comparison"
PROMPT_VERSION = "cxr-comparison/1"
DEFAULT_SETTINGS = GenerationSettings(max_new_tokens=768)
# The findings MS-CXR-T labels.
DEFAULT_FINDINGS = ("consolidation", "edema", "pleural effusion", "pneumonia", "pneumothorax")


class Change(StrEnum):
    IMPROVED = "improved"
    STABLE = "stable"
    WORSENED = "worsened"


_SYNONYMS = {
    "improved": Change.IMPROVED,
    "improving": Change.IMPROVED,
    "better": Change.IMPROVED,
    "stable": Change.STABLE,
    "unchanged": Change.STABLE,
    "no change": Change.STABLE,
    "worsened": Change.WORSENED,
    "worsening": Change.WORSENED,
    "worse": Change.WORSENED,
    "progressed": Change.WORSENED,
}
_FORMAT = fenced_json_instruction(
    '{"comparisons": [{"finding": "...", "change": "improved|stable|worsened", "evidence": "..."}], '
    '"summary": "..."}'
)


class FindingChange(AnswerSchema):
    finding: str = Field(min_length=1)
    change: Change
    evidence: str = ""

    @field_validator("change", mode="before")
    @classmethod
    def _synonym(cls, value: object) -> object:
        if isinstance(value, str):
            key = " ".join(value.lower().split())
            if key in _SYNONYMS:
                return _SYNONYMS[key]
        return value


class _Answer(AnswerSchema):
    comparisons: tuple[FindingChange, ...]
    summary: str = ""


class CxrComparison(TaskOutput):
    comparisons: tuple[FindingChange, ...]
    summary: str


def build_request(
    prior: Image,
    current: Image,
    *,
    findings: Sequence[str] = DEFAULT_FINDINGS,
    prior_date: str | None = None,
    current_date: str | None = None,
    question: str | None = None,
    thinking: bool = False,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> ModelRequest:
    """Prior image, current image, then the prompt naming which is which and the findings to compare."""
    when_prior = f" ({prior_date})" if prior_date else ""
    when_current = f" ({current_date})" if current_date else ""
    asked = (question or "").strip() or (
        "For each of these findings that is present on either image, say whether it improved, "
        "stayed stable or worsened from the prior to the current image: " + ", ".join(findings) + "."
    )
    prompt = (
        f"The first image is the prior chest X-ray{when_prior}; the second is the current chest X-ray"
        f"{when_current} of the same patient.\n{asked}\n\n{_FORMAT}"
    )
    return user_request([image(prior), image(current), text(prompt)], settings=settings, thinking=thinking)


def parse(raw_text: str) -> CxrComparison:
    parsed = extract_json(raw_text, TASK)
    answer = validate(_Answer, parsed.value, task=TASK, raw_text=raw_text)
    return CxrComparison(comparisons=answer.comparisons, summary=answer.summary, parse_notes=parsed.notes)


__all__ = [
    "DEFAULT_FINDINGS",
    "DEFAULT_SETTINGS",
    "PROMPT_VERSION",
    "TASK",
    "Change",
    "CxrComparison",
    "FindingChange",
    "build_request",
    "parse",
]
