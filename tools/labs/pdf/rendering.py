"""Pages rendered to pixels for the model and for OCR, with a cap on the pixels a page may cost."""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

__all__ = ["DEFAULT_DPI", "MAX_RENDER_PIXELS", "render_dpi", "render_page"]

DEFAULT_DPI: Final = 150
# A page is rendered at the dpi asked unless that gives more pixels than this (75 MB of RGB; an A4
# page is 2.2 million pixels at 150 dpi, 8.7 million at 300): then at the dpi that fits. Pages are
# at most 14,400 pt a side (reader.MAX_PAGE_POINTS), which at 150 dpi would be 900 million pixels.
MAX_RENDER_PIXELS: Final = 25_000_000


def render_dpi(width_pt: float, height_pt: float, dpi: int, max_pixels: int = MAX_RENDER_PIXELS) -> int:
    """``dpi``, lowered where a page of that size would render to more than ``max_pixels``."""
    pixels = (width_pt * dpi / 72) * (height_pt * dpi / 72)
    if pixels <= max_pixels:
        return dpi
    return max(1, math.floor(dpi * math.sqrt(max_pixels / pixels)))


def render_page(
    page: Any, dpi: int = DEFAULT_DPI, *, max_pixels: int = MAX_RENDER_PIXELS
) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """A pymupdf page as an ``HxWx3`` uint8 RGB array, at ``dpi`` or lower (``render_dpi``)."""
    rect = page.rect
    pix = page.get_pixmap(dpi=render_dpi(rect.width, rect.height, dpi, max_pixels), alpha=False)
    data = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width, pix.n)
    return np.ascontiguousarray(data[:, :, :3])
