"""Write small PDFs from positioned text: known-answer fixtures for tests and examples.

``write_pdf([[(x, y, "text"), ...], ...])`` makes one page per list, each text drawn with its
baseline at ``(x, y)`` (points, origin top-left) in Helvetica. ``image_pages`` adds pages that
hold only an image (a scan without a text layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pymupdf

__all__ = ["write_pdf"]

Placed = tuple[float, float, str]

_pymupdf: Any = pymupdf  # untyped library


def write_pdf(
    pages: Sequence[Sequence[Placed]],
    *,
    font_size: float = 9.0,
    image_pages: Sequence[int] = (),
    size: tuple[float, float] = (595.0, 842.0),
    password: str | None = None,
) -> bytes:
    """A PDF with ``pages`` (placed text); pages whose index is in ``image_pages`` get a scan image."""
    doc = _pymupdf.open()
    for index, placed in enumerate(pages):
        page = doc.new_page(width=size[0], height=size[1])
        for x, y, text in placed:
            page.insert_text((x, y), text, fontsize=font_size, fontname="helv")
        if index in image_pages:
            pixels = np.full((200, 160, 3), 235, dtype=np.uint8)
            pixels[40:50, 20:140] = 20  # a dark bar standing in for a printed line
            pix = _pymupdf.Pixmap(_pymupdf.csRGB, 160, 200, pixels.tobytes(), False)
            page.insert_image(page.rect, pixmap=pix)
    options: dict[str, Any] = {}
    if password is not None:
        options = {"encryption": _pymupdf.PDF_ENCRYPT_AES_256, "user_pw": password, "owner_pw": password}
    data: bytes = doc.tobytes(**options)
    doc.close()
    return data
