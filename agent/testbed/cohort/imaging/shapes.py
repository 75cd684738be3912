"""Painting analytic 3D shapes into a label volume, touching only each shape's bounding box.

Coordinates are patient millimetres; the geometry maps them to voxels. Painting a shape
costs its bounding box, not the whole volume, so dozens of small vessels stay cheap.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from agent.testbed.cohort.imaging.geometry import VolumeGeometry

__all__ = ["paint_capsule", "paint_ellipsoid"]

Point3 = tuple[float, float, float]
Labels = NDArray[np.uint8]


def _box(
    geometry: VolumeGeometry, lo: Point3, hi: Point3
) -> tuple[slice, slice, slice, NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]] | None:
    """Index slices and the (z, y, x) coordinate grids of the voxels inside [lo, hi]."""
    k_a, r_a, c_a = geometry.to_voxel(lo)
    k_b, r_b, c_b = geometry.to_voxel(hi)
    k0, k1 = sorted((k_a, k_b))
    ks = slice(max(int(np.floor(k0)), 0), min(int(np.ceil(k1)) + 1, geometry.slices))
    rs = slice(max(int(np.floor(r_a)), 0), min(int(np.ceil(r_b)) + 1, geometry.rows))
    cs = slice(max(int(np.floor(c_a)), 0), min(int(np.ceil(c_b)) + 1, geometry.columns))
    if ks.start >= ks.stop or rs.start >= rs.stop or cs.start >= cs.stop:
        return None
    z = geometry.z_mm()[ks].astype(np.float32)[:, None, None]
    y = geometry.y_mm()[rs][None, :, None]
    x = geometry.x_mm()[cs][None, None, :]
    return ks, rs, cs, z, y, x


def _apply(
    labels: Labels,
    region: tuple[slice, slice, slice],
    inside: NDArray[np.bool_],
    label: int,
    only: tuple[int, ...],
) -> None:
    view = labels[region]
    if only:
        inside = inside & np.isin(view, only)
    view[inside] = label


def paint_ellipsoid(
    labels: Labels,
    geometry: VolumeGeometry,
    centre: Point3,
    semi_axes: Point3,
    label: int,
    *,
    only: tuple[int, ...] = (),
) -> None:
    """Set `label` inside an axis-aligned ellipsoid; `only` restricts which labels it may replace."""
    lo = (centre[0] - semi_axes[0], centre[1] - semi_axes[1], centre[2] - semi_axes[2])
    hi = (centre[0] + semi_axes[0], centre[1] + semi_axes[1], centre[2] + semi_axes[2])
    box = _box(geometry, lo, hi)
    if box is None:
        return
    ks, rs, cs, z, y, x = box
    r2 = (
        ((x - centre[0]) / semi_axes[0]) ** 2
        + ((y - centre[1]) / semi_axes[1]) ** 2
        + ((z - centre[2]) / semi_axes[2]) ** 2
    )
    _apply(labels, (ks, rs, cs), r2 <= 1.0, label, only)


def paint_capsule(
    labels: Labels,
    geometry: VolumeGeometry,
    start: Point3,
    end: Point3,
    radius: float,
    label: int,
    *,
    only: tuple[int, ...] = (),
) -> None:
    """Set `label` within `radius` of the segment start-end (a tube with round ends)."""
    p0 = np.asarray(start, dtype=np.float32)
    d = np.asarray(end, dtype=np.float32) - p0
    lo = tuple(float(v) for v in np.minimum(start, end) - radius)
    hi = tuple(float(v) for v in np.maximum(start, end) + radius)
    box = _box(geometry, (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2]))
    if box is None:
        return
    ks, rs, cs, z, y, x = box
    px, py, pz = x - p0[0], y - p0[1], z - p0[2]
    length2 = float(d @ d) or 1.0
    t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / length2, 0.0, 1.0)
    dist2 = (px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2
    _apply(labels, (ks, rs, cs), dist2 <= radius * radius, label, only)
