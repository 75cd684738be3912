"""What the extractor returns: grounded results (page + bbox), pages for the model, warnings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tools.labs.pdf.values import Comparator
from tools.medgemma.tasks.lab_extraction import LabFlag

__all__ = ["BBox", "ExtractedLab", "LabPdfExtraction", "UnparsedRow", "Word"]

BBox = tuple[float, float, float, float]  # x0, y0, x1, y1 in PDF points, origin top-left (pymupdf)


@dataclass(frozen=True, slots=True)
class Word:
    """One word of a page's text layer, as ``page.get_text("words")`` gives it.

    ``bold``: printed in a bold face (some labs mark abnormal values only so).
    """

    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    bold: bool = False
    conf: float | None = None  # OCR confidence 0..1 (tools.labs.pdf.ocr); None for a text-layer word

    @property
    def xc(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def union_bbox(words: list[Word] | tuple[Word, ...]) -> BBox:
    return (
        min(w.x0 for w in words),
        min(w.y0 for w in words),
        max(w.x1 for w in words),
        max(w.y1 for w in words),
    )


class ExtractedLab(BaseModel):
    """One printed result, with where it is printed: ``page`` (1-based) and the value's ``bbox``."""

    model_config = ConfigDict(frozen=True)

    name: str
    loinc: str | None
    name_status: Literal["matched", "unknown", "ambiguous", "no code for unit"]
    value: float | str
    value_text: str  # exactly the words inside ``bbox``
    unit: str | None  # UCUM where known (``tools.labs.units.normalize_unit``), else as printed
    comparator: Comparator | None = None
    reference_low: float | None = None
    reference_high: float | None = None
    reference_text: str | None = None
    flag: LabFlag | None = None
    effective: date | None = None  # the collection date
    effective_time: time | None = None  # its time when printed with it: naive wall-clock, zone unknown
    panel: str | None = None
    page: int
    bbox: BBox
    ocr: str | None = None  # the OCR engine and version that read it ("tesseract 5.3.0"); None: text layer

    @property
    def effective_iso(self) -> str | None:
        """``2024-03-04`` or, when the time is printed, ``2024-03-04T07:45:00`` (no offset: as printed)."""
        if self.effective is None:
            return None
        if self.effective_time is None:
            return self.effective.isoformat()
        return datetime.combine(self.effective, self.effective_time).isoformat()

    def to_json(self) -> dict[str, Any]:
        """The CLI's record: the fields of the brief, in that order; ``effective`` as ``effective_iso``."""
        return {
            "name": self.name,
            "loinc": self.loinc,
            "value": self.value,
            "unit": self.unit,
            "comparator": self.comparator,
            "reference_low": self.reference_low,
            "reference_high": self.reference_high,
            "reference_text": self.reference_text,
            "flag": self.flag.value if self.flag else None,
            "effective": self.effective_iso,
            "page": self.page,
            "bbox": [round(v, 2) for v in self.bbox],
        }


class UnparsedRow(BaseModel):
    """A row that looks like a result but was not read: where it is printed, and why not."""

    model_config = ConfigDict(frozen=True)

    page: int
    text: str
    reason: str
    bbox: BBox | None = None  # the row's words; None only where no words locate it


class LabPdfExtraction(BaseModel):
    """All results of one PDF; ``needs_model`` lists pages with no text layer (1-based)."""

    model_config = ConfigDict(frozen=True)

    source: str
    page_count: int
    results: tuple[ExtractedLab, ...]
    needs_model: tuple[int, ...] = ()
    unparsed: tuple[UnparsedRow, ...] = ()
    warnings: tuple[str, ...] = ()
    repaired: bool = False  # the file was damaged and pymupdf rebuilt what it could

    @property
    def partial(self) -> bool:
        return bool(self.needs_model or self.unparsed or self.repaired)
