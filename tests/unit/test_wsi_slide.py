"""Known-answer patch grids on synthetic slides: TIFF through OpenSlide, and its DICOM WSI through wsidicom.

The slide's islands are known exactly (`SlideTruth`), so the tissue fraction of every 10X grid
cell is known; the prepared patches must be exactly the cells that are mostly tissue.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray

from agent.testbed.cohort.imaging.wsi_synth import (
    SlideTruth,
    dicomize,
    dicomizer_args,
    make_slide_tiff,
    slide_dataset,
)
from tools.imaging.errors import ImagingError
from tools.imaging.prepared import IMAGES_KEY, METADATA_KEY
from tools.imaging.tissue import saturation
from tools.imaging.wsi import (
    OpenSlideReader,
    PatchParams,
    PreparedSlide,
    SlideError,
    SlideMetadata,
    patch_tissue_fractions,
    prepare_slide_dicom,
    prepare_slide_file,
)

STUDY_UID = "1.2.826.0.1.3680043.8.498.1001"
SERIES_UID = "1.2.826.0.1.3680043.8.498.1001.1"
# Cells whose true tissue fraction is this close to the 50% threshold may go either way
# (the thumbnail mask is 8 um/px); every other cell has one right answer.
AMBIGUITY = 0.06


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> SlideTruth:
    """20X (0.5 um/px), 12288 x 8192, levels 1/2/8: level 1 is exactly 10X, a 4 x 6 grid of patches."""
    path = tmp_path_factory.mktemp("wsi") / "slide.tif"
    return make_slide_tiff(path, seed=3, size=(12288, 8192), mpp=0.5, downsamples=(1, 2, 8), n_islands=4)


@pytest.fixture(scope="module")
def prepared(slide: SlideTruth) -> PreparedSlide:
    return prepare_slide_file(slide.path)


@pytest.fixture(scope="module")
def dicom_dir(slide: SlideTruth, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wsi-dcm")
    dicomize(slide.path, out, patient_id="wsi-unit-1", study_uid=STUDY_UID, series_uid=SERIES_UID)
    return out


def _true_fractions(slide: SlideTruth, meta: SlideMetadata) -> NDArray[np.float64]:
    """Exact tissue fraction of every 10X grid cell, from the islands' shapes."""
    downsample = 8.0
    mask = slide.tissue_mask(downsample)
    rows, cols = meta.grid
    return patch_tissue_fractions(mask, meta.patch_px * meta.level_downsample / downsample, rows, cols)


def test_slide_file_is_a_pyramid_openslide_reads(slide: SlideTruth) -> None:
    reader = OpenSlideReader(slide.path)
    try:
        levels = reader.levels()
    finally:
        reader.close()
    assert [(lv.width, lv.height) for lv in levels] == [(12288, 8192), (6144, 4096), (1536, 1024)]
    assert [lv.mpp for lv in levels] == pytest.approx([0.5, 1.0, 4.0])


def test_slide_is_deterministic(slide: SlideTruth, tmp_path: Path) -> None:
    again = make_slide_tiff(
        tmp_path / "again.tif", seed=3, size=(12288, 8192), mpp=0.5, downsamples=(1, 2, 8), n_islands=4
    )
    assert again.islands == slide.islands
    assert again.path.read_bytes() == slide.path.read_bytes()


def test_islands_are_disjoint_and_inside(slide: SlideTruth) -> None:
    boxes = [(i.x0, i.y0, i.x1, i.y1) for i in slide.islands]
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        assert 0 <= x0 < x1 <= slide.width
        assert 0 <= y0 < y1 <= slide.height
        for ox0, oy0, ox1, oy1 in boxes[k + 1 :]:
            assert x1 <= ox0 or ox1 <= x0 or y1 <= oy0 or oy1 <= y0


def test_patches_are_exactly_the_mostly_tissue_cells(slide: SlideTruth, prepared: PreparedSlide) -> None:
    meta = prepared.metadata
    assert (meta.level, meta.level_mpp, meta.grid) == (1, 1.0, (4, 6))
    assert meta.warnings == []
    truth = _true_fractions(slide, meta)
    chosen = {(p.row, p.col) for p in meta.patches}
    clear_yes = {(r, c) for r, c in np.argwhere(truth >= 0.5 + AMBIGUITY)}
    clear_no = {(r, c) for r, c in np.argwhere(truth < 0.5 - AMBIGUITY)}
    assert clear_yes, "the slide must have cells that are mostly tissue"
    assert clear_yes <= chosen
    assert not chosen & clear_no
    assert meta.candidates == len(meta.patches) == prepared.images.shape[0]
    for patch in meta.patches:
        assert patch.tissue_fraction == pytest.approx(truth[patch.row, patch.col], abs=AMBIGUITY)


def test_no_patch_on_blank_glass(slide: SlideTruth, prepared: PreparedSlide) -> None:
    side = prepared.metadata.patches[0].size0
    for patch in prepared.metadata.patches:
        x1, y1 = patch.x0 + side, patch.y0 + side
        assert any(patch.x0 < i.x1 and i.x0 < x1 and patch.y0 < i.y1 and i.y0 < y1 for i in slide.islands), (
            f"patch {(patch.row, patch.col)} touches no island"
        )


def test_patch_pixels_show_their_tissue(slide: SlideTruth, prepared: PreparedSlide) -> None:
    """Each image's stained fraction matches the true fraction of its cell: the coordinates are right."""
    truth = _true_fractions(slide, prepared.metadata)
    assert prepared.images.shape[1:] == (896, 896, 3)
    for image, patch in zip(prepared.images, prepared.metadata.patches, strict=True):
        stained = float((saturation(image) > 0.15).mean())
        assert stained == pytest.approx(truth[patch.row, patch.col], abs=0.03)


def test_preparation_is_deterministic(slide: SlideTruth, prepared: PreparedSlide) -> None:
    again = prepare_slide_file(slide.path)
    assert again.metadata == prepared.metadata
    assert np.array_equal(again.images, prepared.images)


def test_at_most_max_patches_evenly_spread(slide: SlideTruth, prepared: PreparedSlide) -> None:
    capped = prepare_slide_file(slide.path, PatchParams(max_patches=3))
    all_cells = [(p.row, p.col) for p in prepared.metadata.patches]
    n = len(all_cells)
    assert n > 3
    assert capped.metadata.candidates == n
    assert [(p.row, p.col) for p in capped.metadata.patches] == [
        all_cells[int((i + 0.5) * n / 3)] for i in range(3)
    ]
    assert capped.metadata.sampling == "evenly spaced in raster order"
    by_cell = {(p.row, p.col): k for k, p in enumerate(prepared.metadata.patches)}
    for image, patch in zip(capped.images, capped.metadata.patches, strict=True):
        assert np.array_equal(image, prepared.images[by_cell[(patch.row, patch.col)]])


def test_slide_without_10x_level_warns(tmp_path: Path) -> None:
    truth = make_slide_tiff(
        tmp_path / "20x.tif", seed=5, size=(4096, 4096), mpp=0.5, downsamples=(1, 4, 16), n_islands=1
    )
    result = prepare_slide_file(truth.path)
    assert (result.metadata.level, result.metadata.level_mpp) == (0, 0.5)
    assert "448 um instead of 896 um" in result.metadata.warnings[0]
    assert result.images.shape[0] >= 1


def test_save_npz_has_the_prepared_images_layout(prepared: PreparedSlide, tmp_path: Path) -> None:
    path = tmp_path / "wsi.npz"
    prepared.save_npz(path)
    with np.load(path, allow_pickle=False) as data:
        assert np.array_equal(data[IMAGES_KEY], prepared.images)
        assert SlideMetadata.model_validate_json(str(data[METADATA_KEY][()])) == prepared.metadata


def test_unreadable_slide_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-slide.tif"
    bogus.write_bytes(b"nothing here")
    with pytest.raises(SlideError, match=r"not-a-slide\.tif") as info:
        prepare_slide_file(bogus)
    assert isinstance(info.value, ImagingError)


def test_dicomizer_command_swaps_imaged_size() -> None:
    args = dicomizer_args(Path("s.tif"), Path("d.json"), Path("out"), width=12288, height=8192, mpp=0.5)
    assert "--imaged-width=4.096000000" in args
    assert "--imaged-height=6.144000000" in args
    assert "--max-size=0" in args
    assert "--openslide" not in args
    assert args[-3:] == ["--folder", "out", "s.tif"]


def test_dataset_sets_identity_and_blanks_sample_patient() -> None:
    base = {
        "PatientID": "C123",
        "PatientName": "SOME^PATIENT",
        "PatientBirthDate": "19700101",
        "FocusMethod": "AUTO",
    }
    dataset = slide_dataset(base, patient_id="p-7", study_uid="1.2.3", series_uid="1.2.3.4")
    assert dataset["PatientID"] == "p-7"
    assert (dataset["StudyInstanceUID"], dataset["SeriesInstanceUID"]) == ("1.2.3", "1.2.3.4")
    assert dataset["PatientName"] == dataset["PatientBirthDate"] == ""
    assert dataset["FocusMethod"] == "AUTO"


def test_dicomized_slide_carries_identity_and_true_spacing(dicom_dir: Path) -> None:
    files = sorted(dicom_dir.glob("*.dcm"))
    assert len(files) == 3  # one instance per level
    for file in files:
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        assert ds.PatientID == "wsi-unit-1"
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == (STUDY_UID, SERIES_UID)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.6"
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
        spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        level_mpp = 0.5 * 12288 / ds.TotalPixelMatrixColumns
        assert [float(s) * 1000 for s in spacing] == pytest.approx([level_mpp, level_mpp], rel=1e-6)
        assert (ds.ImagedVolumeWidth, ds.ImagedVolumeHeight) == pytest.approx((6.144, 4.096))


def test_dicom_wsi_gives_the_same_patches(prepared: PreparedSlide, dicom_dir: Path) -> None:
    from_dicom = prepare_slide_dicom(dicom_dir)
    ours, theirs = prepared.metadata, from_dicom.metadata
    assert (theirs.study_uid, theirs.series_uid) == (STUDY_UID, SERIES_UID)
    assert theirs.level_mpp == pytest.approx(ours.level_mpp)
    assert theirs.grid == ours.grid
    assert [(p.row, p.col, p.x0, p.y0) for p in theirs.patches] == [
        (p.row, p.col, p.x0, p.y0) for p in ours.patches
    ]
    assert [p.tissue_fraction for p in theirs.patches] == pytest.approx(
        [p.tissue_fraction for p in ours.patches], abs=0.01
    )
    # JPEG tiles are copied, but decoders may differ by a few levels; compare with a tolerance.
    diff = np.abs(from_dicom.images.astype(np.int16) - prepared.images.astype(np.int16))
    assert diff.mean() < 1.0
    assert np.percentile(diff, 99.9) <= 8


def test_non_jpeg_tiff_goes_through_openslide(tmp_path: Path) -> None:
    truth = make_slide_tiff(
        tmp_path / "deflate.tif",
        seed=9,
        size=(4096, 2048),
        mpp=0.5,
        downsamples=(1, 4),
        n_islands=2,
        compression="deflate",
    )
    files = dicomize(truth.path, tmp_path / "dcm", patient_id="p", study_uid="1.2.3", series_uid="1.2.3.1")
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert (ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows) == (4096, 2048)
    spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert [float(s) for s in spacing] == pytest.approx([0.0005, 0.0005], rel=1e-6)


def test_missing_dicom_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(SlideError, match="nowhere"):
        prepare_slide_dicom(tmp_path / "nowhere")
