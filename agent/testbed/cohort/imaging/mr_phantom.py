"""An axial brain MR phantom (T1 or T2 weighted) from nested ellipsoids, in MR signal units.

Layers, outermost first: scalp fat, skull (signal void), CSF, grey matter, white matter
with a folded boundary (gyri), lateral ventricles, eyes, and an optional lesion. Values are
uint16 without rescale. Pure and deterministic for a noise seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from agent.testbed.cohort.imaging.geometry import VolumeGeometry
from agent.testbed.cohort.imaging.shapes import paint_ellipsoid
from agent.testbed.cohort.imaging.truth import SphereLesion

__all__ = [
    "MR_LESION_SITES",
    "HeadAnatomy",
    "MrPhantom",
    "MrTissue",
    "MrWeighting",
    "mr_brain_geometry",
    "mr_brain_phantom",
    "mr_lesion_site_centre",
    "mr_signal",
]


class MrWeighting(StrEnum):
    T1 = "T1"
    T2 = "T2"


class MrTissue(IntEnum):
    AIR = 0
    FAT = 1
    BONE = 2
    CSF = 3
    GREY_MATTER = 4
    WHITE_MATTER = 5
    VITREOUS = 6
    LESION = 7


# Typical relative signal at 1.5 T (spin echo T1, fast spin echo T2); lesion: T1 dark, T2 bright.
_SIGNAL: dict[MrWeighting, dict[MrTissue, float]] = {
    MrWeighting.T1: {
        MrTissue.AIR: 0.0, MrTissue.FAT: 950.0, MrTissue.BONE: 40.0, MrTissue.CSF: 220.0,
        MrTissue.GREY_MATTER: 560.0, MrTissue.WHITE_MATTER: 780.0, MrTissue.VITREOUS: 200.0,
        MrTissue.LESION: 380.0,
    },
    MrWeighting.T2: {
        MrTissue.AIR: 0.0, MrTissue.FAT: 650.0, MrTissue.BONE: 40.0, MrTissue.CSF: 1500.0,
        MrTissue.GREY_MATTER: 900.0, MrTissue.WHITE_MATTER: 620.0, MrTissue.VITREOUS: 1450.0,
        MrTissue.LESION: 1250.0,
    },
}  # fmt: skip
_NOISE_SD = 15.0

_SITES: dict[str, tuple[float, float, float]] = {
    "right frontal white matter": (-25.0, -40.0, 25.0),
    "left frontal white matter": (25.0, -40.0, 25.0),
    "right parietal white matter": (-30.0, 25.0, 35.0),
    "left parietal white matter": (30.0, 25.0, 35.0),
}
MR_LESION_SITES: tuple[str, ...] = tuple(_SITES)


class HeadAnatomy(BaseModel):
    model_config = ConfigDict(frozen=True)

    scale: float = Field(default=1.0, ge=0.9, le=1.1)


@dataclass(frozen=True)
class MrPhantom:
    geometry: VolumeGeometry
    values: NDArray[np.uint16]
    labels: NDArray[np.uint8]


def mr_signal(weighting: MrWeighting, tissue: MrTissue) -> float:
    return _SIGNAL[weighting][tissue]


def mr_lesion_site_centre(anatomy: HeadAnatomy, site: str) -> tuple[float, float, float]:
    try:
        x, y, z = _SITES[site]
    except KeyError:
        raise ValueError(f"unknown MR lesion site {site!r}; known: {', '.join(_SITES)}") from None
    s = anatomy.scale
    return (x * s, y * s, z * s)


def mr_brain_geometry(*, slices: int = 60, size: int = 256) -> VolumeGeometry:
    """Axial 2.5 mm slices acquired foot to head (as MR often is), 240 mm field of view."""
    return VolumeGeometry(
        rows=size,
        columns=size,
        slices=slices,
        pixel_spacing_mm=240.0 / size,
        slice_spacing_mm=2.5,
        first_z_mm=-(slices - 1) * 2.5 / 2,
        head_to_foot=False,
    )


def _nested(labels: NDArray[np.uint8], geometry: VolumeGeometry, s: float) -> None:
    g = geometry
    brain = (68.0 * s, 85.0 * s, 60.0 * s)
    for grow, tissue in (
        (15.0, MrTissue.FAT),
        (10.0, MrTissue.BONE),
        (3.0, MrTissue.CSF),
        (0.0, MrTissue.GREY_MATTER),
    ):
        axes = (brain[0] + grow, brain[1] + grow, brain[2] + grow)
        paint_ellipsoid(labels, g, (0.0, 0.0, 0.0), axes, tissue)
    # White matter: the brain shrunk by the cortex thickness, its surface folded into gyri.
    z = g.z_mm().astype(np.float32)[:, None, None]
    y = g.y_mm()[None, :, None]
    x = g.x_mm()[None, None, :]
    r = np.sqrt((x / (brain[0] - 5)) ** 2 + (y / (brain[1] - 5)) ** 2 + (z / (brain[2] - 5)) ** 2)
    folds = 0.06 * np.sin(x * 0.35) * np.sin(y * 0.3) * np.cos(z * 0.4)
    white = (r < 0.93 + folds) & (labels == MrTissue.GREY_MATTER)
    labels[white] = MrTissue.WHITE_MATTER
    for side in (-1.0, 1.0):
        paint_ellipsoid(
            labels, g, (side * 10.0 * s, -5.0 * s, 12.0 * s), (6.0 * s, 28.0 * s, 12.0 * s), MrTissue.CSF
        )
        # Eyes sit in orbital fat in front of the brain, never inside it.
        eye = (side * 32.0 * s, -78.0 * s, -30.0 * s)
        outside = (MrTissue.AIR, MrTissue.FAT, MrTissue.BONE, MrTissue.CSF)
        paint_ellipsoid(labels, g, eye, (18.0, 18.0, 16.0), MrTissue.FAT, only=outside)
        paint_ellipsoid(labels, g, eye, (12.0, 12.0, 12.0), MrTissue.VITREOUS, only=(MrTissue.FAT,))


def mr_brain_phantom(
    geometry: VolumeGeometry,
    weighting: MrWeighting,
    anatomy: HeadAnatomy,
    lesion: SphereLesion | None,
    noise_seed: int,
) -> MrPhantom:
    labels = np.zeros((geometry.slices, geometry.rows, geometry.columns), dtype=np.uint8)
    _nested(labels, geometry, anatomy.scale)
    if lesion is not None:
        r = lesion.diameter_mm / 2
        paint_ellipsoid(labels, geometry, lesion.centre_mm, (r, r, r), MrTissue.LESION)
    lut = np.array([_SIGNAL[weighting][MrTissue(i)] for i in range(len(MrTissue))], dtype=np.float32)
    signal = np.take(lut, labels)
    # A smooth receive-coil bias (brighter posteriorly) and Rician-like magnitude noise.
    y = geometry.y_mm()[None, :, None]
    signal *= 1.0 + 0.0015 * y
    rng = np.random.default_rng(noise_seed)
    re = signal + rng.standard_normal(signal.shape, dtype=np.float32) * _NOISE_SD
    im = rng.standard_normal(signal.shape, dtype=np.float32) * _NOISE_SD
    magnitude = np.sqrt(re * re + im * im)
    values = np.clip(np.rint(magnitude), 0, 4095).astype(np.uint16)
    return MrPhantom(geometry=geometry, values=values, labels=labels)
