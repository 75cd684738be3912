"""A PA chest radiograph phantom: analytic attenuation, mapped to a 12-bit image (air dark).

Coordinates are millimetres on the detector from the image centre: u to the image right
(the patient's left on a PA view), v downwards. Each structure adds (or, for the lungs'
air, removes) a water-equivalent path length; the image is a smooth, saturating function
of the total, as a processed radiograph is. Opacities are spheres of soft tissue in a named
Chest ImaGenome lung zone, so their box and label are known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from agent.testbed.cohort.imaging.truth import BoxTruth, CxrFinding

__all__ = [
    "CXR_MAX_VALUE",
    "CXR_ZONES",
    "CxrAnatomy",
    "CxrImage",
    "CxrOpacity",
    "cxr_phantom",
    "opacity_finding",
]

CXR_BITS = 12
CXR_MAX_VALUE = (1 << CXR_BITS) - 1

# Zone centres (u, v) in mm at anatomy scale 1: thirds of each lung field, the left lower
# zone shifted laterally off the heart shadow.
_ZONES: dict[str, tuple[float, float]] = {
    "right upper lung zone": (-85.0, -110.0),
    "right mid lung zone": (-90.0, -35.0),
    "right lower lung zone": (-95.0, 35.0),
    "left upper lung zone": (85.0, -110.0),
    "left mid lung zone": (95.0, -35.0),
    "left lower lung zone": (110.0, 40.0),
}
CXR_ZONES: tuple[str, ...] = tuple(_ZONES)


class CxrAnatomy(BaseModel):
    model_config = ConfigDict(frozen=True)

    scale: float = Field(default=1.0, ge=0.85, le=1.1)


class CxrOpacity(BaseModel):
    """A round opacity centred in `zone`; diameters of 30 mm or more are labelled 'lung opacity'."""

    model_config = ConfigDict(frozen=True)

    zone: str
    diameter_mm: float = Field(ge=5, le=80)

    @property
    def label(self) -> str:
        return "nodule" if self.diameter_mm < 30 else "lung opacity"


@dataclass(frozen=True)
class CxrImage:
    """`values` is MONOCHROME2 (high = dense), 0..CXR_MAX_VALUE, shape (rows, columns)."""

    values: NDArray[np.uint16]
    findings: tuple[CxrFinding, ...]


def _zone_centre_mm(anatomy: CxrAnatomy, zone: str) -> tuple[float, float]:
    try:
        u, v = _ZONES[zone]
    except KeyError:
        raise ValueError(f"unknown chest X-ray zone {zone!r}; known: {', '.join(_ZONES)}") from None
    return (u * anatomy.scale, v)


def opacity_finding(
    opacity: CxrOpacity, anatomy: CxrAnatomy, rows: int, columns: int, pixel_spacing_mm: float
) -> CxrFinding:
    """The truth box of an opacity, [y0, x0, y1, x1] in pixels, end-exclusive, inside the image."""
    u, v = _zone_centre_mm(anatomy, opacity.zone)
    cx = u / pixel_spacing_mm + (columns - 1) / 2
    cy = v / pixel_spacing_mm + (rows - 1) / 2
    r = opacity.diameter_mm / 2 / pixel_spacing_mm
    y0, x0 = int(np.floor(cy - r)), int(np.floor(cx - r))
    y1, x1 = int(np.ceil(cy + r)) + 1, int(np.ceil(cx + r)) + 1
    if y0 < 0 or x0 < 0 or y1 > rows or x1 > columns:
        raise ValueError(
            f"opacity in {opacity.zone} ({opacity.diameter_mm} mm) does not fit a "
            f"{rows}x{columns} image at {pixel_spacing_mm} mm"
        )
    return CxrFinding(
        label=opacity.label,
        anatomy=opacity.zone,
        box=BoxTruth(y0=y0, x0=x0, y1=y1, x1=x1),
        diameter_mm=opacity.diameter_mm,
    )


def _ellipse_depth(
    u: NDArray[np.float32], v: NDArray[np.float32], cu: float, cv: float, au: float, av: float
) -> NDArray[np.float32]:
    """Relative path length through an ellipsoid seen end-on: sqrt(1 - r^2), 0 outside."""
    r2 = ((u - cu) / au) ** 2 + ((v - cv) / av) ** 2
    return np.sqrt(np.clip(1.0 - r2, 0.0, None))


def _band(distance: NDArray[np.float32], half_width: float) -> NDArray[np.float32]:
    """A bone-like cross-section profile across a band: 1 at its centre line, 0 beyond half_width."""
    profile: NDArray[np.float32] = np.sqrt(np.clip(1.0 - (distance / half_width) ** 2, 0.0, None))
    return profile


def _blur(image: NDArray[np.float32]) -> NDArray[np.float32]:
    """Separable binomial [1 4 6 4 1]/16 blur (sigma 1 pixel): softens the analytic edges."""
    p = np.pad(image, 2, mode="edge")
    down = (p[:-4] + 4 * p[1:-3] + 6 * p[2:-2] + 4 * p[3:-1] + p[4:]) / np.float32(16)
    across: NDArray[np.float32] = (
        down[:, :-4] + 4 * down[:, 1:-3] + 6 * down[:, 2:-2] + 4 * down[:, 3:-1] + down[:, 4:]
    ) / np.float32(16)
    return across


def cxr_phantom(
    rows: int,
    columns: int,
    pixel_spacing_mm: float,
    anatomy: CxrAnatomy,
    opacities: tuple[CxrOpacity, ...],
    noise_seed: int,
) -> CxrImage:
    s = anatomy.scale
    u = ((np.arange(columns, dtype=np.float32) - (columns - 1) / 2) * pixel_spacing_mm)[None, :]
    v = ((np.arange(rows, dtype=np.float32) - (rows - 1) / 2) * pixel_spacing_mm)[:, None]
    au = np.abs(u)

    # Soft tissue: a thorax of 330 mm width (260 mm deep) below the neck and shoulders.
    shoulders = 1.0 / (1.0 + np.exp(-(v + 175.0) / 8.0))
    half_width = (70.0 + 95.0 * shoulders) * s + 0 * u
    torso = np.sqrt(np.clip(1.0 - (u / half_width) ** 2, 0.0, None)) * (v > -240)
    path = 260.0 * torso

    # Lungs remove air-filled path; below the domes they end (right dome higher).
    dome = np.where(u < 0, 70.0 + 0.004 * (u + 75 * s) ** 2, 85.0 + 0.004 * (u - 78 * s) ** 2)
    lungs = (
        _ellipse_depth(u, v, -78 * s, -30.0, 62 * s, 150.0)
        + _ellipse_depth(u, v, 80 * s, -25.0, 60 * s, 150.0)
    ) * (v < dome)
    path -= 170.0 * lungs

    # Mediastinum, aortic knob and heart shadow (over the lower medial lungs).
    path += 60.0 * _ellipse_depth(u, v, 15 * s, 60.0, 80 * s, 70.0)
    path += 40.0 * _ellipse_depth(u, v, 30 * s, -95.0, 22 * s, 18.0)
    path += 30.0 * _ellipse_depth(u, v, 0.0, -60.0, 32 * s, 150.0)

    # Bone: spine (vertebral bodies with discs), clavicles, posterior ribs.
    vertebrae = 0.75 + 0.25 * np.cos(2 * np.pi * v / 28.0)
    bone = 35.0 * _band(u, 20.0) * vertebrae
    for side in (-1.0, 1.0):
        # Clavicle: a straight band from the sternal notch out to the shoulder.
        a, b = np.array([side * 20 * s, -150.0]), np.array([side * 150 * s, -175.0])
        d = b - a
        t = np.clip(((u - a[0]) * d[0] + (v - a[1]) * d[1]) / float(d @ d), 0.0, 1.0)
        dist = np.hypot(u - a[0] - t * d[0], v - a[1] - t * d[1])
        bone += 20.0 * _band(dist, 7.0)
    lateral = np.clip(au - 20.0, 0.0, None)
    rib_zone = (au > 20) & (au < 160 * s)
    for i in range(10):
        # Posterior rib: rises from the spine then curves down laterally.
        centre = -165.0 + 26.0 * i - 0.25 * lateral + 0.004 * lateral**2
        bone += 12.0 * _band(v - centre, 5.0) * rib_zone
    path += bone * (torso > 0)

    for opacity in opacities:
        cu, cv = _zone_centre_mm(anatomy, opacity.zone)
        r = opacity.diameter_mm / 2
        path += 1.6 * np.sqrt(np.clip(r * r - (u - cu) ** 2 - (v - cv) ** 2, 0.0, None))

    path = _blur(np.clip(path, 0.0, None).astype(np.float32))
    rng = np.random.default_rng(noise_seed)
    signal = 180.0 + 3500.0 * (1.0 - np.exp(-path / 150.0))
    signal += rng.standard_normal(signal.shape, dtype=np.float32) * 12.0
    values = np.clip(np.rint(signal), 0, CXR_MAX_VALUE).astype(np.uint16)
    findings = tuple(opacity_finding(o, anatomy, rows, columns, pixel_spacing_mm) for o in opacities)
    return CxrImage(values=values, findings=findings)
