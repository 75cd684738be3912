"""FHIR ImagingStudy and Endpoint for the imaging plan: R4B-valid, and consistent with the DICOM files."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import pydicom
import pytest
from fhir.resources.R4B.endpoint import Endpoint
from fhir.resources.R4B.imagingstudy import ImagingStudy

from agent.testbed.cohort.codes import COHORT_TAG
from agent.testbed.cohort.imaging import (
    CxrSpec,
    ImagingPlan,
    PatientIdentity,
    PatientSex,
    dicomweb_endpoint,
    endpoint_id,
    imaging_resources,
    imaging_study,
    plan_imaging,
    render_study,
)
from agent.testbed.cohort.imaging.fhir import DCM_SYSTEM, DICOM_UID_SYSTEM

IDS = [f"ca-7-{i}" for i in range(7)]
BASE = "http://127.0.0.1:8042/dicom-web/"


@pytest.fixture(scope="module")
def plan() -> ImagingPlan:
    return plan_imaging(IDS, seed=7)


@pytest.fixture(scope="module")
def resources(plan: ImagingPlan) -> list[dict[str, Any]]:
    return imaging_resources(plan, BASE)


def test_endpoint_is_a_valid_dicom_wado_rs_endpoint(resources: list[dict[str, Any]]) -> None:
    endpoint = Endpoint.model_validate(resources[0])
    assert endpoint.connectionType.code == "dicom-wado-rs"
    assert endpoint.connectionType.system == "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
    assert endpoint.address == "http://127.0.0.1:8042/dicom-web"
    assert endpoint.status == "active"
    assert endpoint.id == endpoint_id(BASE) == endpoint_id(BASE.rstrip("/"))
    assert endpoint_id("http://pacs.example.org/dicomweb") != endpoint.id


def test_one_valid_imaging_study_per_planned_study(
    plan: ImagingPlan, resources: list[dict[str, Any]]
) -> None:
    studies = [ImagingStudy.model_validate(r) for r in resources[1:]]
    assert len(studies) == len(plan.studies)
    assert len({s.id for s in studies}) == len(studies)
    for resource, study in zip(studies, plan.studies, strict=True):
        assert resource.status == "available"
        assert resource.subject.reference == f"Patient/{study.patient_id}"
        assert resource.endpoint[0].reference == f"Endpoint/{resources[0]['id']}"
        uid_ids = [i for i in resource.identifier if i.system == DICOM_UID_SYSTEM]
        assert [i.value for i in uid_ids] == [f"urn:oid:{study.uid}"]
        assert resource.numberOfSeries == len(study.series)
        assert resource.numberOfInstances == sum(s.instance_count for s in study.series)
        assert [(c.system, c.code) for c in resource.modality] == [
            (DCM_SYSTEM, str(m)) for m in study.modalities
        ]
        assert resource.started.date() == study.study_date
        assert [s.uid for s in resource.series] == [s.uid for s in study.series]
        for series_resource, series in zip(resource.series, study.series, strict=True):
            assert series_resource.modality.code == str(series.modality)
            assert series_resource.numberOfInstances == series.instance_count
            assert len(series_resource.instance) == series.instance_count
            assert series_resource.bodySite.system == "http://snomed.info/sct"
        assert resource.meta.tag[0].code == COHORT_TAG.code


def test_instances_listed_are_the_instances_written(
    plan: ImagingPlan, resources: list[dict[str, Any]]
) -> None:
    study = next(s for s in plan.studies if isinstance(s.spec, CxrSpec) and s.change is not None)
    resource = next(r for r in resources[1:] if r["identifier"][0]["value"] == f"urn:oid:{study.uid}")
    patient = PatientIdentity(
        patient_id=study.patient_id,
        family="Testperson",
        given="Ed",
        birth_date=date(1980, 2, 2),
        sex=PatientSex.MALE,
    )
    (instance,) = render_study(study, patient)
    ds = pydicom.dcmread(io.BytesIO(instance.data))
    (listed,) = resource["series"][0]["instance"]
    assert listed["uid"] == ds.SOPInstanceUID == instance.sop_instance_uid
    assert listed["sopClass"]["code"] == f"urn:oid:{ds.SOPClassUID}"
    assert listed["number"] == ds.InstanceNumber
    assert resource["series"][0]["uid"] == ds.SeriesInstanceUID


def test_instances_can_be_left_out(plan: ImagingPlan) -> None:
    resource = imaging_study(plan.studies[0], endpoint_id(BASE), include_instances=False)
    ImagingStudy.model_validate(resource)
    assert all("instance" not in s for s in resource["series"])
    assert resource["numberOfInstances"] == 120


def test_bad_base_url_and_bad_ids_are_refused(plan: ImagingPlan) -> None:
    with pytest.raises(ValueError, match="absolute http"):
        dicomweb_endpoint("orthanc:8042/dicom-web")
    with pytest.raises(ValueError, match="not a valid FHIR id"):
        imaging_study(plan.studies[0], "has spaces")
