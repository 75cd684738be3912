"""DICOM sources: folders with bad files in them, single files, SOURCE strings, DICOMweb via MockTransport."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from agent.testbed.cohort.imaging.plain_ct import ct_image, part10_bytes
from tools.imaging.dicomweb import DicomWebAuthError, DicomWebClient
from tools.imaging.multipart import build_multipart
from tools.imaging.sources import (
    DicomSourceError,
    DicomWebRef,
    FileSource,
    FolderSource,
    InstanceFailure,
    load_dicomweb,
    load_file,
    load_folder,
    load_source,
    parse_source,
    read_instance,
)


def ct_slice(series_uid: str, study_uid: str, n: int, size: int = 16) -> bytes:
    """A small CT slice (int16 with rescale) as Part 10 bytes."""
    pixels = (np.arange(size * size, dtype=np.int16) + n).reshape(size, size)
    return part10_bytes(ct_image(study_uid, series_uid, n, pixels))


@pytest.fixture
def study_folder(tmp_path: Path) -> Path:
    """Three good slices (one nested), and every kind of bad file beside them."""
    st, se = generate_uid(), generate_uid()
    good = [ct_slice(se, st, n) for n in (1, 2, 3)]
    (tmp_path / "a.dcm").write_bytes(good[0])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.dcm").write_bytes(good[1])
    (tmp_path / "sub" / "c").write_bytes(good[2])  # no extension: found by content
    (tmp_path / "notes.txt").write_text("not DICOM")
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "cut_in_pixels.dcm").write_bytes(good[0][:-100])
    (tmp_path / "cut_in_header.dcm").write_bytes(good[0][:200])
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: skipped
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.dcm").write_bytes(good[0])  # hidden folder: skipped
    return tmp_path


def test_load_folder_keeps_good_instances_and_names_each_bad_file(study_folder: Path) -> None:
    result = load_folder(study_folder)
    assert [Path(i.origin).relative_to(study_folder).as_posix() for i in result.instances] == [
        "a.dcm",
        "sub/b.dcm",
        "sub/c",
    ]
    assert [i.dataset.InstanceNumber for i in result.instances] == [1, 2, 3]
    reasons = {Path(f.origin).name: f.reason for f in result.failures}
    assert set(reasons) == {"notes.txt", "empty.dcm", "cut_in_pixels.dcm", "cut_in_header.dcm"}
    assert "not a DICOM Part 10 file" in reasons["notes.txt"]
    assert "not a DICOM Part 10 file" in reasons["empty.dcm"]
    assert "truncated" in reasons["cut_in_pixels.dcm"]
    assert "(7FE0,0010)" in reasons["cut_in_pixels.dcm"]
    assert "truncated" in reasons["cut_in_header.dcm"] or "no SOPInstanceUID" in reasons["cut_in_header.dcm"]


def test_load_folder_without_pixels(study_folder: Path) -> None:
    result = load_folder(study_folder, stop_before_pixels=True)
    # A file cut in its pixel data is complete up to them.
    assert [Path(i.origin).name for i in result.instances] == ["a.dcm", "cut_in_pixels.dcm", "b.dcm", "c"]
    assert all("PixelData" not in i.dataset for i in result.instances)
    assert {Path(f.origin).name for f in result.failures} == {"notes.txt", "empty.dcm", "cut_in_header.dcm"}


def test_load_folder_on_a_missing_folder_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DicomSourceError, match=f"{tmp_path / 'nope'}: no such folder"):
        load_folder(tmp_path / "nope")


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_rle.dcm", "emri_small_jpeg_2k_lossless.dcm"],
)
def test_every_truncation_of_a_real_file_is_a_failure(tmp_path: Path, name: str) -> None:
    path = get_testdata_file(name)
    assert path is not None
    data = Path(path).read_bytes()
    assert read_instance(data, name).dataset.SOPInstanceUID
    # Every byte through the header (element borders are the hard case), then every 97th; the
    # last 150 bytes hold only trailing padding or the pixel sequence's end (nothing lost there).
    end = len(data) - 150
    for cut in [*range(0, min(end, 2500)), *range(2500, end, 97)]:
        with pytest.raises(DicomSourceError, match=name) as info:
            read_instance(data[:cut], name)
        assert any(word in info.value.reason for word in ("truncated", "not a DICOM", "no SOPInstanceUID")), (
            cut
        )


def test_encapsulated_pixel_data_cut_inside_a_fragment(tmp_path: Path) -> None:
    path = get_testdata_file("MR_small_jp2klossless.dcm")
    assert path is not None
    data = Path(path).read_bytes()
    with pytest.raises(DicomSourceError, match="truncated"):
        read_instance(data[:-200], "mr")


def test_load_file(tmp_path: Path) -> None:
    p = tmp_path / "one.dcm"
    p.write_bytes(ct_slice(generate_uid(), generate_uid(), 7))
    inst = load_file(p)
    assert inst.origin == str(p)
    assert inst.dataset.InstanceNumber == 7
    assert inst.sop_instance_uid == inst.dataset.SOPInstanceUID
    with pytest.raises(DicomSourceError, match="no such file"):
        load_file(tmp_path / "missing.dcm")
    (tmp_path / "bad.dcm").write_bytes(b"x" * 300)
    with pytest.raises(DicomSourceError, match=r"bad\.dcm: not a DICOM Part 10 file"):
        load_file(tmp_path / "bad.dcm")


def test_dicomdir_is_skipped_in_folders(tmp_path: Path) -> None:
    path = get_testdata_file("DICOMDIR")
    assert path is not None
    (tmp_path / "DICOMDIR").write_bytes(Path(path).read_bytes())
    (tmp_path / "a.dcm").write_bytes(ct_slice(generate_uid(), generate_uid(), 1))
    result = load_folder(tmp_path)
    assert len(result.instances) == 1
    assert result.failures == ()
    with pytest.raises(DicomSourceError, match="DICOMDIR"):
        load_file(tmp_path / "DICOMDIR")


# ---------------------------------------------------------------------------- SOURCE strings


def test_parse_source(tmp_path: Path) -> None:
    f = tmp_path / "x.dcm"
    f.write_bytes(b"")
    assert parse_source(str(tmp_path)) == FolderSource(path=tmp_path)
    assert parse_source(f" {f} ") == FileSource(path=f)
    assert parse_source("dicomweb:1.2.3") == DicomWebRef(study_uid="1.2.3")
    ref = parse_source("dicomweb:1.2.3/1.2.3.4")
    assert ref == DicomWebRef(study_uid="1.2.3", series_uid="1.2.3.4")
    assert str(ref) == "dicomweb:1.2.3/1.2.3.4"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dicomweb:", "expected dicomweb:STUDY_UID"),
        ("dicomweb:1.2/3.4/5.6", "expected dicomweb:STUDY_UID"),
        ("dicomweb:1.2.abc", "is not a DICOM UID"),
        ("/no/such/path", "no such file or folder"),
        ("  ", "empty source"),
    ],
)
def test_parse_source_errors_name_the_input(text: str, message: str) -> None:
    with pytest.raises(DicomSourceError, match=message) as info:
        parse_source(text)
    assert info.value.origin in (text.strip(), "''")


# ---------------------------------------------------------------------------- DICOMweb


def dicomweb_handler(
    instances: dict[str, bytes], study: str, series: str, *, series_retrieval: bool
) -> httpx.MockTransport:
    """A PACS holding `instances` (empty bytes: listed by QIDO but gone); with
    `series_retrieval=False` it answers 406 to a whole-series GET."""

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith(f"/series/{series}"):
            if not series_retrieval:
                return httpx.Response(406)
            body = build_multipart([d for d in instances.values() if d], part_type="application/dicom")
            return httpx.Response(
                200, headers={"content-type": body.content_type}, content=b"".join(body.chunks)
            )
        if path.endswith(f"/studies/{study}/series"):
            return httpx.Response(200, json=[{"0020000E": {"vr": "UI", "Value": [series]}}])
        if path.endswith("/instances"):
            return httpx.Response(200, json=[{"00080018": {"vr": "UI", "Value": [s]}} for s in instances])
        sop = path.rsplit("/", 1)[1]
        data = instances[sop]
        if not data:
            return httpx.Response(404, json={"Message": "Accessing an inexistent item"})
        body = build_multipart([data], part_type="application/dicom")
        return httpx.Response(200, headers={"content-type": body.content_type}, content=b"".join(body.chunks))

    return httpx.MockTransport(handle)


def pacs_content() -> tuple[str, str, list[str], str, dict[str, bytes]]:
    st, se = generate_uid(), generate_uid()
    good = [ct_slice(se, st, n) for n in (1, 2)]
    sops = [str(pydicom.dcmread(io.BytesIO(g)).SOPInstanceUID) for g in good]
    cut = ct_slice(se, st, 3)
    cut_sop = str(pydicom.dcmread(io.BytesIO(cut)).SOPInstanceUID)
    return st, se, sops, cut_sop, {sops[0]: good[0], "1.9.9": b"", sops[1]: good[1], cut_sop: cut[:-50]}


async def test_load_dicomweb_streams_each_series_and_names_bad_parts() -> None:
    st, se, sops, _, instances = pacs_content()
    transport = dicomweb_handler(instances, st, se, series_retrieval=True)
    async with DicomWebClient("http://pacs/dicom-web", transport=transport) as c:
        result = await load_dicomweb(c, st)
    assert [i.origin for i in result.instances] == [f"dicomweb:{st}/{se}/{s}" for s in sops]
    assert result.failures == (
        InstanceFailure(
            f"dicomweb:{st}/{se} (part 3)", "truncated DICOM file (element (7FE0,0010) has 462 of 512 bytes)"
        ),
    )


async def test_load_dicomweb_falls_back_to_instances_and_collects_per_instance_failures() -> None:
    st, se, sops, cut_sop, instances = pacs_content()
    transport = dicomweb_handler(instances, st, se, series_retrieval=False)
    async with DicomWebClient("http://pacs/dicom-web", transport=transport) as c:
        result = await load_dicomweb(c, st)
        by_series = await load_source(DicomWebRef(study_uid=st, series_uid=se), client=c)
    assert [i.sop_instance_uid for i in result.instances] == sops
    assert result.instances[0].origin == f"dicomweb:{st}/{se}/{sops[0]}"
    assert result.failures == (
        InstanceFailure(
            f"dicomweb:{st}/{se}/1.9.9",
            f"GET studies/{st}/series/{se}/instances/1.9.9 -> HTTP 404: Accessing an inexistent item",
        ),
        InstanceFailure(
            f"dicomweb:{st}/{se}/{cut_sop}", "truncated DICOM file (element (7FE0,0010) has 462 of 512 bytes)"
        ),
    )
    assert [i.sop_instance_uid for i in by_series.instances] == sops


async def test_load_dicomweb_raises_what_concerns_the_whole_server() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(401))
    async with DicomWebClient("http://pacs/dicom-web", transport=transport) as c:
        with pytest.raises(DicomWebAuthError):
            await load_dicomweb(c, "1.2.3")


async def test_load_source_for_files_and_folders(study_folder: Path) -> None:
    folder = await load_source(FolderSource(path=study_folder))
    assert len(folder.instances) == 3
    one = await load_source(FileSource(path=study_folder / "a.dcm"))
    assert len(one.instances) == 1
    bad = await load_source(FileSource(path=study_folder / "notes.txt"))
    assert bad.instances == ()
    assert bad.failures[0].origin == str(study_folder / "notes.txt")
    with pytest.raises(DicomSourceError, match="needs a DICOMweb server"):
        await load_source(DicomWebRef(study_uid="1.2.3"))
