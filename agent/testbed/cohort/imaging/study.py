"""What one synthetic study is: identifiers, dates, series, the pixel recipe and its truth.

A `StudyPlan` holds everything needed to render the study's DICOM files (given the
patient's identity) and to describe it in FHIR, so the seeding step and the evaluation of
the agent read the same object.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.testbed.cohort.imaging.ct_phantom import ChestAnatomy
from agent.testbed.cohort.imaging.cxr_phantom import CxrAnatomy, CxrOpacity
from agent.testbed.cohort.imaging.geometry import VolumeGeometry
from agent.testbed.cohort.imaging.mr_phantom import HeadAnatomy, MrWeighting
from agent.testbed.cohort.imaging.truth import Change, CxrTruth, SphereLesion, VolumeTruth
from agent.testbed.cohort.imaging.uids import derive_uid

__all__ = [
    "CtChestSpec",
    "CxrSpec",
    "ImageSpec",
    "Modality",
    "MrBrainSpec",
    "Photometric",
    "SeriesPlan",
    "SopClass",
    "StudyPlan",
    "Timepoint",
    "TransferSyntax",
    "VoiKind",
]


class Modality(StrEnum):
    """DICOM modality codes (also the DCM code system's codes)."""

    CT = "CT"
    MR = "MR"
    CR = "CR"
    DX = "DX"


class SopClass(StrEnum):
    CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
    MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
    CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
    DX_IMAGE_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


class TransferSyntax(StrEnum):
    EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
    RLE_LOSSLESS = "1.2.840.10008.1.2.5"
    JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"


class Timepoint(StrEnum):
    PRIOR = "prior"
    CURRENT = "current"


class Photometric(StrEnum):
    MONOCHROME1 = "MONOCHROME1"  # minimum value is white: air is stored bright
    MONOCHROME2 = "MONOCHROME2"


class VoiKind(StrEnum):
    WINDOW = "window"  # WindowCenter / WindowWidth
    LUT = "lut"  # VOI LUT Sequence


class CtChestSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["ct-chest"] = "ct-chest"
    geometry: VolumeGeometry
    anatomy: ChestAnatomy
    lesion: SphereLesion | None
    noise_seed: int


class MrBrainSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["mr-brain"] = "mr-brain"
    geometry: VolumeGeometry
    # One series per weighting, in series order; all share the geometry.
    weightings: tuple[MrWeighting, ...] = Field(min_length=1)
    anatomy: HeadAnatomy
    lesion: SphereLesion | None
    noise_seed: int


class CxrSpec(BaseModel):
    """A PA chest radiograph; rows x columns is deliberately not square."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["cxr"] = "cxr"
    rows: int = Field(ge=64, le=4096)
    columns: int = Field(ge=64, le=4096)
    pixel_spacing_mm: float = Field(gt=0)
    photometric: Photometric
    voi: VoiKind
    anatomy: CxrAnatomy
    opacities: tuple[CxrOpacity, ...]
    noise_seed: int


ImageSpec = Annotated[CtChestSpec | MrBrainSpec | CxrSpec, Field(discriminator="kind")]


class SeriesPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    uid: str
    number: int = Field(ge=1)
    modality: Modality
    description: str
    body_part: str = Field(description="BodyPartExamined, e.g. CHEST or HEAD")
    sop_class: SopClass
    instance_count: int = Field(ge=1)
    transfer_syntax: TransferSyntax
    frame_of_reference_uid: str | None = None

    def instance_uid(self, instance_number: int) -> str:
        """SOPInstanceUID of instance `instance_number` (1-based)."""
        if not 1 <= instance_number <= self.instance_count:
            raise ValueError(
                f"series {self.uid} has {self.instance_count} instances, not number {instance_number}"
            )
        return derive_uid(self.uid, "instance", instance_number)


class StudyPlan(BaseModel):
    """One study. `prior_study_uid` and `change` are set on a current study that has a prior."""

    model_config = ConfigDict(frozen=True)

    key: str = Field(description="Stable name within the patient, e.g. 'ct-chest-current'")
    patient_id: str
    uid: str
    accession_number: str = Field(max_length=16)
    study_id: str = Field(max_length=16)
    study_date: date
    study_time: time
    description: str
    timepoint: Timepoint
    prior_study_uid: str | None = None
    change: Change | None = None
    spec: ImageSpec
    series: tuple[SeriesPlan, ...] = Field(min_length=1)
    truth: VolumeTruth | CxrTruth

    @property
    def started(self) -> datetime:
        """Study date and time; the synthetic site's clock is UTC."""
        return datetime.combine(self.study_date, self.study_time, tzinfo=UTC)

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return tuple(dict.fromkeys(s.modality for s in self.series))

    @property
    def instance_count(self) -> int:
        return sum(s.instance_count for s in self.series)
