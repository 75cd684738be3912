"""Axial volume geometry: voxel indices <-> DICOM patient coordinates (LPS, millimetres).

Slices are indexed in InstanceNumber order (index 0 is InstanceNumber 1). `head_to_foot`
says whether that order descends in z (usual for CT) or ascends (common for MR).
Orientation is always axial, ImageOrientationPatient [1,0,0,0,1,0]: columns run to the
patient's left (+x), rows run posterior (+y).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AXIAL_ORIENTATION", "VolumeGeometry"]

AXIAL_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class VolumeGeometry(BaseModel):
    """An axial stack centred on x = y = 0; `first_z_mm` is the z of slice index 0."""

    model_config = ConfigDict(frozen=True)

    rows: int = Field(ge=16, le=4096)
    columns: int = Field(ge=16, le=4096)
    slices: int = Field(ge=1, le=2000)
    pixel_spacing_mm: float = Field(gt=0)
    slice_spacing_mm: float = Field(gt=0)
    first_z_mm: float
    head_to_foot: bool = True

    @property
    def z_step_mm(self) -> float:
        """Signed z change from one InstanceNumber to the next."""
        return -self.slice_spacing_mm if self.head_to_foot else self.slice_spacing_mm

    @property
    def origin_xy_mm(self) -> tuple[float, float]:
        """(x, y) of the centre of pixel (row 0, column 0)."""
        return (
            -(self.columns - 1) / 2 * self.pixel_spacing_mm,
            -(self.rows - 1) / 2 * self.pixel_spacing_mm,
        )

    def slice_z_mm(self, index: int) -> float:
        return self.first_z_mm + index * self.z_step_mm

    def z_mm(self) -> NDArray[np.float64]:
        return self.first_z_mm + np.arange(self.slices, dtype=np.float64) * self.z_step_mm

    def x_mm(self) -> NDArray[np.float32]:
        """x of each column, shape (columns,)."""
        x0, _ = self.origin_xy_mm
        return (x0 + np.arange(self.columns) * self.pixel_spacing_mm).astype(np.float32)

    def y_mm(self) -> NDArray[np.float32]:
        """y of each row, shape (rows,)."""
        _, y0 = self.origin_xy_mm
        return (y0 + np.arange(self.rows) * self.pixel_spacing_mm).astype(np.float32)

    def image_position(self, index: int) -> tuple[float, float, float]:
        """ImagePositionPatient of slice `index`."""
        x0, y0 = self.origin_xy_mm
        return (x0, y0, self.slice_z_mm(index))

    def to_voxel(self, point_mm: tuple[float, float, float]) -> tuple[float, float, float]:
        """(slice index, row, column) of a patient-coordinate point, fractional."""
        x0, y0 = self.origin_xy_mm
        x, y, z = point_mm
        return (
            (z - self.first_z_mm) / self.z_step_mm,
            (y - y0) / self.pixel_spacing_mm,
            (x - x0) / self.pixel_spacing_mm,
        )

    def contains(self, point_mm: tuple[float, float, float], margin_mm: float = 0.0) -> bool:
        k, r, c = self.to_voxel(point_mm)
        mk = margin_mm / self.slice_spacing_mm
        mp = margin_mm / self.pixel_spacing_mm
        return (
            mk <= k <= self.slices - 1 - mk
            and mp <= r <= self.rows - 1 - mp
            and mp <= c <= self.columns - 1 - mp
        )
