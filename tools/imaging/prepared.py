"""Prepared images: exactly what goes to the MedGemma processor, with how they were made.

`images` is uint8 N x H x W x 3 at source resolution (the processor resizes to 896); a chest X-ray is
already padded to its square. The metadata say which slices, windows and padding were used, so a box
or a finding can be traced back to the series, the slice and the pixel.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, ValidationError

from tools.imaging.errors import ImagingError
from tools.imaging.geometry import Padding
from tools.imaging.volume import SkippedObject, Slice

# What numpy and zipfile raise on a file that is not a readable .npz.
_NPZ_ERRORS = (OSError, ValueError, zipfile.BadZipFile, EOFError)
METADATA_KEY = "metadata"
IMAGES_KEY = "images"


class Task(StrEnum):
    CT = "ct"
    MRI = "mri"
    CXR = "cxr"


class IntensityWindow(BaseModel):
    """A linear map of [low, high] (in the values named by `unit`) onto 0..255."""

    model_config = ConfigDict(frozen=True)

    name: str
    low: float
    high: float
    unit: str


class SliceInfo(BaseModel):
    """One prepared image: where it sits in the ordered series and where it came from."""

    model_config = ConfigDict(frozen=True)

    index: int  # 0-based, in the ordered series
    origin: str
    frame: int | None  # 0-based frame of a multi-frame object
    instance_number: int | None
    position_mm: float | None  # along the slice normal


class PreparationMetadata(BaseModel):
    model_config = ConfigDict(frozen=True)

    task: Task
    modality: str
    source: str
    series_uid: str
    series_description: str
    series_slices: int
    order: str
    slices: list[SliceInfo]
    windows: list[IntensityWindow]
    inverted: bool = False  # MONOCHROME1 shown as MONOCHROME2
    padding: Padding | None = None
    warnings: list[str] = []
    skipped: list[SkippedObject] = []


@dataclass(frozen=True, eq=False)
class PreparedImages:
    images: npt.NDArray[np.uint8]
    metadata: PreparationMetadata

    def __post_init__(self) -> None:
        shape = self.images.shape
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or shape[-1] != 3:
            raise ImagingError(f"images must be uint8 N x H x W x 3, got {self.images.dtype} {shape}")
        if shape[0] != len(self.metadata.slices):
            raise ImagingError(f"{shape[0]} images but {len(self.metadata.slices)} slice records")
        if self.metadata.padding is not None and shape[1:3] != (self.metadata.padding.size,) * 2:
            raise ImagingError(f"padded images must be square of {self.metadata.padding.size}, got {shape}")

    def save_npz(self, path: Path) -> None:
        """`images` (uint8 N x H x W x 3) and `metadata` (a JSON string) in one uncompressed .npz."""
        payload: dict[str, Any] = {
            IMAGES_KEY: self.images,
            METADATA_KEY: np.array(self.metadata.model_dump_json()),
        }
        with path.open("wb") as fh:
            np.savez(fh, **payload)


def load_npz(path: Path) -> PreparedImages:
    """Read what `save_npz` wrote; anything else is an ImagingError naming the file."""
    try:
        data = np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as exc:
        raise ImagingError(f"{path}: cannot read as .npz: {exc}") from exc
    with data:
        if IMAGES_KEY not in data or METADATA_KEY not in data:
            raise ImagingError(
                f"{path}: not a prepared-images file (needs '{IMAGES_KEY}' and '{METADATA_KEY}')"
            )
        try:  # members are read (and inflated) here
            images, meta_text = np.asarray(data[IMAGES_KEY]), str(data[METADATA_KEY][()])
        except _NPZ_ERRORS as exc:
            raise ImagingError(f"{path}: cannot read as .npz: {exc}") from exc
    try:
        metadata = PreparationMetadata.model_validate_json(meta_text)
    except ValidationError as exc:
        raise ImagingError(f"{path}: bad prepared-images content: {exc}") from exc
    try:
        return PreparedImages(images=images, metadata=metadata)
    except ImagingError as exc:
        raise ImagingError(f"{path}: bad prepared-images content: {exc}") from exc


def slice_infos(volume_slices: Sequence[Slice], indices: Sequence[int]) -> list[SliceInfo]:
    """SliceInfo records for the chosen indices of a volume's ordered slices."""
    return [
        SliceInfo(
            index=i,
            origin=volume_slices[i].origin,
            frame=volume_slices[i].frame,
            instance_number=volume_slices[i].instance_number,
            position_mm=volume_slices[i].position,
        )
        for i in indices
    ]


__all__ = [
    "IntensityWindow",
    "PreparationMetadata",
    "PreparedImages",
    "SliceInfo",
    "Task",
    "load_npz",
    "slice_infos",
]
