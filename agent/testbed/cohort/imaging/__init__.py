"""Synthetic imaging studies (CT, MR, chest X-ray, whole-slide) for the synthetic cohort.

CT, MR and chest X-ray: `plan_imaging` decides which patients get which studies (UIDs,
dates, pixel recipes, truth); `render_study` turns a planned study and the patient's
identity into deterministic DICOM Part-10 files; `imaging_resources` describes the plan in
FHIR (Endpoint + ImagingStudy). Whole-slide images live in `wsi_synth`; the cohort's one
slide study in `slide` (not imported here: it pulls in the slide renderer), described in
FHIR by `slide_imaging_study`.
"""

from agent.testbed.cohort.imaging.fhir import (
    dicomweb_endpoint,
    endpoint_id,
    imaging_resources,
    imaging_study,
    slide_imaging_study,
)
from agent.testbed.cohort.imaging.identity import PatientIdentity, PatientSex
from agent.testbed.cohort.imaging.plan import IMAGING_REFERENCE_DATE, ImagingPlan, plan_imaging
from agent.testbed.cohort.imaging.render import RenderedInstance, render_datasets, render_study
from agent.testbed.cohort.imaging.study import (
    CtChestSpec,
    CxrSpec,
    Modality,
    MrBrainSpec,
    Photometric,
    SeriesPlan,
    StudyPlan,
    Timepoint,
    TransferSyntax,
)
from agent.testbed.cohort.imaging.truth import (
    BoxTruth,
    Change,
    CxrFinding,
    CxrTruth,
    LesionTruth,
    VolumeTruth,
)

__all__ = [
    "IMAGING_REFERENCE_DATE",
    "BoxTruth",
    "Change",
    "CtChestSpec",
    "CxrFinding",
    "CxrSpec",
    "CxrTruth",
    "ImagingPlan",
    "LesionTruth",
    "Modality",
    "MrBrainSpec",
    "PatientIdentity",
    "PatientSex",
    "Photometric",
    "RenderedInstance",
    "SeriesPlan",
    "StudyPlan",
    "Timepoint",
    "TransferSyntax",
    "VolumeTruth",
    "dicomweb_endpoint",
    "endpoint_id",
    "imaging_resources",
    "imaging_study",
    "plan_imaging",
    "render_datasets",
    "render_study",
    "slide_imaging_study",
]
