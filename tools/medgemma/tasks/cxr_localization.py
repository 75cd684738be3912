"""Chest X-ray localization: one padded radiograph in, labelled boxes in original pixels out.

The image is the padded square from `tools.imaging.cxr.prepare_cxr` (its `PreparationMetadata.padding`
says where the radiograph sits). Prompt: the image, then the instruction with the targets. The
answer asked for (MedGemma 1.5's trained format):
    Final Answer: ```json [{"box_2d": [y0, x0, y1, x1], "label": "..."}] ```
with coordinates on 0..1000 of the padded square. Each box is mapped to original pixel edges with
`tools.imaging.geometry.model_box_to_pixels` (padding undone, corners ordered, clipped); a box that
is not four numbers, or lies wholly in the padding, is a ModelOutputError. Labels are normalised to
Chest ImaGenome anatomy names (`anatomy.normalise_label`); a label that is not one is kept as
written, with `anatomy=None`, and listed in `unknown_labels`. A single object instead of a list is
taken as a list of one (noted); an empty list means nothing was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

from tools.imaging.errors import BoxError
from tools.imaging.geometry import Padding, PixelBox, model_box_to_pixels
from tools.medgemma.tasks.anatomy import normalise_label
from tools.medgemma.tasks.errors import ModelOutputError
from tools.medgemma.tasks.output import AnswerSchema, TaskOutput
from tools.medgemma.tasks.parsing import extract_json, validate
from tools.medgemma.tasks.prompting import Image, image, text, user_request
from tools.medgemma.types import GenerationSettings, ModelRequest

TASK = "cxr-localization"
PROMPT_VERSION = "cxr-localization/1"
DEFAULT_SETTINGS = GenerationSettings(max_new_tokens=512)
DEFAULT_TARGETS = ("right lung", "left lung", "cardiac silhouette")

_INSTRUCTIONS = (
    "Instructions:\n"
    "Output a bounding box for each requested structure of this chest X-ray, in the form "
    "[y0, x0, y1, x1] where (y0, x0) is the top-left and (y1, x1) the bottom-right corner, so y0 < y1 "
    "and x0 < x1. Coordinates are normalised to 0..1000 of the image: a box starting at 15% of the "
    "image width has x0 = 150. Left and right are the patient's: the patient's left is on the right "
    "side of the image.\n"
    'End with "Final Answer:" followed by one JSON list inside a ```json code block, for example:\n'
    'Final Answer: ```json [{"box_2d": [120, 80, 700, 470], "label": "right lung"}] ```'
)


# Numbers only: "12" or true is not a coordinate.
Coordinate = Annotated[float, Strict()]


class _Box(AnswerSchema):
    box_2d: tuple[Coordinate, Coordinate, Coordinate, Coordinate]
    label: str = Field(min_length=1)


class _Answer(AnswerSchema):
    boxes: tuple[_Box, ...]


class LocalizedBox(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str  # as the model wrote it
    anatomy: str | None  # the Chest ImaGenome name, None when the label is not one
    box: PixelBox  # original pixel edges [y0, x0, y1, x1]
    box_2d: tuple[float, float, float, float]  # as answered, 0..1000 of the padded square


class CxrLocalization(TaskOutput):
    image_height: int
    image_width: int
    boxes: tuple[LocalizedBox, ...]

    @property
    def unknown_labels(self) -> tuple[str, ...]:
        return tuple(b.label for b in self.boxes if b.anatomy is None)


def build_request(
    padded: Image,
    *,
    targets: Sequence[str] = DEFAULT_TARGETS,
    query: str | None = None,
    thinking: bool = False,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> ModelRequest:
    """The padded image, then the instruction and the query (`query`, else "Locate: <targets>")."""
    if padded.ndim != 3 or padded.shape[0] != padded.shape[1]:
        raise ValueError(f"{TASK}: expected the padded square image, got shape {padded.shape}")
    asked = (query or "").strip()
    if not asked:
        if not targets:
            raise ValueError(f"{TASK}: name at least one target or give a query")
        asked = "Locate: " + ", ".join(targets) + "."
    return user_request(
        [image(padded), text(f"{_INSTRUCTIONS}\n\nUser query: {asked}")], settings=settings, thinking=thinking
    )


def parse(raw_text: str, padding: Padding) -> CxrLocalization:
    """Boxes in original pixels with their labels normalised (module docstring)."""
    parsed = extract_json(raw_text, TASK)
    value, notes = parsed.value, parsed.notes
    if isinstance(value, dict):
        value, notes = [value], (*notes, "a single box object taken as a list of one")
    answer = validate(_Answer, {"boxes": value}, task=TASK, raw_text=raw_text)
    boxes: list[LocalizedBox] = []
    for i, item in enumerate(answer.boxes):
        try:
            pixels = model_box_to_pixels(list(item.box_2d), padding)
        except BoxError as exc:
            raise ModelOutputError(TASK, f"box {i} ({item.label}): {exc.reason}", raw_text) from exc
        boxes.append(
            LocalizedBox(
                label=item.label, anatomy=normalise_label(item.label), box=pixels, box_2d=item.box_2d
            )
        )
    return CxrLocalization(
        image_height=padding.height, image_width=padding.width, boxes=tuple(boxes), parse_notes=notes
    )


__all__ = [
    "DEFAULT_SETTINGS",
    "DEFAULT_TARGETS",
    "PROMPT_VERSION",
    "TASK",
    "CxrLocalization",
    "LocalizedBox",
    "build_request",
    "parse",
]
