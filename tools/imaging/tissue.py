"""Tissue mask of a whole-slide thumbnail (pure): stained tissue is saturated, glass is not.

H&E tissue is pink to purple (HSV saturation about 0.2 to 0.7); glass and the background a
scanner paints are near white or grey (saturation below 0.05). The threshold is Otsu's on the
saturation histogram, clamped to [0.05, 0.20]: the floor keeps a blank slide from yielding
"tissue" out of JPEG noise, the cap keeps a slide covered in tissue from being split in two
classes of tissue. Near-black pixels (pen marks, slide edges, scanner borders) are never tissue.
Morphology then closes gaps between nuclei, opens away specks and drops components smaller than
`min_area_um2`; sizes are given in micrometres so the result does not depend on thumbnail size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

__all__ = ["TissueMask", "TissueMaskParams", "otsu_threshold", "saturation", "tissue_mask"]

_BINS: Final = 256


class TissueMaskParams(BaseModel):
    model_config = ConfigDict(frozen=True)

    min_threshold: float = Field(default=0.05, ge=0, le=1)
    max_threshold: float = Field(default=0.20, ge=0, le=1)
    # Pixels whose brightest channel is below this (0..1) are dark artefacts, not tissue.
    min_value: float = Field(default=0.2, ge=0, le=1)
    closing_um: float = Field(default=16.0, ge=0)
    opening_um: float = Field(default=16.0, ge=0)
    min_area_um2: float = Field(default=10_000.0, ge=0)  # 0.01 mm^2, a 100 um square


@dataclass(frozen=True, eq=False)
class TissueMask:
    """The boolean mask (thumbnail resolution) and the saturation threshold that made it."""

    mask: NDArray[np.bool_]
    threshold: float
    mpp: float

    @property
    def fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


def saturation(rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
    """HSV saturation (max - min) / max in 0..1; black gives 0."""
    high = rgb.max(axis=-1).astype(np.float32)
    low = rgb.min(axis=-1).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sat = np.where(high > 0, (high - low) / high, 0.0)
    return sat.astype(np.float32)


def otsu_threshold(values: NDArray[np.float32], *, value_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """Otsu's threshold over a 256-bin histogram: the cut that maximises between-class variance.

    Returns the upper edge of the last bin of the lower class; a constant input returns its value.
    When two classes are cleanly apart every cut in the gap scores the same; we take the middle
    of that plateau rather than its first bin, which would hug the lower class.
    """
    hist, edges = np.histogram(values, bins=_BINS, range=value_range)
    total = hist.sum()
    if total == 0:
        return value_range[0]
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = total - weight_low
    sum_low = np.cumsum(hist * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    if not np.any(between > 0):
        return float(centres[int(np.argmax(hist))])
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float(edges[(int(best[0]) + int(best[-1])) // 2 + 1])


def _disk(radius_px: int) -> NDArray[np.bool_]:
    r = np.arange(-radius_px, radius_px + 1)
    return np.asarray((r[:, None] ** 2 + r[None, :] ** 2) <= radius_px**2)


def _morph(
    mask: NDArray[np.bool_], operation: Callable[..., NDArray[np.bool_]], radius_px: int
) -> NDArray[np.bool_]:
    """Closing or opening with a disk; edge padding keeps tissue that touches the border intact."""
    if radius_px <= 0:
        return mask
    padded = np.pad(mask, radius_px, mode="edge")
    return operation(padded, structure=_disk(radius_px))[radius_px:-radius_px, radius_px:-radius_px]


def tissue_mask(rgb: NDArray[np.uint8], *, mpp: float, params: TissueMaskParams | None = None) -> TissueMask:
    """Tissue mask of an RGB uint8 thumbnail whose pixels are `mpp` micrometres wide."""
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"thumbnail must be uint8 H x W x 3, got {rgb.dtype} {rgb.shape}")
    if mpp <= 0:
        raise ValueError(f"thumbnail pixel size must be positive, got {mpp} um")
    p = params or TissueMaskParams()
    sat = saturation(rgb)
    bright_enough = rgb.max(axis=-1) >= p.min_value * 255
    threshold = min(max(otsu_threshold(sat[bright_enough]), p.min_threshold), p.max_threshold)
    mask = (sat > threshold) & bright_enough
    mask = _morph(mask, ndimage.binary_closing, round(p.closing_um / mpp))
    mask = _morph(mask, ndimage.binary_opening, round(p.opening_um / mpp))
    min_px = math.ceil(p.min_area_um2 / (mpp * mpp))
    if min_px > 1 and mask.any():
        labels, count = ndimage.label(mask)
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        keep = sizes >= min_px
        keep[0] = False
        mask = keep[labels]
    return TissueMask(mask=np.asarray(mask, dtype=bool), threshold=threshold, mpp=mpp)
