"""FHIR R4 ImagingStudy and Endpoint resources for planned studies (pure: JSON dicts, no I/O).

Each resource is validated by `fhir.resources.R4B` before it is returned. The Endpoint is a
DICOMweb (WADO-RS) base URL; every ImagingStudy refers to it and carries its
StudyInstanceUID as `urn:dicom:uid` identifier `urn:oid:<uid>`, which is how a reader finds
the pixels: `{address}/studies/{uid}`.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fhir.resources.R4B.endpoint import Endpoint
from fhir.resources.R4B.imagingstudy import ImagingStudy

from agent.testbed.cohort.codes import COHORT_TAG
from agent.testbed.cohort.imaging.plan import ImagingPlan
from agent.testbed.cohort.imaging.study import Modality, SeriesPlan, StudyPlan

if TYPE_CHECKING:  # slide.py pulls in the slide renderer (scipy, tifffile); the builder needs none of it
    from agent.testbed.cohort.imaging.slide import SlidePlan

__all__ = [
    "DCM_SYSTEM",
    "DICOM_UID_SYSTEM",
    "dicomweb_endpoint",
    "endpoint_id",
    "imaging_resources",
    "imaging_study",
    "imaging_study_id",
    "slide_imaging_study",
    "slide_imaging_study_id",
]

DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
DICOM_UID_SYSTEM = "urn:dicom:uid"
_CONNECTION_TYPE = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
_PAYLOAD_TYPE = "http://terminology.hl7.org/CodeSystem/endpoint-payload-type"
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_SNOMED = "http://snomed.info/sct"
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

_MODALITY_DISPLAY = {
    Modality.CT: "Computed Tomography",
    Modality.MR: "Magnetic Resonance",
    Modality.CR: "Computed Radiography",
    Modality.DX: "Digital Radiography",
}
# Whole-slide images: not a `Modality` of the CT/MR/CXR plan, so coded here.
_SM_CODING = {"system": DCM_SYSTEM, "code": "SM", "display": "Slide Microscopy"}
# BodyPartExamined -> SNOMED CT body structure (DICOM PS3.16 CID 4031 mapping).
_BODY_SITE = {
    "CHEST": ("51185008", "Thoracic structure"),
    "HEAD": ("69536005", "Head structure"),
}


def _meta() -> dict[str, Any]:
    return {"tag": [COHORT_TAG.coding()]}


def _modality(modality: Modality) -> dict[str, str]:
    return {"system": DCM_SYSTEM, "code": str(modality), "display": _MODALITY_DISPLAY[modality]}


def _check_id(resource_id: str) -> str:
    if not _FHIR_ID.match(resource_id):
        raise ValueError(f"{resource_id!r} is not a valid FHIR id ([A-Za-z0-9-.], at most 64 characters)")
    return resource_id


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"DICOMweb base URL must be an absolute http(s) URL, got {url!r}")
    return url.rstrip("/")


def endpoint_id(dicomweb_base_url: str) -> str:
    """A stable Endpoint id for a DICOMweb base URL (one Endpoint per PACS)."""
    digest = hashlib.sha256(_base_url(dicomweb_base_url).encode()).hexdigest()[:16]
    return f"dicomweb-{digest}"


def dicomweb_endpoint(dicomweb_base_url: str, *, name: str = "ChartAgent PACS (DICOMweb)") -> dict[str, Any]:
    """Endpoint of connectionType dicom-wado-rs at the DICOMweb base URL."""
    address = _base_url(dicomweb_base_url)
    resource: dict[str, Any] = {
        "resourceType": "Endpoint",
        "id": endpoint_id(address),
        "meta": _meta(),
        "status": "active",
        "connectionType": {"system": _CONNECTION_TYPE, "code": "dicom-wado-rs", "display": "DICOM WADO-RS"},
        "name": name,
        "payloadType": [
            {"coding": [{"system": _PAYLOAD_TYPE, "code": "any", "display": "Any"}], "text": "DICOM"}
        ],
        "payloadMimeType": ["application/dicom"],
        "address": address,
    }
    Endpoint.model_validate(resource)
    return resource


def imaging_study_id(study: StudyPlan) -> str:
    """`<patient id>-<study key>`, e.g. `ca-7-0-ct-chest-prior`."""
    return _check_id(f"{study.patient_id}-{study.key}")


def _series(series: SeriesPlan, include_instances: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "uid": series.uid,
        "number": series.number,
        "modality": _modality(series.modality),
        "description": series.description,
        "numberOfInstances": series.instance_count,
    }
    if series.body_part in _BODY_SITE:
        code, display = _BODY_SITE[series.body_part]
        entry["bodySite"] = {"system": _SNOMED, "code": code, "display": display}
    if include_instances:
        sop_class = {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{series.sop_class}"}
        entry["instance"] = [
            {"uid": series.instance_uid(n), "sopClass": sop_class, "number": n}
            for n in range(1, series.instance_count + 1)
        ]
    return entry


def imaging_study(study: StudyPlan, endpoint: str, *, include_instances: bool = True) -> dict[str, Any]:
    """ImagingStudy for a planned study; `endpoint` is the Endpoint's id."""
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": imaging_study_id(study),
        "meta": _meta(),
        "identifier": [
            {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{study.uid}"},
            {
                "type": {"coding": [{"system": _V2_0203, "code": "ACSN", "display": "Accession ID"}]},
                "value": study.accession_number,
            },
        ],
        "status": "available",
        "modality": [_modality(m) for m in study.modalities],
        "subject": {"reference": f"Patient/{study.patient_id}"},
        "started": study.started.isoformat(),
        "endpoint": [{"reference": f"Endpoint/{_check_id(endpoint)}"}],
        "numberOfSeries": len(study.series),
        "numberOfInstances": study.instance_count,
        "description": study.description,
        "series": [_series(s, include_instances) for s in study.series],
    }
    ImagingStudy.model_validate(resource)
    return resource


def imaging_resources(
    plan: ImagingPlan, dicomweb_base_url: str, *, include_instances: bool = True
) -> list[dict[str, Any]]:
    """The Endpoint first, then one ImagingStudy per planned study."""
    endpoint = dicomweb_endpoint(dicomweb_base_url)
    return [
        endpoint,
        *(imaging_study(s, endpoint["id"], include_instances=include_instances) for s in plan.studies),
    ]


def slide_imaging_study_id(slide: SlidePlan) -> str:
    """`<patient id>-wsi`, e.g. `ca-7-7-wsi`."""
    return _check_id(f"{slide.patient_id}-{slide.key}")


def slide_imaging_study(slide: SlidePlan, endpoint: str, *, instances: int) -> dict[str, Any]:
    """ImagingStudy (modality SM) of a whole-slide study; `endpoint` is the Endpoint's id.

    `instances` is what the PACS holds (QIDO or STOW), since the dicomizer decides how many
    instances a pyramid takes; the instances themselves are not listed.
    """
    if instances < 1:
        raise ValueError(f"slide {slide.uid}: an ImagingStudy needs at least one stored instance")
    series: dict[str, Any] = {
        "uid": slide.series_uid,
        "number": 1,
        "modality": dict(_SM_CODING),
        "description": slide.series_description,
        "numberOfInstances": instances,
    }
    if slide.body_site is not None:
        series["bodySite"] = {
            "system": _SNOMED,
            "code": slide.body_site.code,
            "display": slide.body_site.display,
        }
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": slide_imaging_study_id(slide),
        "meta": _meta(),
        "identifier": [
            {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{slide.uid}"},
            {
                "type": {"coding": [{"system": _V2_0203, "code": "ACSN", "display": "Accession ID"}]},
                "value": slide.accession_number,
            },
        ],
        "status": "available",
        "modality": [dict(_SM_CODING)],
        "subject": {"reference": f"Patient/{slide.patient_id}"},
        "started": slide.started.isoformat(),
        "endpoint": [{"reference": f"Endpoint/{_check_id(endpoint)}"}],
        "numberOfSeries": 1,
        "numberOfInstances": instances,
        "description": slide.description,
        "series": [series],
    }
    ImagingStudy.model_validate(resource)
    return resource
