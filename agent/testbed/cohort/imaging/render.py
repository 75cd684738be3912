"""Rendering a planned study into DICOM: pydicom Datasets or Part-10 files, series by series.

Deterministic: the same plan and identity give byte-identical files. Rendering is lazy, so
a seeding step can STOW a CT series in batches without holding every file at once.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict
from pydicom.dataset import Dataset

from agent.testbed.cohort.imaging.ct_series import ct_chest_datasets
from agent.testbed.cohort.imaging.cxr_image import cxr_dataset
from agent.testbed.cohort.imaging.dicom_header import part10_bytes
from agent.testbed.cohort.imaging.identity import PatientIdentity
from agent.testbed.cohort.imaging.mr_series import mr_brain_datasets
from agent.testbed.cohort.imaging.study import CtChestSpec, MrBrainSpec, StudyPlan

__all__ = ["RenderedInstance", "render_datasets", "render_study"]


class RenderedInstance(BaseModel):
    """One Part-10 file and the UIDs a STOW or a FHIR ImagingStudy needs."""

    model_config = ConfigDict(frozen=True)

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    instance_number: int
    data: bytes


def render_datasets(study: StudyPlan, patient: PatientIdentity) -> Iterator[Dataset]:
    """Uncompressed datasets (no file meta), in series then InstanceNumber order."""
    if isinstance(study.spec, CtChestSpec):
        yield from ct_chest_datasets(study, patient)
    elif isinstance(study.spec, MrBrainSpec):
        yield from mr_brain_datasets(study, patient)
    else:
        yield cxr_dataset(study, patient)


def render_study(study: StudyPlan, patient: PatientIdentity) -> Iterator[RenderedInstance]:
    """Part-10 files in each series' planned transfer syntax."""
    series_by_uid = {s.uid: s for s in study.series}
    for ds in render_datasets(study, patient):
        series = series_by_uid[ds.SeriesInstanceUID]
        yield RenderedInstance(
            study_uid=study.uid,
            series_uid=series.uid,
            sop_instance_uid=ds.SOPInstanceUID,
            instance_number=int(ds.InstanceNumber),
            data=part10_bytes(ds, series.transfer_syntax),
        )
