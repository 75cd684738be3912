"""`chartagent imaging prepare|overlay` end to end: folders with bad files and several series,
DICOMweb against a real Orthanc on loopback, box overlays."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result
from unit import imaging_series

import agent.cli.imaging  # noqa: F401  (registers the `imaging` commands)
from agent.cli.app import app
from tools.imaging.dicomweb import DicomWebClient
from tools.imaging.prepared import load_npz

pytestmark = pytest.mark.integration


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, ["imaging", *args])


@pytest.fixture
def mixed_folder(tmp_path: Path) -> tuple[Path, str, str]:
    """A CT series, an MR series, an SR, a truncated CT file and a non-DICOM file in one folder."""
    folder = tmp_path / "mixed"
    ct = imaging_series.ct_series(40, seed=1)
    mr = imaging_series.mr_series(6, seed=2)
    imaging_series.write_series(folder, ct, prefix="ct")
    imaging_series.write_series(folder, mr, prefix="mr")
    imaging_series.write_series(folder, [imaging_series.non_image("SR")], prefix="sr")
    broken = imaging_series.write_series(folder, imaging_series.ct_series(1, seed=9), prefix="cut")[0]
    broken.write_bytes(broken.read_bytes()[:-500])
    (folder / "notes.txt").write_text("not DICOM")
    return folder, str(ct[0].SeriesInstanceUID), str(mr[0].SeriesInstanceUID)


def test_ct_from_a_mixed_folder_goes_on_and_lists_failures(
    mixed_folder: tuple[Path, str, str], tmp_path: Path
) -> None:
    folder, ct_uid, _ = mixed_folder
    out = tmp_path / "ct.npz"
    result = invoke("prepare", "ct", str(folder), "--out", str(out), "--json")
    assert result.exit_code == 1, result.output  # prepared, but some inputs failed
    report = json.loads(result.stdout)
    (prepared,) = report["prepared"]
    assert prepared["series_uid"] == ct_uid
    assert prepared["shape"] == [40, 32, 32, 3]
    failed = {Path(f["input"]).name: f["reason"] for f in report["failures"]}
    assert set(failed) == {"cut00000.dcm", "notes.txt"}
    assert "truncated" in failed["cut00000.dcm"]
    assert [Path(s["origin"]).name for s in report["skipped"]] == ["sr00000.dcm"]
    loaded = load_npz(out)
    assert loaded.images.shape == (40, 32, 32, 3)
    assert loaded.metadata.series_uid == ct_uid


def test_wrong_modality_and_unknown_series_are_clear_errors(
    mixed_folder: tuple[Path, str, str], tmp_path: Path
) -> None:
    folder, _, mr_uid = mixed_folder
    result = invoke("prepare", "ct", str(folder), "--series", mr_uid, "--out", str(tmp_path / "x.npz"))
    assert result.exit_code == 2
    assert f"series {mr_uid}: modality MR does not fit the ct preparation" in result.output
    result = invoke("prepare", "cxr", str(folder), "--out", str(tmp_path / "x.npz"))
    assert result.exit_code == 2
    assert "no CR/DX series; found" in result.output
    result = invoke("prepare", "mri", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.npz"))
    assert result.exit_code == 2
    assert "nowhere: no such file or folder" in result.output
    assert not (tmp_path / "x.npz").exists()


def test_several_ct_series_need_a_choice_or_all_series(tmp_path: Path) -> None:
    folder = tmp_path / "two"
    a = imaging_series.ct_series(5, seed=1)
    b = imaging_series.ct_series(7, seed=2)
    imaging_series.write_series(folder, a, prefix="a")
    imaging_series.write_series(folder, b, prefix="b")
    result = invoke("prepare", "ct", str(folder), "--out", str(tmp_path / "x.npz"))
    assert result.exit_code == 2
    assert "2 CT series; choose one with --series or pass --all-series" in result.output
    assert str(a[0].SeriesInstanceUID) in result.output
    out = tmp_path / "all"
    result = invoke("prepare", "ct", str(folder), "--all-series", "--out", str(out))
    assert result.exit_code == 0, result.output
    shapes = {p.stem: load_npz(p).images.shape[0] for p in out.glob("*.npz")}
    assert shapes == {str(a[0].SeriesInstanceUID): 5, str(b[0].SeriesInstanceUID): 7}
    one = tmp_path / "b.npz"
    result = invoke("prepare", "ct", str(folder), "--series", str(b[0].SeriesInstanceUID), "--out", str(one))
    assert result.exit_code == 0
    assert load_npz(one).images.shape[0] == 7


def test_dicomweb_source_prepares_the_same_pixels_as_the_files(
    dicomweb_base_url: str, tmp_path: Path
) -> None:
    series = imaging_series.ct_series(12, seed=4)
    paths = imaging_series.write_series(tmp_path / "local", series)

    async def store() -> None:
        async with DicomWebClient(dicomweb_base_url) as client:
            result = await client.store([p.read_bytes() for p in paths])
            assert not result.failed

    asyncio.run(store())
    study, uid = str(series[0].StudyInstanceUID), str(series[0].SeriesInstanceUID)
    remote = tmp_path / "remote.npz"
    result = invoke(
        "prepare", "ct", f"dicomweb:{study}/{uid}", "--dicomweb-url", dicomweb_base_url, "--out", str(remote)
    )
    assert result.exit_code == 0, result.output
    local = tmp_path / "local.npz"
    assert invoke("prepare", "ct", str(tmp_path / "local"), "--out", str(local)).exit_code == 0
    assert np.array_equal(load_npz(remote).images, load_npz(local).images)
    assert load_npz(remote).metadata.slices[0].origin.startswith(f"dicomweb:{study}/{uid}/")


def test_cxr_overlay_draws_boxes_in_original_pixels(tmp_path: Path) -> None:
    folder = tmp_path / "cxr"
    imaging_series.write_series(
        folder, [imaging_series.chest_xray(120, 80, stored=np.zeros((120, 80), np.uint16))]
    )
    npz = tmp_path / "cxr.npz"
    assert invoke("prepare", "cxr", str(folder), "--out", str(npz)).exit_code == 0
    assert load_npz(npz).images.shape == (1, 120, 120, 3)
    png = tmp_path / "boxes.png"
    boxes = json.dumps([{"box": [60, 20, 100, 60], "label": ""}])
    result = invoke("overlay", str(npz), "--boxes", boxes, "--out", str(png))
    assert result.exit_code == 0, result.output
    drawn = np.asarray(Image.open(png))
    assert drawn.shape == (120, 80, 3)  # the padding is cut away: original pixel space
    assert tuple(drawn[60, 40]) != (0, 0, 0)  # top edge of the box
    assert tuple(drawn[80, 40]) == (0, 0, 0)  # inside stays as it was
    bad = invoke("overlay", str(npz), "--boxes", '[{"box": [500, 500, 600, 600]}]', "--out", str(png))
    assert bad.exit_code == 2
    assert "empty once ordered and clipped to the 120x80 image" in bad.output
    notnpz = tmp_path / "x.npz"
    notnpz.write_bytes(b"junk")
    bad = invoke("overlay", str(notnpz), "--boxes", "[]", "--out", str(png))
    assert bad.exit_code == 2
    assert f"{notnpz}: cannot read as .npz" in bad.output
