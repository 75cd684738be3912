"""Real DICOM from pydicom's test files and pydicom-data through the pipeline.

Lossless encodings of the same image (native, RLE, JPEG-LS, JPEG 2000, big endian) must prepare
to identical pixels; lossy ones must decode and prepare.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from imaging_series import chest_xray, set_pixels
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from tools.imaging.ct import prepare_ct, window_hu
from tools.imaging.cxr import prepare_cxr
from tools.imaging.errors import DicomFileError
from tools.imaging.mri import prepare_mri
from tools.imaging.prepared import PreparedImages
from tools.imaging.volume import Instance, Volume, assemble


def test_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    assert found is not None, f"{name} is not installed (pydicom / pydicom-data)"
    return Path(found)


test_file.__test__ = False  # type: ignore[attr-defined]


def volume_of(*names: str) -> Volume:
    instances = [Instance(str(test_file(n)), pydicom.dcmread(test_file(n))) for n in names]
    return assemble(instances).select(names[0])


def mri(name: str) -> PreparedImages:
    return prepare_mri(volume_of(name), source=name)


@pytest.mark.parametrize(
    "name",
    [
        "emri_small_RLE.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_big_endian.dcm",
    ],
)
def test_enhanced_mr_encodings_prepare_identically(name: str) -> None:
    reference = mri("emri_small.dcm")
    assert reference.images.shape == (10, 64, 64, 3)
    assert np.array_equal(mri(name).images, reference.images)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
    ],
)
def test_mr_encodings_prepare_identically(name: str) -> None:
    assert np.array_equal(mri(name).images, mri("MR_small.dcm").images)


def test_enhanced_ct_multi_frame() -> None:
    volume = volume_of("eCT_Supplemental.dcm")
    assert len(volume) == 2
    assert volume.order == "position"
    prepared = prepare_ct(volume, source="eCT")
    ds = pydicom.dcmread(test_file("eCT_Supplemental.dcm"))
    pvt = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    frames = ds.pixel_array
    by_frame = {s.frame: k for k, s in enumerate(volume.slices)}
    for frame in (0, 1):
        hu = frames[frame].astype(np.float64) * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept)
        assert np.array_equal(prepared.images[by_frame[frame]], window_hu(hu))


def test_large_monochrome1_cr_native_and_jpeg2000_lossless_agree() -> None:
    native = prepare_cxr(volume_of("RG1_UNCR.dcm"), source="RG1")
    j2k = prepare_cxr(volume_of("RG1_J2KR.dcm"), source="RG1")
    assert native.images.shape == (1, 1955, 1955, 3)
    assert native.metadata.inverted
    assert native.metadata.windows[0].name == "window"
    padding = native.metadata.padding
    assert padding is not None
    assert (padding.left, padding.right, padding.top) == (57, 57, 0)
    assert np.array_equal(native.images, j2k.images)
    # Lossy JPEG 2000 of the same image: close, not equal.
    lossy = prepare_cxr(volume_of("RG1_J2KI.dcm"), source="RG1")
    diff = np.abs(lossy.images.astype(int) - native.images.astype(int))
    assert diff.mean() < 2.0


def test_jpeg_baseline_greyscale_cr() -> None:
    rng = np.random.default_rng(0)
    grey = (np.add.outer(np.arange(64), np.arange(48)) * 2 + rng.integers(0, 8, (64, 48))).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buffer, format="JPEG", quality=95)
    ds = chest_xray(64, 48, modality="CR")
    set_pixels(ds, grey)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    volume = assemble([Instance("jpeg.dcm", ds)]).select("t")
    decoded = volume.stored(0)
    pil_decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
    assert np.abs(decoded.astype(int) - pil_decoded.astype(int)).max() <= 2
    assert prepare_cxr(volume, source="jpeg.dcm").images.shape == (1, 64, 64, 3)


def test_jpeg_ls_near_lossless_decodes() -> None:
    ds = pydicom.dcmread(test_file("JPEGLSNearLossless_16.dcm"))
    ds.SeriesInstanceUID = ds.get("SeriesInstanceUID") or "1.2.3.4"
    ds.Modality = "MR"
    volume = assemble([Instance("jls.dcm", ds)]).select("t")
    assert prepare_mri(volume, source="jls").images.shape == (1, 50, 10, 3)


@pytest.mark.parametrize("name", ["liver.dcm", "test-SR.dcm", "reportsi.dcm"])
def test_real_non_image_objects_are_skipped(name: str) -> None:
    ds = pydicom.dcmread(test_file(name))
    assembly = assemble([Instance(name, ds)])
    assert assembly.volumes == ()
    assert assembly.skipped[0].reason.startswith("not an image")


def test_truncated_real_file_is_an_error_naming_it() -> None:
    path = test_file("MR_truncated.dcm")
    volume = assemble([Instance(str(path), pydicom.dcmread(path))]).select("t")
    with pytest.raises(DicomFileError) as info:
        prepare_mri(volume, source="t")
    assert info.value.origin == str(path)


def test_colour_image_is_refused_by_name() -> None:
    path = test_file("SC_rgb_jpeg_dcmtk.dcm")
    ds = pydicom.dcmread(path)
    ds.Modality = "CT"
    volume = assemble([Instance(str(path), ds)]).select("t")
    with pytest.raises(DicomFileError, match="expected one greyscale frame"):
        prepare_ct(volume, source="t")
