"""The exact truth of a fuzzed document: what a perfect reader writes, and what it must refuse.

``WrittenTruth`` is one value a perfect reader returns, with where the renderer printed it (page
and the box of the value's text), so that an extraction can be paired with it by position
whatever name the reader made of the row. ``UnreadableTruth`` is a row the renderer made
unreadable on purpose (a garbled value, a value drawn as an image): a reader lists it as
unparsed and never writes a value for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["BBox", "FuzzTruth", "UnreadableTruth", "WrittenTruth"]

BBox = tuple[float, float, float, float]  # x0, y0, x1, y1 in PDF points, origin top-left


class WrittenTruth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # as printed, wrapped lines joined by one space, without colon or leader dots
    loinc: str | None
    value: float | str  # the number, or the printed text of a qualitative result
    value_text: str  # exactly the value's words
    comparator: str | None
    unit: str | None  # as printed
    ucum: str | None  # what a perfect reader normalises the unit to
    reference_low: float | None
    reference_high: float | None
    reference_text: str | None  # as printed, without brackets around it
    flag: str | None  # H, L, HH, LL or A
    effective: datetime  # collection date and time
    page: int  # 1-based
    bbox: BBox  # the value's printed text
    families: tuple[str, ...]  # the style's families and this row's own ("name:wrapped")


class UnreadableTruth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    page: int
    bbox: BBox  # where the value should be
    kind: Literal["garbled", "image"]
    printed: str  # what the text layer holds there ("" for an image)
    hidden_value: float  # the value the renderer did not print readably


class FuzzTruth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    families: tuple[str, ...]  # the document's style
    page_count: int
    results: tuple[WrittenTruth, ...]
    unreadable: tuple[UnreadableTruth, ...]
