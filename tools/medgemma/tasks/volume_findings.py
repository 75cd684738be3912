"""CT and MRI findings: slices in, a findings list and an impression out.

Prompt layout (Google's 3D recipe, DESIGN.md): the instruction text, then for each slice the image
followed by the text `SLICE n` (1-based, in series order), then the question and the answer format
last.

The answer asked for is JSON:
    {"findings": [{"description": "...", "slices": [12, 13]}], "impression": "..."}
A finding may also be a bare string (no slices cited). `slices` must name SLICE labels that were
shown.

Plain text is accepted in one strict form only, the radiology-report sections: a line starting
`Findings:` and a later line starting `Impression:` (each once, any case, optionally in `**`).
Each non-empty line of the findings section (bullet or number marker removed) is one finding, with
the `SLICE n` labels it mentions as its slices; the impression section is the impression. Any other
prose is a ModelOutputError.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from tools.medgemma.tasks.errors import ModelOutputError
from tools.medgemma.tasks.output import AnswerSchema, TaskOutput
from tools.medgemma.tasks.parsing import answer_text, extract_json, validate
from tools.medgemma.tasks.prompting import (
    Image,
    as_images,
    fenced_json_instruction,
    image,
    text,
    user_request,
)
from tools.medgemma.types import GenerationSettings, ModelRequest, Part

PROMPT_VERSION = "volume-findings/1"
DEFAULT_SETTINGS = GenerationSettings(max_new_tokens=1024)


class VolumeModality(StrEnum):
    CT = "ct"
    MRI = "mri"


def task_name(modality: VolumeModality) -> str:
    return f"{modality.value}-findings"


_INSTRUCTIONS = {
    VolumeModality.CT: (
        "You are a radiologist reading a CT series. Below are {n} axial slices sampled evenly "
        "through the series{description}, in series order. Each slice is an RGB image of three "
        "windows: red -1024 to 1024 HU, green -135 to 215 HU, blue 0 to 80 HU. Each image is followed "
        "by its label SLICE n."
    ),
    VolumeModality.MRI: (
        "You are a radiologist reading an MRI series. Below are {n} slices sampled evenly through the "
        "series{description}, in series order, with intensities scaled over the whole volume. Each "
        "image is followed by its label SLICE n."
    ),
}
_DEFAULT_QUESTION = {
    VolumeModality.CT: "Describe the abnormal findings in this CT series and give an impression.",
    VolumeModality.MRI: "Describe the abnormal findings in this MRI series and give an impression.",
}
_FORMAT = (
    fenced_json_instruction('{"findings": [{"description": "...", "slices": [12, 13]}], "impression": "..."}')
    + "\nList each abnormal finding once with the SLICE numbers where it is seen (an empty list if "
    "unsure); use an empty findings list when nothing is abnormal. The impression is one or two sentences."
)


class Finding(AnswerSchema):
    description: str = Field(min_length=1)
    slices: tuple[int, ...] = ()


class _Answer(AnswerSchema):
    findings: tuple[Finding, ...]
    impression: str = Field(min_length=1)

    @field_validator("findings", mode="before")
    @classmethod
    def _bare_strings(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return [{"description": v} if isinstance(v, str) else v for v in value]
        return value


class VolumeFindings(TaskOutput):
    modality: VolumeModality
    findings: tuple[Finding, ...]
    impression: str
    answer_format: Literal["json", "sections"]


def build_request(
    images: Sequence[Image] | Image,
    *,
    modality: VolumeModality,
    series_description: str = "",
    question: str | None = None,
    thinking: bool = False,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> ModelRequest:
    """Instruction, then each slice image followed by `SLICE n`, then the question and format last."""
    slices = as_images(images, task_name(modality))
    description = f' ("{series_description.strip()}")' if series_description.strip() else ""
    parts: list[Part] = [text(_INSTRUCTIONS[modality].format(n=len(slices), description=description))]
    for n, slice_image in enumerate(slices, start=1):
        parts += [image(slice_image), text(f"SLICE {n}")]
    asked = (question or "").strip() or _DEFAULT_QUESTION[modality]
    parts.append(text(f"{asked}\n\n{_FORMAT}"))
    return user_request(parts, settings=settings, thinking=thinking)


def parse(raw_text: str, *, modality: VolumeModality, slice_count: int | None = None) -> VolumeFindings:
    """The findings and impression, from JSON or strict report sections (module docstring)."""
    task = task_name(modality)
    answer = answer_text(raw_text, task)
    sections = _split_sections(answer.text, task, raw_text)
    if sections is not None:
        findings_text, impression, notes = sections
        data: object = {"findings": _finding_lines(findings_text), "impression": impression}
        notes = (*answer.notes, *notes)
        answer_format: Literal["json", "sections"] = "sections"
    else:
        parsed = extract_json(raw_text, task)
        data, notes, answer_format = parsed.value, parsed.notes, "json"
    result = validate(_Answer, data, task=task, raw_text=raw_text)
    if slice_count is not None:
        for finding in result.findings:
            outside = [s for s in finding.slices if not 1 <= s <= slice_count]
            if outside:
                raise ModelOutputError(
                    task, f"finding cites SLICE {outside} but only 1..{slice_count} were shown", raw_text
                )
    return VolumeFindings(
        modality=modality,
        findings=result.findings,
        impression=result.impression,
        answer_format=answer_format,
        parse_notes=notes,
    )


_HEADING = re.compile(
    r"^[ \t]*(?:\*\*)?[ \t]*(findings|impression)[ \t]*(?:\*\*)?[ \t]*:[ \t]*(?:\*\*)?", re.I | re.M
)
_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_SLICE = re.compile(r"\bSLICES?\s+(\d+)(?:\s*(?:-|–|to)\s*(\d+))?", re.I)


def _split_sections(body: str, task: str, raw_text: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(findings text, impression text, notes) when the answer is in report sections, else None."""
    headings = list(_HEADING.finditer(body))
    names = [h.group(1).lower() for h in headings]
    if "findings" not in names or "impression" not in names:
        return None
    if names != ["findings", "impression"]:
        raise ModelOutputError(
            task, f"report sections must be Findings then Impression, once each; got {names}", raw_text
        )
    findings_heading, impression_heading = headings
    findings = body[findings_heading.end() : impression_heading.start()]
    impression = " ".join(body[impression_heading.end() :].split())
    notes = ("text before 'Findings:' ignored",) if body[: findings_heading.start()].strip() else ()
    return findings, impression, notes


def _finding_lines(findings_text: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for line in findings_text.splitlines():
        description = _MARKER.sub("", line).strip()
        if not description:
            continue
        slices: list[int] = []
        for m in _SLICE.finditer(description):
            first = int(m.group(1))
            last = int(m.group(2)) if m.group(2) else first
            slices += range(first, last + 1) if last >= first else [first, last]
        out.append({"description": description, "slices": sorted(set(slices))})
    return out


__all__ = [
    "DEFAULT_SETTINGS",
    "PROMPT_VERSION",
    "Finding",
    "VolumeFindings",
    "VolumeModality",
    "build_request",
    "parse",
    "task_name",
]
