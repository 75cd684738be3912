"""Synthetic MR brain: tissue contrast per weighting, geometry (foot to head), lesion, read-back."""

from __future__ import annotations

import io
from datetime import date

import numpy as np
import pydicom
import pytest

from agent.testbed.cohort.imaging import (
    MrBrainSpec,
    PatientIdentity,
    PatientSex,
    StudyPlan,
    VolumeTruth,
    plan_imaging,
    render_study,
)
from agent.testbed.cohort.imaging.mr_phantom import (
    MR_LESION_SITES,
    HeadAnatomy,
    MrTissue,
    MrWeighting,
    mr_brain_geometry,
    mr_brain_phantom,
    mr_lesion_site_centre,
)
from agent.testbed.cohort.imaging.truth import SphereLesion

IDS = [f"ca-7-{i}" for i in range(7)]


@pytest.fixture(scope="module")
def mr_study() -> StudyPlan:
    (study,) = (s for s in plan_imaging(IDS, seed=7).studies if isinstance(s.spec, MrBrainSpec))
    return study


@pytest.fixture(scope="module")
def files(mr_study: StudyPlan) -> list[pydicom.Dataset]:
    patient = PatientIdentity(
        patient_id=mr_study.patient_id,
        family="Testperson",
        given="Cy",
        birth_date=date(1970, 1, 1),
        sex=PatientSex.OTHER,
    )
    return [pydicom.dcmread(io.BytesIO(f.data)) for f in render_study(mr_study, patient)]


def test_study_has_t1_and_t2_series_of_60_slices_256(
    mr_study: StudyPlan, files: list[pydicom.Dataset]
) -> None:
    assert [s.description for s in mr_study.series] == ["AX T1 SE", "AX T2 TSE"]
    assert len(files) == 120
    by_series: dict[str, list[pydicom.Dataset]] = {}
    for ds in files:
        by_series.setdefault(ds.SeriesInstanceUID, []).append(ds)
    assert [len(v) for v in by_series.values()] == [60, 60]
    assert len({ds.FrameOfReferenceUID for ds in files}) == 1
    for ds in files:
        assert (ds.Modality, ds.BodyPartExamined, ds.Rows, ds.Columns) == ("MR", "HEAD", 256, 256)
        assert "RescaleSlope" not in ds
        assert ds.pixel_array.dtype == np.uint16


def test_instance_numbers_rise_foot_to_head(files: list[pydicom.Dataset]) -> None:
    first_series = [ds for ds in files if ds.SeriesNumber == 1]
    assert [int(ds.InstanceNumber) for ds in first_series] == list(range(1, 61))
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in first_series])
    assert np.allclose(np.diff(z), 2.5)


@pytest.mark.parametrize("weighting", list(MrWeighting))
def test_tissue_contrast_follows_the_weighting(weighting: MrWeighting) -> None:
    anatomy = HeadAnatomy()
    geometry = mr_brain_geometry(slices=30, size=128)
    site = MR_LESION_SITES[0]
    lesion = SphereLesion(site=site, centre_mm=mr_lesion_site_centre(anatomy, site), diameter_mm=14)
    phantom = mr_brain_phantom(geometry, weighting, anatomy, lesion, noise_seed=3)

    def mean(tissue: MrTissue) -> float:
        mask = phantom.labels == tissue
        assert mask.sum() > 20, tissue.name
        return float(phantom.values[mask].mean())

    wm, gm, csf, lesion_signal = (
        mean(MrTissue.WHITE_MATTER),
        mean(MrTissue.GREY_MATTER),
        mean(MrTissue.CSF),
        mean(MrTissue.LESION),
    )
    if weighting is MrWeighting.T1:
        assert wm > gm > csf
        assert lesion_signal < wm - 200  # hypointense on T1
    else:
        assert csf > gm > wm
        assert lesion_signal > wm + 300  # hyperintense on T2
    assert mean(MrTissue.BONE) < 150
    assert phantom.values[:, :5, :5].mean() < 60  # air around the head is noise only


def test_lesion_truth_points_into_the_lesion(mr_study: StudyPlan, files: list[pydicom.Dataset]) -> None:
    assert isinstance(mr_study.truth, VolumeTruth)
    lesion = mr_study.truth.lesion
    assert lesion is not None
    k, r, c = lesion.centre_voxel
    t2 = [ds for ds in files if ds.SeriesNumber == 2]
    ds = t2[k]
    assert int(ds.InstanceNumber) == lesion.instance_number
    assert float(ds.ImagePositionPatient[2]) == pytest.approx(lesion.centre_mm[2], abs=1.25)
    image = ds.pixel_array.astype(float)
    half = max(int(lesion.diameter_mm / 2 / float(ds.PixelSpacing[0]) / 2), 1)
    core = image[r - half : r + half + 1, c - half : c + half + 1].mean()
    assert core > 1000  # T2-bright lesion inside white matter (~620)


def test_every_mr_site_is_in_white_matter() -> None:
    geometry = mr_brain_geometry(slices=60, size=128)
    for scale in (0.93, 1.07):
        anatomy = HeadAnatomy(scale=scale)
        labels = mr_brain_phantom(geometry, MrWeighting.T1, anatomy, None, noise_seed=0).labels
        for site in MR_LESION_SITES:
            k, r, c = (round(v) for v in geometry.to_voxel(mr_lesion_site_centre(anatomy, site)))
            assert labels[k, r, c] == MrTissue.WHITE_MATTER, site
