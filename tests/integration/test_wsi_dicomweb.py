"""A dicomized synthetic slide STOWed into a real Orthanc and prepared over DICOMweb with wsidicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from agent.testbed.cohort.imaging.wsi_synth import SlideTruth, dicomize, make_slide_tiff
from tools.imaging.dicomweb import DicomWebClient
from tools.imaging.wsi import SlideError, prepare_slide_dicom, prepare_slide_file
from tools.imaging.wsi_web import prepare_slide_dicomweb

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> SlideTruth:
    path = tmp_path_factory.mktemp("wsi-web") / "slide.tif"
    return make_slide_tiff(path, seed=3, size=(12288, 8192), mpp=0.5, downsamples=(1, 2, 8), n_islands=4)


async def _stow(base_url: str, files: list[Path]) -> None:
    async with DicomWebClient(base_url) as client:
        result = await client.store(f.read_bytes() for f in files)
    assert result.ok, result


async def test_prepared_over_dicomweb_matches_the_file(
    slide: SlideTruth, dicomweb_base_url: str, tmp_path: Path
) -> None:
    study_uid, series_uid = str(generate_uid()), str(generate_uid())
    files = dicomize(
        slide.path, tmp_path / "dcm", patient_id="wsi-it-1", study_uid=study_uid, series_uid=series_uid
    )
    await _stow(dicomweb_base_url, files)

    async with DicomWebClient(dicomweb_base_url) as client:
        web = await prepare_slide_dicomweb(client, study_uid, series_uid)
    local = prepare_slide_dicom(tmp_path / "dcm")
    from_tiff = prepare_slide_file(slide.path)

    meta = web.metadata
    assert meta.source == f"{dicomweb_base_url}/studies/{study_uid}/series/{series_uid}"
    assert (meta.study_uid, meta.series_uid) == (study_uid, series_uid)
    assert meta.level_mpp == pytest.approx(1.0)
    assert len(meta.patches) >= 2
    cells = [(p.row, p.col, p.x0, p.y0) for p in meta.patches]
    assert cells == [(p.row, p.col, p.x0, p.y0) for p in local.metadata.patches]
    assert cells == [(p.row, p.col, p.x0, p.y0) for p in from_tiff.metadata.patches]
    # Same JPEG frames as the local files (image/jpeg, no transcoding): same decoded pixels.
    assert np.array_equal(web.images, local.images)
    diff = np.abs(web.images.astype(np.int16) - from_tiff.images.astype(np.int16))
    assert diff.mean() < 1.0


async def test_concatenated_levels_are_refused_by_name(
    slide: SlideTruth, dicomweb_base_url: str, tmp_path: Path
) -> None:
    """wsidicom 0.36 cannot read concatenation parts over DICOMweb; we say so instead of a bare HTTP 400."""
    study_uid, series_uid = str(generate_uid()), str(generate_uid())
    files = dicomize(
        slide.path,
        tmp_path / "dcm",
        patient_id="wsi-it-2",
        study_uid=study_uid,
        series_uid=series_uid,
        max_size_mb=1,
    )
    assert len(files) > 3  # level 0 split into parts
    await _stow(dicomweb_base_url, files)
    with pytest.raises(SlideError, match=rf"series/{series_uid}: a level is stored as a concatenation"):
        async with DicomWebClient(dicomweb_base_url) as client:
            await prepare_slide_dicomweb(client, study_uid, series_uid)


async def test_unknown_series_is_named(dicomweb_base_url: str) -> None:
    study_uid, series_uid = str(generate_uid()), str(generate_uid())
    with pytest.raises(SlideError, match=rf"studies/{study_uid}/series/{series_uid}: "):
        async with DicomWebClient(dicomweb_base_url) as client:
            await prepare_slide_dicomweb(client, study_uid, series_uid)
