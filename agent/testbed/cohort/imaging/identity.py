"""The patient a synthetic study belongs to; passed in by the caller, never invented here."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PatientIdentity", "PatientSex"]


class PatientSex(StrEnum):
    """DICOM Patient's Sex (0010,0040) values."""

    FEMALE = "F"
    MALE = "M"
    OTHER = "O"


class PatientIdentity(BaseModel):
    """Patient module values: `patient_id` is the FHIR Patient id, also used as DICOM PatientID."""

    model_config = ConfigDict(frozen=True)

    patient_id: str = Field(min_length=1, max_length=64)
    family: str = Field(min_length=1)
    given: str = Field(min_length=1)
    birth_date: date
    sex: PatientSex

    @property
    def dicom_name(self) -> str:
        """Person Name in DICOM form, `Family^Given`."""
        return f"{self.family}^{self.given}"
