"""CT preparation (Google's MedGemma 1.5 recipe), bit for bit, through a lookup table.

The notebook windows each slice as: HU = apply_rescale(pixel_array) (float64), then per window
clip -> float32 -> -= low -> /= (high - low) -> *= 255, then round half to even -> uint8. Every step
is element-wise, so the RGB value of a pixel is a function of its stored value alone (given the
slice's slope and intercept). We run those exact operations once over every possible stored value
(65,536 for 16-bit data) and gather: the output is identical to the notebook's and the per-pixel
cost is one table look-up. Data wider than 16 bits take the direct path (the same operations).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tools.imaging.prepared import IntensityWindow, PreparationMetadata, PreparedImages, Task, slice_infos
from tools.imaging.volume import (
    Rescale,
    SkippedObject,
    Slice,
    Volume,
    apply_slice_rescale,
    sample_slice_indices,
)

MAX_CT_SLICES = 85
# (low, high) HU of the red, green and blue channels, as MedGemma 1.5 was trained.
CT_WINDOWS: tuple[tuple[str, int, int], ...] = (
    ("wide", -1024, 1024),
    ("soft tissue", -135, 215),
    ("brain", 0, 80),
)
CT_MODALITIES = ("CT",)

U8 = npt.NDArray[np.uint8]


def window_hu(hu: npt.NDArray[Any]) -> U8:
    """The notebook's windowing of HU values into RGB uint8 (shape + (3,)), operation for operation."""
    channels = []
    for _, low, high in CT_WINDOWS:
        x = np.clip(hu, low, high).astype(np.float32)
        x -= low
        x /= high - low
        x *= 255.0
        channels.append(x)
    return np.round(np.stack(channels, axis=-1), 0).astype(np.uint8)


def stored_domain(dtype: np.dtype[Any]) -> npt.NDArray[Any] | None:
    """Every value of an 8- or 16-bit integer dtype, in the order of its unsigned bit pattern."""
    if dtype.kind not in "iu" or dtype.itemsize > 2:
        return None
    unsigned = np.dtype(f"u{dtype.itemsize}")
    return np.arange(2 ** (8 * dtype.itemsize), dtype=unsigned).view(dtype)


class CtWindower:
    """Windows stored slices into RGB; caches one table per (dtype, slope, intercept)."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, Rescale | None], U8] = {}

    def table(self, dtype: np.dtype[Any], sl: Slice) -> U8 | None:
        if sl.modality_lut:
            domain = stored_domain(dtype)
            return None if domain is None else window_hu(apply_slice_rescale(domain, sl))
        key = (dtype.str, sl.rescale)
        table = self._tables.get(key)
        if table is None:
            domain = stored_domain(dtype)
            if domain is None:
                return None
            table = window_hu(apply_slice_rescale(domain, sl))
            self._tables[key] = table
        return table

    def window_into(self, stored: npt.NDArray[Any], sl: Slice, out: U8) -> None:
        """Write the RGB windowing of one stored slice into `out` (H x W x 3)."""
        table = self.table(stored.dtype, sl)
        if table is None:
            out[...] = window_hu(apply_slice_rescale(stored, sl))
            return
        unsigned = stored.view(f"u{stored.dtype.itemsize}")
        # np.take is fastest with native intp indices; converting one slice at a time stays in cache.
        np.take(table, unsigned.astype(np.intp), axis=0, out=out)


def prepare_ct(
    volume: Volume,
    *,
    source: str,
    max_slices: int = MAX_CT_SLICES,
    skipped: Sequence[SkippedObject] = (),
) -> PreparedImages:
    """Sample up to `max_slices` slices uniformly, decode only those, window each into RGB uint8."""
    volume.require_modality(Task.CT.value, CT_MODALITIES)
    indices = sample_slice_indices(len(volume), max_slices)
    images = np.empty((len(indices), volume.rows, volume.columns, 3), dtype=np.uint8)
    windower = CtWindower()
    for k, i in enumerate(indices):
        windower.window_into(volume.stored(i), volume.slices[i], images[k])
    metadata = PreparationMetadata(
        task=Task.CT,
        modality=volume.modality,
        source=source,
        series_uid=volume.series_uid,
        series_description=volume.description,
        series_slices=len(volume),
        order=volume.order,
        slices=slice_infos(volume.slices, indices),
        windows=[IntensityWindow(name=n, low=lo, high=hi, unit="HU") for n, lo, hi in CT_WINDOWS],
        warnings=list(volume.warnings),
        skipped=list(skipped),
    )
    return PreparedImages(images=images, metadata=metadata)


__all__ = [
    "CT_MODALITIES",
    "CT_WINDOWS",
    "MAX_CT_SLICES",
    "CtWindower",
    "prepare_ct",
    "stored_domain",
    "window_hu",
]
