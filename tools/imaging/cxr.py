"""Chest X-ray preparation: one image to uint8 as a reader would see it, padded to a centred square, RGB.

Grey levels: the rescale (modality LUT), then the object's VOI LUT or its first window
(pydicom `apply_voi_lut`), mapped from that transform's output range onto 0..255; without either,
min-max over the image. MONOCHROME1 (higher values darker) is inverted so that air is black as in
MONOCHROME2. The square is padded with black; the padding is recorded so that model boxes can be
mapped back to original pixels (`tools.imaging.geometry`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_voi_lut

from tools.imaging.errors import DicomFileError, SeriesError
from tools.imaging.geometry import Padding
from tools.imaging.prepared import IntensityWindow, PreparationMetadata, PreparedImages, Task, slice_infos
from tools.imaging.volume import SkippedObject, Slice, Volume, apply_slice_rescale

CXR_MODALITIES = ("CR", "DX")
# Inputs far outside any window: the VOI transform maps them to the ends of its output range.
_EXTREMES = np.array([-1e30, 1e30])
# What pydicom raises on a VOI LUT or window it cannot apply (malformed or missing elements).
_VOI_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError)


def scale_to_uint8(values: npt.NDArray[Any], low: float, high: float) -> npt.NDArray[np.uint8]:
    """[low, high] -> 0..255, clipped, rounded half to even; an empty range gives black."""
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.asarray(values, dtype=np.float64) - low) / (high - low) * 255.0
    return np.round(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def has_voi(ds: Dataset) -> bool:
    return bool(ds.get("VOILUTSequence")) or ("WindowCenter" in ds and "WindowWidth" in ds)


def grey_levels(stored: npt.NDArray[Any], sl: Slice) -> tuple[npt.NDArray[np.uint8], IntensityWindow, bool]:
    """One greyscale frame -> uint8 for display; returns the image, the window used, and whether inverted."""
    ds = sl.dataset
    values = apply_slice_rescale(stored, sl)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomFileError(sl.label, f"photometric interpretation {photometric} is not greyscale")
    if has_voi(ds):
        # apply_voi_lut casts and rewrites a few elements of the dataset it is given: use a shallow copy.
        work = copy.copy(ds)
        try:
            shown = apply_voi_lut(values, work, index=0)
        except _VOI_ERRORS as exc:
            raise _voi_unusable(sl.label, exc) from exc
        low, high = voi_output_range(ds, sl.label)
        name = "VOI LUT" if ds.get("VOILUTSequence") else "window"
    else:
        shown = values
        low, high = float(np.min(values)), float(np.max(values))
        name = "min-max"
    grey = scale_to_uint8(np.asarray(shown), low, high)
    inverted = photometric == "MONOCHROME1"
    if inverted:
        grey = 255 - grey
    return grey, IntensityWindow(name=name, low=low, high=high, unit="after rescale"), inverted


def voi_output_range(ds: Dataset, origin: str) -> tuple[float, float]:
    """The range the VOI transform maps onto: the LUT's entries, or the window's saturation values.

    DicomFileError naming `origin` when the VOI LUT or window cannot be applied.
    """
    lut_items = ds.get("VOILUTSequence")
    inputs = _EXTREMES
    if lut_items:
        descriptor: Any = lut_items[0].get("LUTDescriptor") or ()
        try:
            entries, first_map = int(descriptor[0]) or 2**16, int(descriptor[1])
        except _VOI_ERRORS as exc:
            raise _voi_unusable(origin, exc) from exc
        inputs = np.arange(first_map, first_map + entries, dtype=np.int64)
    try:
        ends = apply_voi_lut(inputs, copy.copy(ds), index=0)
    except _VOI_ERRORS as exc:
        raise _voi_unusable(origin, exc) from exc
    return float(np.min(ends)), float(np.max(ends))


def _voi_unusable(origin: str, exc: Exception) -> DicomFileError:
    return DicomFileError(origin, f"VOI LUT or window cannot be applied: {exc}")


def pad_square(grey: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], Padding]:
    """Centre an H x W image in a black S x S square, S = max(H, W)."""
    height, width = grey.shape
    padding = Padding.centred(height, width)
    square = np.zeros((padding.size, padding.size), dtype=np.uint8)
    square[padding.top : padding.top + height, padding.left : padding.left + width] = grey
    return square, padding


def pick_image(volume: Volume) -> tuple[int, list[str]]:
    """The one image of a CXR series: a single object (its first frame if multi-frame)."""
    origins = {s.origin for s in volume.slices}
    if len(origins) > 1:
        raise SeriesError(
            volume.series_uid,
            f"{len(origins)} images in the series; a chest X-ray preparation takes one (pass that file)",
        )
    index = min(range(len(volume)), key=lambda i: volume.slices[i].frame or 0)
    notes = [f"multi-frame object: used frame 1 of {len(volume)}"] if len(volume) > 1 else []
    return index, notes


def prepare_cxr(volume: Volume, *, source: str, skipped: Sequence[SkippedObject] = ()) -> PreparedImages:
    volume.require_modality(Task.CXR.value, CXR_MODALITIES)
    index, notes = pick_image(volume)
    grey, window, inverted = grey_levels(volume.stored(index), volume.slices[index])
    square, padding = pad_square(grey)
    metadata = PreparationMetadata(
        task=Task.CXR,
        modality=volume.modality,
        source=source,
        series_uid=volume.series_uid,
        series_description=volume.description,
        series_slices=len(volume),
        order=volume.order,
        slices=slice_infos(volume.slices, [index]),
        windows=[window],
        inverted=inverted,
        padding=padding,
        warnings=[*volume.warnings, *notes],
        skipped=list(skipped),
    )
    rgb = np.repeat(square[None, :, :, None], 3, axis=-1)
    return PreparedImages(images=rgb, metadata=metadata)


__all__ = [
    "CXR_MODALITIES",
    "grey_levels",
    "has_voi",
    "pad_square",
    "pick_image",
    "prepare_cxr",
    "scale_to_uint8",
    "voi_output_range",
]
