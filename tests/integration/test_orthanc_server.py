"""The embedded Orthanc as a process: generated config, auth, port clashes, restarts on the same
storage, a missing installation, and logs without patient data."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pydicom
import pytest
from pydantic import SecretStr
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from agent.testbed.stack import OrthancServer, OrthancSpec, StackError
from agent.testbed.stack.orthanc import build_stack_shim, orthanc_config
from agent.testbed.stack.ports import free_port
from tools.imaging.dicomweb import BasicAuth, DicomWebAuthError, DicomWebClient

pytestmark = pytest.mark.integration

OrthancFactory = Callable[..., OrthancServer]
PATIENT_NAME = "Zyxwv^Secretpatient"
PATIENT_ID = "PID-98765-SECRET"


def ct_instance(patient_name: str = PATIENT_NAME) -> tuple[pydicom.Dataset, bytes]:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (
        generate_uid(),
        generate_uid(),
        generate_uid(),
    )
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName = patient_name
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19420317"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return ds, buf.getvalue()


def test_config_is_loopback_quiet_and_carries_the_plugins(tmp_path: Path) -> None:
    spec = OrthancSpec(port=18042, state_dir=tmp_path, username="ca", password=SecretStr("pw"))
    config = orthanc_config(spec)
    assert config["RemoteAccessAllowed"] is False
    assert config["HttpVerbose"] is False
    assert config["DeidentifyLogs"] is True
    assert config["DicomServerEnabled"] is False
    assert config["AuthenticationEnabled"] is True
    assert config["RegisteredUsers"] == {"ca": "pw"}
    assert config["DicomWeb"]["Root"] == "/dicom-web/"
    assert [Path(p).name for p in config["Plugins"]] == [
        "libOrthancDicomWeb.so",
        "libOrthancGdcm.so",
        "libOrthancWSI.so",
    ]
    assert config["StorageDirectory"].startswith(str(tmp_path.resolve()))
    assert spec.dicomweb_url == "http://127.0.0.1:18042/dicom-web"
    assert "pw" not in repr(spec)
    with pytest.raises(ValueError, match="both username and password"):
        OrthancSpec(port=1, state_dir=tmp_path, username="ca")
    with pytest.raises(ValueError, match="loopback"):
        OrthancSpec(port=1, state_dir=tmp_path, host="0.0.0.0")


def test_missing_orthanc_says_how_to_install_it(tmp_path: Path) -> None:
    spec = OrthancSpec(port=free_port(), state_dir=tmp_path, executable=tmp_path / "Orthanc")
    with pytest.raises(StackError, match=r"Orthanc not found at .*apt-get install orthanc orthanc-dicomweb"):
        OrthancServer(spec).start()
    spec = OrthancSpec(port=free_port(), state_dir=tmp_path, plugins_dir=tmp_path)
    with pytest.raises(StackError, match=r"libOrthancDicomWeb\.so.* missing .*apt-get install"):
        OrthancServer(spec).start()


def test_basic_auth_refuses_requests_without_credentials(orthanc_factory: OrthancFactory) -> None:
    server = orthanc_factory(username="chartagent", password=SecretStr("s3cret-pw"))
    assert server.healthy()
    assert httpx.get(f"{server.dicomweb_url}/studies", timeout=5).status_code == 401
    assert (
        httpx.get(f"{server.dicomweb_url}/studies", auth=("chartagent", "wrong"), timeout=5).status_code
        == 401
    )
    ok = httpx.get(f"{server.dicomweb_url}/studies", auth=("chartagent", "s3cret-pw"), timeout=5)
    assert ok.status_code == 200


async def test_dicomweb_client_with_basic_auth(orthanc_factory: OrthancFactory) -> None:
    server = orthanc_factory(username="chartagent", password=SecretStr("s3cret-pw"))
    ds, data = ct_instance()
    async with DicomWebClient(server.dicomweb_url) as anonymous:
        with pytest.raises(DicomWebAuthError, match="POST studies -> HTTP 401"):
            await anonymous.store([data])
    auth = BasicAuth("chartagent", SecretStr("s3cret-pw"))
    async with DicomWebClient(server.dicomweb_url, auth=auth) as c:
        assert (await c.store([data])).ok
        assert await c.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == data


def test_port_in_use_is_a_clear_error(orthanc_factory: OrthancFactory, tmp_path: Path) -> None:
    running = orthanc_factory()
    clash = OrthancServer(OrthancSpec(port=running.spec.port, state_dir=tmp_path))
    with pytest.raises(StackError, match=f"port {running.spec.port} is already in use"):
        clash.start()
    assert running.healthy()


def test_another_orthanc_on_the_port_is_not_taken_for_ours(orthanc_factory: OrthancFactory) -> None:
    running = orthanc_factory()
    impostor = OrthancServer(running.spec.model_copy(update={"name": "someone-else"}), pid=running.pid)
    assert running.healthy()
    assert not impostor.healthy()


async def test_restart_on_the_same_storage_keeps_the_data(tmp_path: Path) -> None:
    ds, data = ct_instance()
    first = OrthancServer(OrthancSpec(port=free_port(), state_dir=tmp_path))
    first.start()
    try:
        async with DicomWebClient(first.dicomweb_url) as c:
            assert (await c.store([data])).ok
    finally:
        first.stop()
    assert not first.alive()
    assert not (tmp_path / "orthanc.pid").exists()
    second = OrthancServer(OrthancSpec(port=free_port(), state_dir=tmp_path))
    second.start()
    try:
        async with DicomWebClient(second.dicomweb_url) as c:
            found = await c.search_instances(ds.StudyInstanceUID, ds.SeriesInstanceUID)
        assert [i.sop_instance_uid for i in found] == [ds.SOPInstanceUID]
    finally:
        second.stop()


def test_a_live_orthanc_on_the_same_storage_blocks_a_second_one(tmp_path: Path) -> None:
    first = OrthancServer(OrthancSpec(port=free_port(), state_dir=tmp_path))
    first.start()
    try:
        second = OrthancServer(OrthancSpec(port=free_port(), state_dir=tmp_path))
        with pytest.raises(StackError, match=rf"an Orthanc \(pid {first.pid}\) still uses"):
            second.start(previous_exit_timeout_s=1.0)
        assert first.healthy()
    finally:
        first.stop()


async def test_logs_and_state_files_hold_no_patient_data(orthanc_factory: OrthancFactory) -> None:
    server = orthanc_factory(username="u", password=SecretStr("pw-in-config-only"))
    ds, data = ct_instance()
    async with DicomWebClient(server.dicomweb_url, auth=BasicAuth("u", SecretStr("pw-in-config-only"))) as c:
        assert (await c.store([data])).ok
        found = await c.search_studies({"PatientID": PATIENT_ID})
        await c.search_studies({"PatientName": "Zyxwv*"})
        assert [s.study_instance_uid for s in found] == [ds.StudyInstanceUID]
        await c.retrieve_metadata(ds.StudyInstanceUID)
        # A bad query: errors are logged too.
        await c.search_studies({"PatientBirthDate": "1942-garbage"})
    log = server.spec.log_path.read_text()
    for secret in ("Zyxwv", "Secretpatient", PATIENT_ID, "19420317", "pw-in-config-only"):
        assert secret not in log
    config = server.spec.config_path
    assert config.stat().st_mode & 0o777 == 0o600
    assert json.loads(config.read_text())["RegisteredUsers"] == {"u": "pw-in-config-only"}


async def test_decoding_jpeg2000_frames_does_not_crash_orthanc(orthanc_factory: OrthancFactory) -> None:
    """Without the thread-stack shim this kills Orthanc within a few requests (civetweb's
    100 KiB worker stacks overflow in GDCM's JPEG 2000 decoder)."""
    server = orthanc_factory()
    assert server.pid is not None
    maps = Path(f"/proc/{server.pid}/maps").read_text()  # noqa: ASYNC240 (procfs, instant)
    assert "thread-stack-8192k.so" in maps
    path = get_testdata_file("emri_small_jpeg_2k_lossless.dcm")
    assert path is not None
    original = pydicom.dcmread(path)
    async with DicomWebClient(server.dicomweb_url) as c:
        for _ in range(10):
            ds = original.copy()
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (
                generate_uid(),
                generate_uid(),
                generate_uid(),
            )
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            assert (await c.store([buf.getvalue()])).ok
            frames = await c.retrieve_frames(
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, list(range(1, 11))
            )
            assert len(frames) == 10
    assert server.healthy()


def test_stack_shim_needs_a_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match=r"no C compiler .*apt-get install gcc"):
        build_stack_shim(tmp_path, 1024)
