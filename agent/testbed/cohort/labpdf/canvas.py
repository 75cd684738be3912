"""A thin drawing surface over pymupdf and the deterministic save every layout ends with.

pymupdf writes a random /ID into the trailer unless told not to; ``finish`` saves with
``no_new_id=True``, fixed metadata (dates from the report, a fixed producer) and full garbage
collection, so the same inputs give byte-identical PDFs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

import pymupdf

__all__ = ["PRODUCER", "Sheet", "finish", "new_document", "open_pdf", "pdf_date"]

PRODUCER: Final = "ChartAgent labpdf (synthetic test data)"
_A4: Final = (595.0, 842.0)


def pdf_date(moment: datetime) -> str:
    """PDF date string ("D:YYYYMMDDHHmmSS") of a naive or UTC datetime."""
    return moment.strftime("D:%Y%m%d%H%M%S") + "Z"


def new_document() -> pymupdf.Document:
    """An empty PDF (pymupdf's constructor is untyped)."""
    return pymupdf.open()  # type: ignore[no-untyped-call]


def open_pdf(data: bytes) -> pymupdf.Document:
    """A PDF from bytes; raises pymupdf's ``FileDataError``/``EmptyFileError`` on bad bytes."""
    return pymupdf.open(stream=data, filetype="pdf")  # type: ignore[no-untyped-call]


def finish(doc: pymupdf.Document, title: str, moment: datetime) -> bytes:
    """Fixed metadata and a deterministic save (no random /ID, garbage-collected, deflated)."""
    stamp = pdf_date(moment)
    doc.set_metadata(
        {"title": title, "producer": PRODUCER, "creator": PRODUCER, "creationDate": stamp, "modDate": stamp}
    )
    data: bytes = doc.tobytes(garbage=4, deflate=True, no_new_id=True)  # type: ignore[no-untyped-call]
    return data


class Sheet:
    """Pages of one document with a cursor; ``on_new_page`` redraws running headers."""

    def __init__(
        self,
        doc: pymupdf.Document,
        size: tuple[float, float] = _A4,
        margin: float = 40.0,
        on_new_page: Callable[[Sheet], None] | None = None,
    ) -> None:
        self.doc = doc
        self.width, self.height = size
        self.margin = margin
        self.on_new_page = on_new_page
        self.page: pymupdf.Page = doc.new_page(width=self.width, height=self.height)
        self.y = margin

    @property
    def bottom(self) -> float:
        return self.height - self.margin

    def new_page(self) -> None:
        self.page = self.doc.new_page(width=self.width, height=self.height)
        self.y = self.margin
        if self.on_new_page is not None:
            self.on_new_page(self)

    def ensure(self, height: float) -> None:
        """Start a new page when ``height`` points do not fit below the cursor."""
        if self.y + height > self.bottom:
            self.new_page()

    def text(
        self, x: float, y: float, text: str, size: float = 9.0, font: str = "helv", align_right: bool = False
    ) -> None:
        if align_right:
            x -= pymupdf.get_text_length(text, fontname=font, fontsize=size)
        self.page.insert_text((x, y), text, fontname=font, fontsize=size)

    def line(self, x0: float, y0: float, x1: float, y1: float, width: float = 0.5) -> None:
        self.page.draw_line((x0, y0), (x1, y1), color=(0, 0, 0), width=width)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: float | None = None) -> None:
        colour = None if fill is None else (fill, fill, fill)
        self.page.draw_rect((x0, y0, x1, y1), color=(0, 0, 0), fill=colour, width=0.5)

    def rule(self, width: float = 0.5) -> None:
        self.line(self.margin, self.y, self.width - self.margin, self.y, width)

    def wrap(self, x: float, text: str, size: float, font: str, max_width: float) -> None:
        """Print ``text`` word-wrapped from the cursor, moving it down."""
        words, line = text.split(), ""
        for word in words:
            candidate = f"{line} {word}".strip()
            if line and pymupdf.get_text_length(candidate, fontname=font, fontsize=size) > max_width:
                self.ensure(size * 1.3)
                self.text(x, self.y, line, size, font)
                self.y += size * 1.3
                line = word
            else:
                line = candidate
        if line:
            self.ensure(size * 1.3)
            self.text(x, self.y, line, size, font)
            self.y += size * 1.3
