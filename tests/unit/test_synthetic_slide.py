"""The cohort's whole-slide study: a deterministic plan, its DICOM files and its FHIR ImagingStudy."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pydicom
import pytest
from fhir.resources.R4B.imagingstudy import ImagingStudy

from agent.testbed.cohort.codes import COHORT_TAG
from agent.testbed.cohort.imaging import PatientIdentity, PatientSex, plan_imaging, slide_imaging_study
from agent.testbed.cohort.imaging.fhir import (
    DCM_SYSTEM,
    DICOM_UID_SYSTEM,
    endpoint_id,
    slide_imaging_study_id,
)
from agent.testbed.cohort.imaging.slide import (
    SLIDE_DESCRIPTION,
    BodySite,
    SlidePlan,
    plan_slide,
    render_slide,
    slide_overrides,
)
from agent.testbed.cohort.imaging.wsi_synth import make_slide_tiff
from tools.imaging.dicomweb import validate_uid
from tools.imaging.wsi import PATCH_PX, TARGET_MPP

IDS = [f"ca-7-{i}" for i in range(12)]
REFERENCE = date(2026, 6, 30)
ENDPOINT = endpoint_id("http://127.0.0.1:8042/dicom-web")
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


@pytest.fixture(scope="module")
def plan() -> SlidePlan:
    slide = plan_slide(IDS, 7, reference_date=REFERENCE)
    assert slide is not None
    return slide


@pytest.fixture(scope="module")
def identity() -> PatientIdentity:
    return PatientIdentity(
        patient_id=IDS[7], family="Okafor", given="Ada", birth_date=date(1961, 3, 9), sex=PatientSex.FEMALE
    )


def test_only_a_cohort_of_eight_or_more_gets_the_slide() -> None:
    assert plan_slide(IDS[:7], 7, reference_date=REFERENCE) is None
    assert plan_slide([], 7, reference_date=REFERENCE) is None
    eight = plan_slide(IDS[:8], 7, reference_date=REFERENCE)
    assert eight is not None
    assert eight.patient_id == IDS[7]
    with pytest.raises(ValueError, match="unique"):
        plan_slide([*IDS[:8], IDS[0]], 7, reference_date=REFERENCE)


def test_plan_is_deterministic_and_independent_of_cohort_size(plan: SlidePlan) -> None:
    assert plan_slide(IDS, 7, reference_date=REFERENCE) == plan
    # Patient 7's slide is the same whether the cohort has 8 or 12 patients.
    assert plan_slide(IDS[:8], 7, reference_date=REFERENCE) == plan
    other = plan_slide(IDS, 8, reference_date=REFERENCE)
    assert other is not None
    assert other.uid != plan.uid
    assert other.spec.seed != plan.spec.seed


def test_plan_identifiers_and_date(plan: SlidePlan) -> None:
    validate_uid(plan.uid)
    validate_uid(plan.series_uid)
    assert plan.uid != plan.series_uid
    assert plan.description == SLIDE_DESCRIPTION
    assert plan.accession_number.startswith("A")
    assert len(plan.accession_number) <= 16
    assert len(plan.study_id) <= 16
    assert REFERENCE.toordinal() - 30 <= plan.study_date.toordinal() < REFERENCE.toordinal()
    assert plan.started.tzinfo is not None
    later = plan_slide(IDS, 7, reference_date=date(2027, 6, 30))
    assert later is not None
    assert later.study_date > plan.study_date


def test_slide_uids_are_distinct_from_every_other_study(plan: SlidePlan) -> None:
    imaging = plan_imaging(IDS, seed=7, reference_date=REFERENCE)
    others = {s.uid for s in imaging.studies} | {se.uid for s in imaging.studies for se in s.series}
    assert plan.uid not in others
    assert plan.series_uid not in others


def test_slide_has_a_10x_level_with_a_4_by_4_patch_grid(plan: SlidePlan) -> None:
    spec = plan.spec
    assert spec.mpp == 0.5
    assert spec.downsamples == (1, 2, 8)
    assert TARGET_MPP in spec.level_mpps
    level = spec.level_mpps.index(TARGET_MPP)
    ds = spec.downsamples[level]
    assert (spec.width // ds // PATCH_PX, spec.height // ds // PATCH_PX) == (4, 4)
    assert plan.min_instances == 3
    truth = plan.truth
    assert (truth.width, truth.height, truth.mpp, truth.downsamples) == (8192, 8192, 0.5, (1, 2, 8))
    assert len(truth.islands) == spec.n_islands
    assert truth.tissue_mask(16).mean() > 0.1


def test_planned_islands_are_the_rendered_ones(tmp_path: Path) -> None:
    small = plan_slide(IDS, 7, reference_date=REFERENCE, size=(2048, 2048))
    assert small is not None
    spec = small.spec
    rendered = make_slide_tiff(
        tmp_path / "s.tiff",
        seed=spec.seed,
        size=(spec.width, spec.height),
        mpp=spec.mpp,
        downsamples=spec.downsamples,
        n_islands=spec.n_islands,
    )
    assert rendered.islands == small.truth.islands


def test_overrides_carry_the_identity_and_the_planned_dates(
    plan: SlidePlan, identity: PatientIdentity
) -> None:
    values = slide_overrides(plan, identity)
    assert values["PatientName"] == "Okafor^Ada"
    assert values["PatientBirthDate"] == "19610309"
    assert values["PatientSex"] == "F"
    assert values["StudyDate"] == plan.study_date.strftime("%Y%m%d")
    assert values["AcquisitionDateTime"].startswith(values["StudyDate"])
    stranger = identity.model_copy(update={"patient_id": IDS[0]})
    with pytest.raises(ValueError, match="belongs to"):
        slide_overrides(plan, stranger)


def test_render_is_byte_identical_and_carries_identity_and_uids(
    identity: PatientIdentity, tmp_path: Path
) -> None:
    small = plan_slide(IDS, 7, reference_date=REFERENCE, size=(2048, 2048))
    assert small is not None
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = render_slide(small, identity, tmp_path / "a")
    second = render_slide(small, identity, tmp_path / "b")
    assert len(first) == small.min_instances
    assert first == second
    datasets = [pydicom.dcmread(io.BytesIO(b)) for b in first]
    sop_uids = {str(ds.SOPInstanceUID) for ds in datasets}
    assert len(sop_uids) == len(datasets)
    for ds in datasets:
        assert ds.SOPClassUID == WSI_SOP_CLASS
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert not str(ds.SOPInstanceUID).startswith("1.2.276.0.7230010.3.1.")
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == (small.uid, small.series_uid)
        assert (ds.PatientID, str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex) == (
            IDS[7],
            "Okafor^Ada",
            "19610309",
            "F",
        )
        assert ds.StudyDate == small.study_date.strftime("%Y%m%d")
        assert ds.Modality == "SM"
        assert ds.AccessionNumber == small.accession_number


def test_imaging_study_is_r4b_valid_and_points_at_the_slide(plan: SlidePlan) -> None:
    resource = slide_imaging_study(plan, ENDPOINT, instances=3)
    study = ImagingStudy.model_validate(resource)
    assert study.id == slide_imaging_study_id(plan) == f"{IDS[7]}-wsi"
    assert study.status == "available"
    assert study.subject.reference == f"Patient/{IDS[7]}"
    assert study.endpoint[0].reference == f"Endpoint/{ENDPOINT}"
    assert [(c.system, c.code) for c in study.modality] == [(DCM_SYSTEM, "SM")]
    uid_ids = [i.value for i in study.identifier if i.system == DICOM_UID_SYSTEM]
    assert uid_ids == [f"urn:oid:{plan.uid}"]
    assert study.numberOfSeries == 1
    assert study.numberOfInstances == 3
    assert study.started.date() == plan.study_date
    assert study.description == SLIDE_DESCRIPTION
    assert study.meta.tag[0].code == COHORT_TAG.code
    series = study.series[0]
    assert series.uid == plan.series_uid
    assert (series.modality.system, series.modality.code) == (DCM_SYSTEM, "SM")
    assert series.numberOfInstances == 3
    assert series.bodySite is None
    assert series.instance is None


def test_imaging_study_body_site_and_bad_input(plan: SlidePlan) -> None:
    sited = plan.model_copy(update={"body_site": BodySite(code="71854001", display="Colon structure")})
    series = ImagingStudy.model_validate(slide_imaging_study(sited, ENDPOINT, instances=3)).series[0]
    assert (series.bodySite.system, series.bodySite.code) == ("http://snomed.info/sct", "71854001")
    with pytest.raises(ValueError, match="at least one"):
        slide_imaging_study(plan, ENDPOINT, instances=0)
    with pytest.raises(ValueError, match="valid FHIR id"):
        slide_imaging_study(plan, "not a valid id", instances=3)
