"""Synthetic chest X-rays: photometry, VOI, compressed syntaxes, lesion boxes and zones, read-back."""

from __future__ import annotations

import io
from datetime import date

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from pydicom.pixels import apply_voi_lut

from agent.testbed.cohort.imaging import (
    Change,
    CxrSpec,
    CxrTruth,
    ImagingPlan,
    PatientIdentity,
    PatientSex,
    Photometric,
    StudyPlan,
    TransferSyntax,
    plan_imaging,
    render_study,
)
from agent.testbed.cohort.imaging.cxr_phantom import (
    CXR_MAX_VALUE,
    CXR_ZONES,
    CxrAnatomy,
    CxrOpacity,
    cxr_phantom,
)

IDS = [f"ca-7-{i}" for i in range(7)]


def identity(patient_id: str) -> PatientIdentity:
    return PatientIdentity(
        patient_id=patient_id,
        family="Testperson",
        given="Bo",
        birth_date=date(1958, 11, 30),
        sex=PatientSex.MALE,
    )


@pytest.fixture(scope="module")
def plan() -> ImagingPlan:
    return plan_imaging(IDS, seed=7)


def cxr_studies(plan: ImagingPlan) -> list[StudyPlan]:
    return [s for s in plan.studies if isinstance(s.spec, CxrSpec)]


def spec_of(study: StudyPlan) -> CxrSpec:
    assert isinstance(study.spec, CxrSpec)
    return study.spec


def truth_of(study: StudyPlan) -> CxrTruth:
    assert isinstance(study.truth, CxrTruth)
    return study.truth


@pytest.fixture(scope="module")
def rendered(plan: ImagingPlan) -> dict[str, pydicom.Dataset]:
    """Every chest X-ray of the plan, written and read back, by study key and patient."""
    out: dict[str, pydicom.Dataset] = {}
    for study in cxr_studies(plan):
        (instance,) = render_study(study, identity(study.patient_id))
        out[f"{study.patient_id}/{study.key}"] = pydicom.dcmread(io.BytesIO(instance.data))
    return out


def find(plan: ImagingPlan, predicate: str) -> list[StudyPlan]:
    return [s for s in cxr_studies(plan) if predicate in f"{s.patient_id}/{s.key}"]


def as_monochrome2(ds: pydicom.Dataset) -> NDArray[np.int64]:
    """Stored values with MONOCHROME1 undone, so that dense is high in every image."""
    values = ds.pixel_array.astype(np.int64)
    return CXR_MAX_VALUE - values if ds.PhotometricInterpretation == "MONOCHROME1" else values


def test_plan_has_pairs_with_both_photometries_a_voi_lut_and_compressed_syntaxes(plan: ImagingPlan) -> None:
    studies = cxr_studies(plan)
    assert len(studies) >= 8
    assert {spec_of(s).photometric for s in studies} == {Photometric.MONOCHROME1, Photometric.MONOCHROME2}
    assert {spec_of(s).voi.value for s in studies} == {"window", "lut"}
    syntaxes = {s.series[0].transfer_syntax for s in studies}
    assert {TransferSyntax.RLE_LOSSLESS, TransferSyntax.JPEG_2000_LOSSLESS} <= syntaxes
    assert any(spec_of(s).rows != spec_of(s).columns for s in studies)
    assert {s.change for s in studies if s.change} == {Change.IMPROVED, Change.STABLE, Change.WORSENED}
    for prior, current in plan.pairs():
        if isinstance(current.spec, CxrSpec):
            assert prior.study_date < current.study_date
            assert prior.patient_id == current.patient_id


def test_every_file_reads_back_with_12_bit_non_square_pixels(
    plan: ImagingPlan, rendered: dict[str, pydicom.Dataset]
) -> None:
    for study in cxr_studies(plan):
        ds = rendered[f"{study.patient_id}/{study.key}"]
        spec = spec_of(study)
        pixels = ds.pixel_array
        assert pixels.shape == (spec.rows, spec.columns)
        assert spec.rows != spec.columns
        assert (ds.BitsStored, ds.BitsAllocated, ds.PixelRepresentation) == (12, 16, 0)
        assert int(pixels.max()) <= CXR_MAX_VALUE
        assert ds.Modality in ("CR", "DX")
        assert ds.file_meta.TransferSyntaxUID == str(study.series[0].transfer_syntax)
        assert ds.PatientID == study.patient_id
        assert ds.ViewPosition == "PA"
        assert "WindowCenter" in ds or "VOILUTSequence" in ds
        assert apply_voi_lut(pixels, ds).shape == pixels.shape


def test_monochrome1_stores_air_bright_and_is_the_inverted_image(
    plan: ImagingPlan, rendered: dict[str, pydicom.Dataset]
) -> None:
    for study in cxr_studies(plan):
        ds = rendered[f"{study.patient_id}/{study.key}"]
        spec = spec_of(study)
        corner = float(ds.pixel_array[:40, :40].mean())  # air beside the neck
        if spec.photometric is Photometric.MONOCHROME1:
            assert ds.PhotometricInterpretation == "MONOCHROME1"
            assert corner > 3500
        else:
            assert corner < 600
        syntax = study.series[0].transfer_syntax
        if (
            spec.photometric is Photometric.MONOCHROME1
            or syntax is not TransferSyntax.EXPLICIT_VR_LITTLE_ENDIAN
        ):
            expected = cxr_phantom(
                spec.rows, spec.columns, spec.pixel_spacing_mm, spec.anatomy, spec.opacities, spec.noise_seed
            ).values
            # Inverted exactly, and lossless whatever the syntax: decoded pixels are the phantom's.
            assert np.array_equal(as_monochrome2(ds), expected)


def test_lesion_box_is_inside_and_denser_than_its_surroundings(
    plan: ImagingPlan, rendered: dict[str, pydicom.Dataset]
) -> None:
    boxes = 0
    for study in cxr_studies(plan):
        image = as_monochrome2(rendered[f"{study.patient_id}/{study.key}"]).astype(np.float64)
        for finding in truth_of(study).findings:
            y0, x0, y1, x1 = finding.box.as_list()
            assert 0 <= y0 < y1 <= image.shape[0]
            assert 0 <= x0 < x1 <= image.shape[1]
            h, w = y1 - y0, x1 - x0
            core = image[y0 + h // 3 : y1 - h // 3, x0 + w // 3 : x1 - w // 3].mean()
            ring = np.concatenate(
                [
                    image[y0 - h // 2 : y0, x0:x1].ravel(),
                    image[y1 : y1 + h // 2, x0:x1].ravel(),
                    image[y0:y1, x0 - w // 2 : x0].ravel(),
                    image[y0:y1, x1 : x1 + w // 2].ravel(),
                ]
            ).mean()
            assert core - ring > 40, (
                f"{study.patient_id}/{study.key}: opacity not visible ({core:.0f} vs {ring:.0f})"
            )
            boxes += 1
    assert boxes >= 5


def test_anatomy_labels_are_zones_on_the_right_side_of_a_pa_image(plan: ImagingPlan) -> None:
    for study in cxr_studies(plan):
        columns = spec_of(study).columns
        for finding in truth_of(study).findings:
            assert finding.anatomy in CXR_ZONES
            centre_x = (finding.box.x0 + finding.box.x1) / 2
            # PA view: the patient's right lung is on the image's left.
            assert (centre_x < columns / 2) == finding.anatomy.startswith("right")


def test_changes_match_the_planned_opacity_sizes(plan: ImagingPlan) -> None:
    for prior, current in plan.pairs():
        if not isinstance(current.spec, CxrSpec):
            continue
        before = sum(f.diameter_mm for f in truth_of(prior).findings)
        after = sum(f.diameter_mm for f in truth_of(current).findings)
        expected = Change.WORSENED if after > before else Change.IMPROVED if after < before else Change.STABLE
        assert current.change is expected, current.patient_id


def test_cxr_is_deterministic_and_the_opacity_is_the_only_difference() -> None:
    anatomy = CxrAnatomy()
    opacity = (CxrOpacity(zone="right mid lung zone", diameter_mm=20),)
    a = cxr_phantom(320, 256, 1.4, anatomy, opacity, noise_seed=5)
    b = cxr_phantom(320, 256, 1.4, anatomy, opacity, noise_seed=5)
    clear = cxr_phantom(320, 256, 1.4, anatomy, (), noise_seed=5)
    assert np.array_equal(a.values, b.values)
    y0, x0, y1, x1 = a.findings[0].box.as_list()
    differs = a.values.astype(int) != clear.values.astype(int)
    inside = np.zeros_like(differs)
    inside[max(y0 - 3, 0) : y1 + 3, max(x0 - 3, 0) : x1 + 3] = True  # the 2-pixel blur kernel spills a little
    assert differs[inside].any()
    assert not differs[~inside].any()


def test_unknown_zone_and_oversized_opacity_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown chest X-ray zone 'left apex'"):
        cxr_phantom(128, 96, 3.0, CxrAnatomy(), (CxrOpacity(zone="left apex", diameter_mm=10),), 1)
    with pytest.raises(ValueError, match="does not fit"):
        cxr_phantom(
            64, 64, 0.35, CxrAnatomy(), (CxrOpacity(zone="right upper lung zone", diameter_mm=10),), 1
        )
