"""CT or MRI current vs prior: two `volume_findings` reads, one per study, combined (pure).

MedGemma's 3D recipe reads one series at a time, so a comparison is two calls: the current study
and the prior, each with the same prompt. The combination states what the model found on each
and its impression of each; it computes no change between them (the free-text findings of two
separate reads cannot be matched without guessing), and says so.

A study without a prior is a comparison with `prior=None`: the current findings alone, reported
as "no prior available".
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from tools.medgemma.tasks.output import TaskOutput
from tools.medgemma.tasks.volume_findings import VolumeFindings, VolumeModality

__all__ = ["NOT_COMPARED_NOTE", "VolumeComparison", "VolumeRead", "combine"]

NOT_COMPARED_NOTE = "each study was read separately by the model; no change between them was computed"


class VolumeRead(BaseModel):
    """The model's read of one study: its findings, and which images they refer to."""

    model_config = ConfigDict(frozen=True)

    study_date: str | None  # the study's date as recorded (FHIR date or dateTime text)
    series_uid: str
    # DICOM InstanceNumber of the image shown as SLICE n (index n - 1); None where the object has none.
    slice_instances: tuple[int | None, ...]
    findings: VolumeFindings

    @model_validator(mode="after")
    def _slices_shown(self) -> VolumeRead:
        shown = len(self.slice_instances)
        for finding in self.findings.findings:
            outside = [s for s in finding.slices if not 1 <= s <= shown]
            if outside:
                raise ValueError(f"a finding cites SLICE {outside} but only 1..{shown} were shown")
        return self

    def instances_of(self, slices: tuple[int, ...]) -> tuple[int | None, ...]:
        """The InstanceNumbers of the SLICE labels `slices` (1-based)."""
        return tuple(self.slice_instances[s - 1] for s in slices)


class VolumeComparison(TaskOutput):
    modality: VolumeModality
    current: VolumeRead
    prior: VolumeRead | None

    @model_validator(mode="after")
    def _same_modality(self) -> VolumeComparison:
        for read in (self.current, self.prior):
            if read is not None and read.findings.modality is not self.modality:
                raise ValueError(
                    f"a {read.findings.modality.value} read in a {self.modality.value} comparison"
                )
        return self


def combine(modality: VolumeModality, current: VolumeRead, prior: VolumeRead | None) -> VolumeComparison:
    """One comparison from the current read and the prior one (None: no prior available).

    The parse notes of both reads are kept, each prefixed with the study it concerns.
    """
    notes = tuple(f"current: {n}" for n in current.findings.parse_notes)
    if prior is not None:
        notes += tuple(f"prior: {n}" for n in prior.findings.parse_notes)
    return VolumeComparison(modality=modality, current=current, prior=prior, parse_notes=notes)
