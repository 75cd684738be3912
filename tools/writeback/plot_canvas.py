"""A small RGB raster canvas for the trend plots: antialiased shapes, glyph text, PNG out (pure).

Why not matplotlib: a trend plot through matplotlib's artist tree, text layout and Agg cost about
60 ms, and a new patient gets up to twelve of them (most of a summary's CPU time). These plots
are always the same few shapes (a band, a polyline, round and diamond markers, ticks, text), so
they are drawn here with numpy on a float32 image, in about a millisecond or two.

Deterministic bytes for the same input (the report's identifier hashes them):

* coverage comes from distances computed with ``+ - * /``, ``sqrt``, ``min``/``max`` only (IEEE
  exact everywhere: no transcendental function whose last bit may differ between CPUs);
* text is set by FreeType through matplotlib's ``FT2Font`` (the copy built into matplotlib's
  wheel, not the system's) from the DejaVu Sans files bundled with matplotlib, by path;
* the PNG holds IHDR, one IDAT (zlib level 1: about half the time of level 6 for a quarter more
  bytes, some 20 KB a plot) and IEND: no time, no software, no gamma chunk.
"""

from __future__ import annotations

import functools
import itertools
import struct
import threading
import zlib
from pathlib import Path
from typing import Final

import matplotlib
import numpy as np
import numpy.typing as npt
from matplotlib.ft2font import FT2Font, LoadFlags

__all__ = ["BOLD_FONT", "REGULAR_FONT", "Canvas", "Glyphs", "hex_rgb", "text_bitmap"]

_FONT_DIR: Final = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
REGULAR_FONT: Final = _FONT_DIR / "DejaVuSans.ttf"
BOLD_FONT: Final = _FONT_DIR / "DejaVuSans-Bold.ttf"
_DPI: Final = 100.0
_SQRT2: Final = float(np.sqrt(np.float64(2.0)))

Coverage = npt.NDArray[np.float32]


def hex_rgb(color: str) -> npt.NDArray[np.float32]:
    """``#rrggbb`` as three floats in 0..255."""
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float32)


class Glyphs:
    """A string set in one font and size: coverage (0..1, rows x columns) and its baseline row."""

    __slots__ = ("baseline", "coverage")

    def __init__(self, coverage: Coverage, baseline: int) -> None:
        self.coverage = coverage
        self.baseline = baseline

    @property
    def width(self) -> int:
        return int(self.coverage.shape[1])

    @property
    def height(self) -> int:
        return int(self.coverage.shape[0])

    def rotated(self) -> Glyphs:
        """Turned 90 degrees counter-clockwise (reads bottom to top); baseline is then a column."""
        return Glyphs(np.ascontiguousarray(np.rot90(self.coverage)), self.baseline)


# FT2Font objects keep the last text set: one per font file, used under a lock (the graph runs
# sync nodes on a thread pool); the strings repeat (ticks, legend, footer), so they are cached.
_fonts: dict[Path, FT2Font] = {}
_font_lock = threading.Lock()


@functools.lru_cache(maxsize=4096)
def text_bitmap(text: str, size: float, bold: bool = False) -> Glyphs:
    """``text`` set at ``size`` points (100 dpi), antialiased, as FreeType draws it for matplotlib."""
    path = BOLD_FONT if bold else REGULAR_FONT
    with _font_lock:
        font = _fonts.get(path)
        if font is None:
            font = _fonts[path] = FT2Font(str(path))
        font.set_size(size, _DPI)
        font.set_text(text, 0.0, flags=LoadFlags.FORCE_AUTOHINT)
        font.draw_glyphs_to_bitmap(antialiased=True)
        image = np.asarray(font.get_image(), dtype=np.float32) / np.float32(255.0)
        descent = (font.get_descent() + 32) // 64
    baseline = int(image.shape[0]) - int(descent)
    return Glyphs(np.ascontiguousarray(image), baseline)


class Canvas:
    """A white ``width`` x ``height`` RGB image; shapes are blended in with fractional coverage."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        # 8-bit from the start: a blend works on its block in float32 and rounds it back, so the
        # PNG needs no conversion of the whole image (most of it is never touched).
        self.pixels = np.full((height, width, 3), 255, dtype=np.uint8)

    def _window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int] | None:
        """Whole pixels covering [x0, x1) x [y0, y1), clipped to the image; None when empty."""
        c0, r0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
        c1, r1 = min(int(np.ceil(x1)), self.width), min(int(np.ceil(y1)), self.height)
        if c0 >= c1 or r0 >= r1:
            return None
        return r0, r1, c0, c1

    def blend(self, r0: int, c0: int, coverage: Coverage, color: npt.NDArray[np.float32]) -> None:
        """Blend ``color`` at ``coverage`` (0..1) into the block whose top left pixel is (r0, c0)."""
        h, w = coverage.shape
        a0, b0 = max(-r0, 0), max(-c0, 0)
        a1, b1 = min(h, self.height - r0), min(w, self.width - c0)
        if a0 >= a1 or b0 >= b1:
            return
        region = self.pixels[r0 + a0 : r0 + a1, c0 + b0 : c0 + b1]
        mixed = region.astype(np.float32)
        mixed += (color - mixed) * coverage[a0:a1, b0:b1, None]
        region[...] = _rounded(mixed)

    def _centres(self, window: tuple[int, int, int, int]) -> tuple[Coverage, Coverage]:
        r0, r1, c0, c1 = window
        ys = np.arange(r0, r1, dtype=np.float32)[:, None] + np.float32(0.5)
        xs = np.arange(c0, c1, dtype=np.float32)[None, :] + np.float32(0.5)
        return xs, ys

    def fill_rect(self, x0: float, y0: float, x1: float, y1: float, color: npt.NDArray[np.float32]) -> None:
        """The rectangle [x0, x1] x [y0, y1]; edge pixels get the fraction they cover."""
        window = self._window(x0, y0, x1, y1)
        if window is None:
            return
        r0, r1, c0, c1 = window
        cols = np.arange(c0, c1, dtype=np.float32)
        rows = np.arange(r0, r1, dtype=np.float32)
        cx = np.clip(np.minimum(cols + 1, np.float32(x1)) - np.maximum(cols, np.float32(x0)), 0, 1)
        cy = np.clip(np.minimum(rows + 1, np.float32(y1)) - np.maximum(rows, np.float32(y0)), 0, 1)
        self.blend(r0, c0, (cy[:, None] * cx[None, :]).astype(np.float32), color)

    def polyline(
        self, points: list[tuple[float, float]], width: float, color: npt.NDArray[np.float32]
    ) -> None:
        """Connected segments of ``width`` px with round joins: each pixel is blended once, at
        the largest coverage any segment gives it (no darker overlap at the joins)."""
        if len(points) < 2:
            return
        half = width / 2 + 0.5
        xs_all = [p[0] for p in points]
        ys_all = [p[1] for p in points]
        window = self._window(min(xs_all) - half, min(ys_all) - half, max(xs_all) + half, max(ys_all) + half)
        if window is None:
            return
        r0, r1, c0, c1 = window
        layer = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
        for (ax, ay), (bx, by) in itertools.pairwise(points):
            seg = self._window(min(ax, bx) - half, min(ay, by) - half, max(ax, bx) + half, max(ay, by) + half)
            if seg is None:
                continue
            xs, ys = self._centres(seg)
            dx, dy = np.float32(bx - ax), np.float32(by - ay)
            length2 = dx * dx + dy * dy
            px, py = xs - np.float32(ax), ys - np.float32(ay)
            # A zero-length segment is a dot: distance to its one point.
            t = np.clip((px * dx + py * dy) / length2, 0, 1) if length2 > 0 else np.zeros_like(px * py)
            ex, ey = px - t * dx, py - t * dy
            cover = np.clip(np.float32(half) - np.sqrt(ex * ex + ey * ey), 0, 1)
            sr0, sr1, sc0, sc1 = seg
            block = layer[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0]
            np.maximum(block, cover, out=block)
        # Only the pixels the line touches: its bounding box may be most of the plot.
        rows, cols = np.nonzero(layer)
        mixed = self.pixels[r0 + rows, c0 + cols].astype(np.float32)
        mixed += (color - mixed) * layer[rows, cols, None]
        self.pixels[r0 + rows, c0 + cols] = _rounded(mixed)

    def disc(self, cx: float, cy: float, radius: float, color: npt.NDArray[np.float32]) -> None:
        window = self._window(cx - radius - 1, cy - radius - 1, cx + radius + 1, cy + radius + 1)
        if window is None:
            return
        xs, ys = self._centres(window)
        px, py = xs - np.float32(cx), ys - np.float32(cy)
        cover = np.clip(np.float32(radius + 0.5) - np.sqrt(px * px + py * py), 0, 1)
        self.blend(window[0], window[2], cover, color)

    def diamond(
        self,
        cx: float,
        cy: float,
        radius: float,
        edge: float,
        face: npt.NDArray[np.float32],
        edge_color: npt.NDArray[np.float32],
    ) -> None:
        """A square standing on a corner (``radius``: centre to corner) with a face and an edge
        of ``edge`` px centred on its outline."""
        reach = radius + edge + 1
        window = self._window(cx - reach, cy - reach, cx + reach, cy + reach)
        if window is None:
            return
        xs, ys = self._centres(window)
        # Distance to the outline, across it (negative inside).
        manhattan = np.abs(xs - np.float32(cx)) + np.abs(ys - np.float32(cy))
        across = (manhattan - np.float32(radius)) / np.float32(_SQRT2)
        self.blend(window[0], window[2], np.clip(np.float32(0.5) - across, 0, 1), face)
        ring = np.clip(np.float32(edge / 2 + 0.5) - np.abs(across), 0, 1)
        self.blend(window[0], window[2], ring, edge_color)

    def text(self, glyphs: Glyphs, left: float, top: float, color: npt.NDArray[np.float32]) -> None:
        """Glyphs with their bitmap's top left corner at (left, top), snapped to whole pixels."""
        self.blend(round(top), round(left), glyphs.coverage, color)

    def png(self) -> bytes:
        """The image as an 8-bit RGB PNG (no ancillary chunks)."""
        rows = np.zeros((self.height, self.width * 3 + 1), dtype=np.uint8)  # filter byte 0: none
        rows[:, 1:] = self.pixels.reshape(self.height, -1)
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return b"".join(
            (
                b"\x89PNG\r\n\x1a\n",
                _chunk(b"IHDR", header),
                _chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)),
                _chunk(b"IEND", b""),
            )
        )


def _rounded(mixed: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    # A blend of two values in 0..255 stays in 0..255: + 0.5 and truncation round to nearest.
    return (mixed + np.float32(0.5)).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
