"""Ground truth of the synthetic studies: what was drawn, where, and how it changed."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.testbed.cohort.imaging.geometry import VolumeGeometry

__all__ = [
    "BoxTruth",
    "Change",
    "CxrFinding",
    "CxrTruth",
    "LesionTruth",
    "SphereLesion",
    "VolumeTruth",
]

Point3 = tuple[float, float, float]


class Change(StrEnum):
    """Change of a finding from the prior study (MS-CXR-T vocabulary)."""

    IMPROVED = "improved"
    STABLE = "stable"
    WORSENED = "worsened"


class SphereLesion(BaseModel):
    """A spherical lesion to draw, in patient coordinates (LPS, mm)."""

    model_config = ConfigDict(frozen=True)

    site: str = Field(description="Anatomical site, e.g. 'right upper lobe'")
    centre_mm: Point3
    diameter_mm: float = Field(gt=0, le=80)


class LesionTruth(BaseModel):
    """Where a drawn lesion lies in one series: patient coordinates and voxel indices.

    `centre_voxel` is (slice index, row, column), nearest voxel; slice index i is
    InstanceNumber i + 1.
    """

    model_config = ConfigDict(frozen=True)

    site: str
    diameter_mm: float
    centre_mm: Point3
    centre_voxel: tuple[int, int, int]
    instance_number: int

    @classmethod
    def from_lesion(cls, lesion: SphereLesion, geometry: VolumeGeometry) -> LesionTruth:
        k, r, c = geometry.to_voxel(lesion.centre_mm)
        if not geometry.contains(lesion.centre_mm, margin_mm=lesion.diameter_mm / 2):
            raise ValueError(
                f"lesion at {lesion.centre_mm} mm (diameter {lesion.diameter_mm} mm) "
                "does not fit inside the volume"
            )
        voxel = (round(k), round(r), round(c))
        return cls(
            site=lesion.site,
            diameter_mm=lesion.diameter_mm,
            centre_mm=lesion.centre_mm,
            centre_voxel=voxel,
            instance_number=voxel[0] + 1,
        )


class VolumeTruth(BaseModel):
    """Truth of a CT or MR series; `lesion` is None when none was drawn."""

    model_config = ConfigDict(frozen=True)

    lesion: LesionTruth | None = None


class BoxTruth(BaseModel):
    """A box in original pixel coordinates, [y0, x0, y1, x1], end-exclusive."""

    model_config = ConfigDict(frozen=True)

    y0: int = Field(ge=0)
    x0: int = Field(ge=0)
    y1: int
    x1: int

    @model_validator(mode="after")
    def _ordered(self) -> BoxTruth:
        if self.y1 <= self.y0 or self.x1 <= self.x0:
            raise ValueError(f"empty box {self.as_list()}")
        return self

    def as_list(self) -> list[int]:
        return [self.y0, self.x0, self.y1, self.x1]


class CxrFinding(BaseModel):
    """An opacity drawn on a radiograph, with a Chest ImaGenome-style anatomy label."""

    model_config = ConfigDict(frozen=True)

    label: str = Field(description="Finding, e.g. 'nodule' or 'opacity'")
    anatomy: str = Field(description="e.g. 'right upper lung zone' (patient's right = image left)")
    box: BoxTruth
    diameter_mm: float


class CxrTruth(BaseModel):
    model_config = ConfigDict(frozen=True)

    findings: tuple[CxrFinding, ...] = ()
