"""MRI preparation: the CT slice handling, then one min-max over the volume to uint8 grey in 3 channels.

The min and max are taken over the slices that are prepared (all of them up to 85, else the 85
sampled), jointly rather than per slice, so relative intensities between slices survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tools.imaging.prepared import IntensityWindow, PreparationMetadata, PreparedImages, Task, slice_infos
from tools.imaging.volume import SkippedObject, Volume, sample_slice_indices

MAX_MRI_SLICES = 85
MRI_MODALITIES = ("MR",)


def min_max_uint8(values: Sequence[npt.NDArray[Any]], low: float, high: float) -> npt.NDArray[np.uint8]:
    """Map [low, high] linearly onto 0..255 (round half to even); a constant volume maps to 0."""
    out = np.empty((len(values), *values[0].shape), dtype=np.uint8) if values else np.empty((0,), np.uint8)
    span = high - low
    for k, v in enumerate(values):
        if span <= 0:
            out[k] = 0
            continue
        scaled = (np.asarray(v, dtype=np.float64) - low) / span * 255.0
        out[k] = np.round(scaled)
    return out


def prepare_mri(
    volume: Volume,
    *,
    source: str,
    max_slices: int = MAX_MRI_SLICES,
    skipped: Sequence[SkippedObject] = (),
) -> PreparedImages:
    volume.require_modality(Task.MRI.value, MRI_MODALITIES)
    indices = sample_slice_indices(len(volume), max_slices)
    values = [volume.modality_values(i) for i in indices]
    low = float(min(np.min(v) for v in values))
    high = float(max(np.max(v) for v in values))
    grey = min_max_uint8(values, low, high)
    warnings = list(volume.warnings)
    if high <= low:
        warnings.append(f"constant volume (all {low:g}); images are black")
    metadata = PreparationMetadata(
        task=Task.MRI,
        modality=volume.modality,
        source=source,
        series_uid=volume.series_uid,
        series_description=volume.description,
        series_slices=len(volume),
        order=volume.order,
        slices=slice_infos(volume.slices, indices),
        windows=[IntensityWindow(name="min-max", low=low, high=high, unit="stored value after rescale")],
        warnings=warnings,
        skipped=list(skipped),
    )
    return PreparedImages(images=np.repeat(grey[..., None], 3, axis=-1), metadata=metadata)


__all__ = ["MAX_MRI_SLICES", "MRI_MODALITIES", "min_max_uint8", "prepare_mri"]
