"""Box geometry (pure): MedGemma's `box_2d` on 0..1000 of the padded square <-> original pixel coordinates.

A chest X-ray of H x W pixels is padded, centred, to an S x S square (S = max(H, W); the odd pixel
goes to the bottom or right). The model answers boxes `[y0, x0, y1, x1]` normalised to 0..1000 of that
square. Pixel boxes here are continuous edges in original pixels: `y0, x0` the top-left corner, `y1, x1`
the bottom-right one, so a box covering pixel rows 10..19 is `y0=10, y1=20`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, model_validator

from tools.imaging.errors import BoxError

MODEL_SCALE = 1000.0


class Padding(BaseModel):
    """How an H x W image sits in its padded square."""

    model_config = ConfigDict(frozen=True)

    height: int
    width: int
    top: int
    left: int

    @model_validator(mode="after")
    def _fits(self) -> Padding:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"image must be at least 1x1, got {self.height}x{self.width}")
        if not (0 <= self.top <= self.size - self.height and 0 <= self.left <= self.size - self.width):
            raise ValueError(f"offsets ({self.top}, {self.left}) do not fit a {self.size} square")
        return self

    @property
    def size(self) -> int:
        return max(self.height, self.width)

    @property
    def bottom(self) -> int:
        return self.size - self.height - self.top

    @property
    def right(self) -> int:
        return self.size - self.width - self.left

    @classmethod
    def centred(cls, height: int, width: int) -> Padding:
        size = max(height, width)
        return cls(height=height, width=width, top=(size - height) // 2, left=(size - width) // 2)


class PixelBox(BaseModel):
    """A box in original pixel coordinates (edges, not pixel centres), ordered and non-empty."""

    model_config = ConfigDict(frozen=True)

    y0: float
    x0: float
    y1: float
    x1: float

    @model_validator(mode="after")
    def _ordered(self) -> PixelBox:
        values = (self.y0, self.x0, self.y1, self.x1)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"box has a non-finite coordinate: {list(values)}")
        if self.y1 <= self.y0 or self.x1 <= self.x0:
            raise ValueError(f"box is empty or not ordered (y0 < y1, x0 < x1): {list(values)}")
        return self

    def as_list(self) -> list[float]:
        return [self.y0, self.x0, self.y1, self.x1]


def parse_box(values: object) -> tuple[float, float, float, float]:
    """Four finite numbers, or a BoxError saying what is wrong."""
    if not isinstance(values, Sequence) or isinstance(values, str | bytes) or len(values) != 4:
        raise BoxError(values, "expected four numbers [y0, x0, y1, x1]")
    out: list[float] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise BoxError(values, f"coordinate {v!r} is not a number")
        if not math.isfinite(v):
            raise BoxError(values, "coordinates must be finite")
        out.append(float(v))
    return out[0], out[1], out[2], out[3]


def model_box_to_pixels(box_2d: object, padding: Padding) -> PixelBox:
    """Map a model box (0..1000 of the padded square) to original pixels: undo padding, order, clip.

    A box that is empty, or lies wholly in the padding, is an error rather than a zero-area box.
    """
    y0, x0, y1, x1 = parse_box(box_2d)
    scale = padding.size / MODEL_SCALE
    ys = sorted((y0 * scale - padding.top, y1 * scale - padding.top))
    xs = sorted((x0 * scale - padding.left, x1 * scale - padding.left))
    return clip_box((ys[0], xs[0], ys[1], xs[1]), padding.height, padding.width, original=box_2d)


def pixels_to_model_box(box: PixelBox, padding: Padding) -> tuple[float, float, float, float]:
    """Map an original-pixel box to the model's 0..1000 frame of the padded square."""
    scale = MODEL_SCALE / padding.size
    return (
        (box.y0 + padding.top) * scale,
        (box.x0 + padding.left) * scale,
        (box.y1 + padding.top) * scale,
        (box.x1 + padding.left) * scale,
    )


def clip_box(box: object, height: int, width: int, *, original: object | None = None) -> PixelBox:
    """Order a pixel box's corners and clip it to an H x W image; an empty result is a BoxError."""
    y0, x0, y1, x1 = parse_box(box)
    ya, yb = sorted((y0, y1))
    xa, xb = sorted((x0, x1))
    ya, yb = max(0.0, ya), min(float(height), yb)
    xa, xb = max(0.0, xa), min(float(width), xb)
    if yb <= ya or xb <= xa:
        raise BoxError(
            original if original is not None else box,
            f"empty once ordered and clipped to the {height}x{width} image",
        )
    return PixelBox(y0=ya, x0=xa, y1=yb, x1=xb)


__all__ = [
    "MODEL_SCALE",
    "Padding",
    "PixelBox",
    "clip_box",
    "model_box_to_pixels",
    "parse_box",
    "pixels_to_model_box",
]
