"""Synthetic CT chest: HU per tissue, geometry, the lesion's planned growth, read-back by pydicom."""

from __future__ import annotations

import io
from datetime import date

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from pydicom.pixels import apply_rescale
from scipy import ndimage

from agent.testbed.cohort.imaging import PatientIdentity, PatientSex, StudyPlan, plan_imaging, render_study
from agent.testbed.cohort.imaging.ct_phantom import (
    CT_LESION_SITES,
    ChestAnatomy,
    Tissue,
    ct_chest_geometry,
    ct_chest_labels,
    ct_chest_phantom,
    lesion_site_centre,
)
from agent.testbed.cohort.imaging.shapes import paint_ellipsoid
from agent.testbed.cohort.imaging.study import CtChestSpec
from agent.testbed.cohort.imaging.truth import Change, LesionTruth, SphereLesion, VolumeTruth

IDS = [f"ca-7-{i}" for i in range(7)]


def identity(patient_id: str) -> PatientIdentity:
    return PatientIdentity(
        patient_id=patient_id,
        family="Testperson",
        given="Ada",
        birth_date=date(1961, 3, 4),
        sex=PatientSex.FEMALE,
    )


def ct_spec(study: StudyPlan) -> CtChestSpec:
    assert isinstance(study.spec, CtChestSpec)
    return study.spec


@pytest.fixture(scope="module")
def ct_pair() -> tuple[StudyPlan, StudyPlan]:
    plan = plan_imaging(IDS, seed=7)
    prior, current = (s for s in plan.for_patient(IDS[0]) if s.key.startswith("ct-chest"))
    return prior, current


@pytest.fixture(scope="module")
def labels(ct_pair: tuple[StudyPlan, StudyPlan]) -> NDArray[np.uint8]:
    """Which voxel of the current scan is which tissue (what the phantom drew)."""
    spec = ct_spec(ct_pair[1])
    return ct_chest_labels(spec.geometry, spec.anatomy, spec.lesion)


@pytest.fixture(scope="module")
def current_files(ct_pair: tuple[StudyPlan, StudyPlan]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(io.BytesIO(f.data)) for f in render_study(ct_pair[1], identity(IDS[0]))]


@pytest.fixture(scope="module")
def prior_files(ct_pair: tuple[StudyPlan, StudyPlan]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(io.BytesIO(f.data)) for f in render_study(ct_pair[0], identity(IDS[0]))]


@pytest.fixture(scope="module")
def current_hu(current_files: list[pydicom.Dataset]) -> NDArray[np.float64]:
    return hu_volume(current_files)


def hu_volume(files: list[pydicom.Dataset]) -> NDArray[np.float64]:
    return np.stack([apply_rescale(ds.pixel_array, ds) for ds in files])


def test_series_is_at_least_100_axial_slices_of_512(current_files: list[pydicom.Dataset]) -> None:
    assert len(current_files) >= 100
    ds = current_files[0]
    assert (ds.Rows, ds.Columns) == (512, 512)
    assert ds.pixel_array.dtype == np.int16
    assert (ds.Modality, ds.BodyPartExamined, ds.PixelRepresentation) == ("CT", "CHEST", 1)
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)


@pytest.mark.parametrize(
    ("tissue", "low", "high"),
    [
        (Tissue.AIR, -1005, -995),
        (Tissue.LUNG, -870, -830),
        (Tissue.FAT, -110, -90),
        (Tissue.SOFT_TISSUE, 30, 50),
        (Tissue.CONTRAST_BLOOD, 150, 400),
        (Tissue.CORTICAL_BONE, 700, 1200),
        (Tissue.LESION, 0, 80),
    ],
    ids=lambda v: v.name if isinstance(v, Tissue) else str(v),
)
def test_hounsfield_units_per_tissue(
    labels: NDArray[np.uint8], current_hu: NDArray[np.float64], tissue: Tissue, low: float, high: float
) -> None:
    # Measured in the decoded DICOM files, with the phantom's labels saying which voxel is what.
    mask = labels == tissue
    assert mask.sum() > 500, f"{tissue.name} barely present"
    assert low <= current_hu[mask].mean() <= high


def test_bone_and_contrast_are_where_the_anatomy_puts_them(
    labels: NDArray[np.uint8], current_hu: NDArray[np.float64]
) -> None:
    hu = current_hu
    assert (hu[labels == Tissue.CORTICAL_BONE] > 500).mean() > 0.99
    assert (hu[labels == Tissue.CONTRAST_BLOOD] > 150).mean() > 0.99
    # Air outside the body: the corners of every slice.
    assert hu[:, :20, :20].mean() == pytest.approx(-1000, abs=3)
    # Lungs take a large share of mid-chest slices, with vessels inside them.
    mid = len(hu) // 2
    assert (labels[mid] == Tissue.LUNG).mean() > 0.1
    assert (labels == Tissue.LUNG_VESSEL).sum() > 10_000


def test_geometry_is_evenly_spaced_head_to_foot(current_files: list[pydicom.Dataset]) -> None:
    numbers = [int(ds.InstanceNumber) for ds in current_files]
    assert numbers == list(range(1, len(current_files) + 1))
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in current_files])
    steps = np.diff(positions[:, 2])
    assert np.allclose(steps, -float(current_files[0].SliceThickness))  # z falls: head to foot
    assert np.allclose(positions[:, :2], positions[0, :2])
    for ds in current_files:
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert float(ds.SliceLocation) == pytest.approx(float(ds.ImagePositionPatient[2]))
    assert len({ds.SOPInstanceUID for ds in current_files}) == len(current_files)


def test_patient_and_study_come_from_the_plan_and_identity(
    ct_pair: tuple[StudyPlan, StudyPlan],
    prior_files: list[pydicom.Dataset],
    current_files: list[pydicom.Dataset],
) -> None:
    prior, current = ct_pair
    for study, files in ((prior, prior_files), (current, current_files)):
        ds = files[0]
        assert ds.PatientID == IDS[0]
        assert str(ds.PatientName) == "Testperson^Ada"
        assert ds.PatientBirthDate == "19610304"
        assert ds.StudyInstanceUID == study.uid
        assert ds.StudyDate == study.study_date.strftime("%Y%m%d")
        assert ds.StudyDescription
        assert ds.SeriesDescription
        assert {f.StudyInstanceUID for f in files} == {study.uid}
    assert prior_files[0].StudyInstanceUID != current_files[0].StudyInstanceUID
    assert prior_files[0].FrameOfReferenceUID != current_files[0].FrameOfReferenceUID
    assert (current.study_date - prior.study_date).days >= 90


def lesion_diameter_mm(files: list[pydicom.Dataset], truth: VolumeTruth) -> float:
    """Equivalent-sphere diameter of the dense blob at the truth centre, measured in HU."""
    assert truth.lesion is not None
    k, r, c = truth.lesion.centre_voxel
    hu = hu_volume(files[max(k - 12, 0) : k + 13])
    dense = ndimage.binary_opening(hu > -400, iterations=1)
    components, _ = ndimage.label(dense)
    centre_k = min(k, 12)
    blob = components == components[centre_k, r, c]
    assert components[centre_k, r, c] != 0, "no dense tissue at the lesion's truth centre"
    spacing = [float(v) for v in files[0].PixelSpacing]
    voxel_mm3 = spacing[0] * spacing[1] * float(files[0].SliceThickness)
    return float((6 * blob.sum() * voxel_mm3 / np.pi) ** (1 / 3))


def test_lesion_grows_from_prior_to_current_as_planned(
    ct_pair: tuple[StudyPlan, StudyPlan],
    prior_files: list[pydicom.Dataset],
    current_files: list[pydicom.Dataset],
) -> None:
    prior, current = ct_pair
    assert isinstance(prior.truth, VolumeTruth)
    assert isinstance(current.truth, VolumeTruth)
    assert prior.truth.lesion is not None
    assert current.truth.lesion is not None
    assert current.change is Change.WORSENED
    assert current.prior_study_uid == prior.uid
    planned = (prior.truth.lesion.diameter_mm, current.truth.lesion.diameter_mm)
    measured = (
        lesion_diameter_mm(prior_files, prior.truth),
        lesion_diameter_mm(current_files, current.truth),
    )
    assert planned[1] > planned[0]
    assert measured[0] == pytest.approx(planned[0], rel=0.15)
    assert measured[1] == pytest.approx(planned[1], rel=0.15)
    # Same place in the patient, but the scan ranges differ, so the slice index may too.
    assert prior.truth.lesion.centre_mm == current.truth.lesion.centre_mm


def test_lesion_truth_voxel_matches_patient_coordinates(
    ct_pair: tuple[StudyPlan, StudyPlan], current_files: list[pydicom.Dataset], labels: NDArray[np.uint8]
) -> None:
    truth = ct_pair[1].truth
    assert isinstance(truth, VolumeTruth)
    assert truth.lesion is not None
    k, r, c = truth.lesion.centre_voxel
    ds = current_files[k]
    assert int(ds.InstanceNumber) == truth.lesion.instance_number
    x0, y0, z = (float(v) for v in ds.ImagePositionPatient)
    spacing = float(ds.PixelSpacing[0])
    cx, cy, cz = truth.lesion.centre_mm
    assert abs(x0 + c * spacing - cx) <= spacing / 2 + 1e-6
    assert abs(y0 + r * spacing - cy) <= spacing / 2 + 1e-6
    assert abs(z - cz) <= float(ds.SliceThickness) / 2 + 1e-6
    assert labels[k, r, c] == Tissue.LESION


def test_shrinking_lesion_is_planned_for_the_second_patient() -> None:
    plan = plan_imaging(IDS, seed=7)
    prior, current = (s for s in plan.for_patient(IDS[1]) if s.key.startswith("ct-chest"))
    assert isinstance(prior.truth, VolumeTruth)
    assert isinstance(current.truth, VolumeTruth)
    assert prior.truth.lesion is not None
    assert current.truth.lesion is not None
    assert current.truth.lesion.diameter_mm < prior.truth.lesion.diameter_mm
    assert current.change is Change.IMPROVED


@pytest.mark.parametrize("scale", [0.9, 1.04])
def test_every_lesion_site_lies_in_lung_at_the_largest_planned_size(scale: float) -> None:
    anatomy = ChestAnatomy(scale=scale, vessel_seed=11)
    geometry = ct_chest_geometry(size=256, first_z_mm=10.0)
    labels = ct_chest_labels(geometry, anatomy, None)
    for site in CT_LESION_SITES:
        centre = lesion_site_centre(anatomy, site)
        probe = np.zeros_like(labels)
        paint_ellipsoid(probe, geometry, centre, (13.5, 13.5, 13.5), 1)
        inside = labels[probe == 1]
        lung = np.isin(inside, (Tissue.LUNG, Tissue.LUNG_VESSEL)).mean()
        assert lung > 0.95, f"{site}: only {lung:.0%} of a 27 mm lesion would be in lung"


def test_phantom_is_deterministic_and_noise_depends_on_its_seed() -> None:
    geometry = ct_chest_geometry(slices=6, size=64, first_z_mm=-150.0)
    anatomy = ChestAnatomy(vessel_seed=3)
    lesion = SphereLesion(
        site="right middle lobe", centre_mm=lesion_site_centre(anatomy, "right middle lobe"), diameter_mm=10
    )
    a = ct_chest_phantom(geometry, anatomy, lesion, noise_seed=1)
    b = ct_chest_phantom(geometry, anatomy, lesion, noise_seed=1)
    c = ct_chest_phantom(geometry, anatomy, lesion, noise_seed=2)
    assert np.array_equal(a.stored, b.stored)
    assert not np.array_equal(a.stored, c.stored)
    assert np.array_equal(a.labels, c.labels)


def test_lesion_outside_the_volume_is_refused() -> None:
    geometry = ct_chest_geometry(slices=10)
    with pytest.raises(ValueError, match="does not fit"):
        LesionTruth.from_lesion(
            SphereLesion(site="x", centre_mm=(0.0, 0.0, -200.0), diameter_mm=10), geometry
        )
