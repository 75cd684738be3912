"""A dicomized synthetic slide STOWed into a real Orthanc and prepared over DICOMweb with wsidicom."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydantic import SecretStr
from pydicom.uid import generate_uid
from typer.testing import CliRunner

import agent.cli.imaging  # noqa: F401  (registers the `imaging` commands)
from agent.cli.app import app
from agent.connections import open_dicomweb_client
from agent.settings import Settings
from agent.testbed.cohort.imaging.wsi_synth import SlideTruth, dicomize, make_slide_tiff
from agent.testbed.stack import OrthancServer
from tools.imaging.dicomweb import BasicAuth, DicomWebAuthError, DicomWebClient
from tools.imaging.prepare import prepare
from tools.imaging.selection import ImagingTask
from tools.imaging.wsi import SlideError, prepare_slide_dicom, prepare_slide_file
from tools.imaging.wsi_web import prepare_slide_dicomweb

pytestmark = pytest.mark.integration

OrthancFactory = Callable[..., OrthancServer]


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


class _Recording(httpx.AsyncBaseTransport):
    """A real transport that notes each request's path and Authorization header."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str, str | None]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.url.path, request.headers.get("authorization")))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


USER, PASSWORD = "wsi-reader", SecretStr("wsi-pw-in-settings-only")


@pytest.fixture(scope="module")
def guarded(
    slide: SlideTruth, orthanc_factory: OrthancFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, str]:
    """An Orthanc that wants basic auth, holding the slide: (DICOMweb URL, study UID, series UID)."""
    server = orthanc_factory(username=USER, password=PASSWORD)
    study_uid, series_uid = str(generate_uid()), str(generate_uid())
    files = dicomize(
        slide.path,
        tmp_path_factory.mktemp("wsi-auth") / "dcm",
        patient_id="wsi-it-3",
        study_uid=study_uid,
        series_uid=series_uid,
    )

    async def store() -> None:
        async with DicomWebClient(server.dicomweb_url, auth=BasicAuth(USER, PASSWORD)) as writer:
            assert (await writer.store(f.read_bytes() for f in files)).ok

    asyncio.run(store())
    return server.dicomweb_url, study_uid, series_uid


async def test_configured_credentials_go_with_every_frame_request(guarded: tuple[str, str, str]) -> None:
    """One client for WSI too: the settings' basic auth is on every request, frames included."""
    url, study_uid, series_uid = guarded
    async with DicomWebClient(url) as anonymous:
        with pytest.raises(DicomWebAuthError, match="HTTP 401"):
            await prepare_slide_dicomweb(anonymous, study_uid, series_uid)

    settings = Settings(dicomweb_username=USER, dicomweb_password=PASSWORD)
    recording = _Recording()
    async with open_dicomweb_client(url, settings) as configured:
        expected = await BasicAuth(USER, PASSWORD).authorization(configured._http, url)
        async with DicomWebClient(url, auth=configured.auth, transport=recording) as client:
            result = await prepare(f"dicomweb:{study_uid}", ImagingTask.WSI, dicomweb=client)
    done = result.one()
    assert (done.selected.study_uid, done.selected.series_uid) == (study_uid, series_uid)
    assert len(done.slide.metadata.patches) >= 2
    frames = [auth for path, auth in recording.seen if "/frames/" in path]
    assert len(frames) >= 2  # the transfer-syntax probe and the tiles
    assert {auth for _, auth in recording.seen} == {expected}


def test_the_command_reads_slides_with_the_settings_credentials(
    guarded: tuple[str, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, study_uid, series_uid = guarded
    monkeypatch.setenv("CHARTAGENT_DICOMWEB_USERNAME", USER)
    monkeypatch.setenv("CHARTAGENT_DICOMWEB_PASSWORD", PASSWORD.get_secret_value())
    out = tmp_path / "slide.npz"
    args = [
        "imaging",
        "prepare",
        "wsi",
        f"dicomweb:{study_uid}",
        "--dicomweb-url",
        url,
        "--out",
        str(out),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads(result.stdout)["metadata"]
    assert (meta["study_uid"], meta["series_uid"]) == (study_uid, series_uid)
    assert np.load(out)["images"].shape[0] == len(meta["patches"]) >= 2
    monkeypatch.delenv("CHARTAGENT_DICOMWEB_PASSWORD")
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2
    assert "HTTP 401" in refused.stderr
