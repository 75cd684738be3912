"""The DICOM limits (tools/imaging/dicom_limits.py) and the PDF ones (tools/labs/pdf), in process.

Limits are lowered through the environment where a test would otherwise inflate hundreds of MiB.
No test asserts memory or time; bench/bench_bad_files.py measures them.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import bad_files
import httpx
import numpy as np
import pydicom
import pydicom.filereader
import pymupdf
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless

from tools.file_kinds import looks_like
from tools.imaging.dicom_limits import (
    MIB,
    DicomLimitError,
    DicomLimits,
    check_dataset,
    describe_bytes,
    dicom_limits,
    inflate,
    read_deflated,
    screen_file,
)
from tools.imaging.dicomweb import DicomWebClient, DicomWebProtocolError
from tools.imaging.errors import ImagingError
from tools.imaging.multipart import MultipartError, MultipartParser, build_multipart
from tools.imaging.sources import DicomSourceError, load_file, load_folder, read_instance
from tools.imaging.volume import Instance, assemble
from tools.imaging.wsi import WsiDicomReader
from tools.labs.pdf import PdfNotPdfError, PdfOverLimitError, extract_labs
from tools.labs.pdf.model_pages import render_dpi

ST, SE, SOP = "1.2.3", "1.2.3.4", "1.2.3.4.5"


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set CHARTAGENT_DICOM_* through the returned monkeypatch; the cached limits are reread."""
    dicom_limits.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    dicom_limits.cache_clear()


def _deflated_ct(rows: int = 64, cols: int = 64) -> bytes:
    """A real deflated CT slice (pydicom deflates it), pixel values a ramp."""
    ds = bad_files.ct_dataset(rows, cols)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _no_unbounded_inflate(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydicom's own reading of a deflated file (one unbounded zlib.decompress) must not run."""

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("pydicom's unbounded inflate was called")

    monkeypatch.setattr(pydicom.filereader.zlib, "decompress", refuse)


# ---------------------------------------------------------------------------- deflate


def test_the_deflate_bomb_is_refused_without_pydicom_inflating_it(
    tmp_path: Path, limits: pytest.MonkeyPatch
) -> None:
    """At the default limit in test_bad_files_cli.py; 16 MiB here, to spend less time inflating."""
    limits.setenv("CHARTAGENT_DICOM_MAX_INFLATED_BYTES", str(16 * MIB))
    path = tmp_path / "bomb.dcm"
    path.write_bytes(bad_files.dicom_deflate_bomb())  # 1 GiB inflated
    _no_unbounded_inflate(limits)
    refused = f"{path}: the deflated dataset inflates to more than 16 MiB"
    with pytest.raises(DicomSourceError, match=re.escape(refused)):
        load_file(path)
    with pytest.raises(DicomSourceError, match=re.escape(refused)):
        load_file(path, defer_pixels=False, stop_before_pixels=True)
    with pytest.raises(DicomSourceError, match=re.escape("dicomweb:1/2 (part 1): the deflated dataset")):
        read_instance(path.read_bytes(), "dicomweb:1/2 (part 1)")


def test_a_deflated_slice_reads_as_pydicom_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _deflated_ct()
    expected = pydicom.dcmread(io.BytesIO(data)).pixel_array
    path = tmp_path / "deflated.dcm"
    path.write_bytes(data)
    _no_unbounded_inflate(monkeypatch)
    for inst in (load_file(path), load_file(path, defer_pixels=False), read_instance(data, "web")):
        volume = assemble([Instance(inst.origin, inst.dataset)]).select("t")
        assert np.array_equal(volume.stored(0), expected)
    header = load_file(path, stop_before_pixels=True).dataset
    assert "PixelData" not in header
    assert header.Rows == 64


def test_a_deflated_object_past_the_kept_first_pass_is_inflated_again() -> None:
    data = zlib.compress(b"x" * 100 + bytes(20 * MIB), 1)[2:-4]  # raw deflate, 20 MiB: over 8 MiB kept
    assert inflate(data, "x.dcm", 32 * MIB) == b"x" * 100 + bytes(20 * MIB)
    with pytest.raises(DicomLimitError, match=r"x\.dcm: the deflated dataset inflates to more than 16 MiB"):
        inflate(data, "x.dcm", 16 * MIB)


def test_a_cut_or_corrupt_deflate_stream_is_named() -> None:
    data = _deflated_ct()
    with pytest.raises(DicomSourceError, match=r"cut\.dcm: truncated DICOM file \(the deflated dataset ends"):
        read_instance(data[: len(data) - 500], "cut.dcm")
    head, _ = bad_files.part10(bad_files.ct_dataset(), transfer_syntax=DeflatedExplicitVRLittleEndian)
    broken = head + b"\xff" * 64  # a deflate block of the reserved type
    with pytest.raises(DicomSourceError, match=r"bad\.dcm: corrupt deflated dataset"):
        read_instance(broken, "bad.dcm")


def test_other_files_are_not_read_as_deflated() -> None:
    assert read_deflated(bad_files.normal_dicom(), "x") is None
    assert read_deflated(b"not dicom 1.2.840.10008.1.2.1.99", "x") is None


def test_the_limits_come_from_the_environment(limits: pytest.MonkeyPatch) -> None:
    assert dicom_limits() == DicomLimits(
        max_instance_bytes=1 << 30, max_inflated_bytes=256 * MIB, max_frame_bytes=256 * MIB
    )
    dicom_limits.cache_clear()
    limits.setenv("CHARTAGENT_DICOM_MAX_INFLATED_BYTES", str(2 * MIB))
    assert dicom_limits().max_inflated_bytes == 2 * MIB
    with pytest.raises(DicomSourceError, match="more than 2 MiB"):
        read_instance(bad_files.dicom_deflate_bomb(8 * MIB), "small-bomb.dcm")


def test_a_dicom_wsi_folder_with_a_bomb_is_refused_before_wsidicom_opens_it(
    tmp_path: Path, limits: pytest.MonkeyPatch
) -> None:
    limits.setenv("CHARTAGENT_DICOM_MAX_INFLATED_BYTES", str(MIB))
    (tmp_path / "level0.dcm").write_bytes(bad_files.dicom_deflate_bomb(4 * MIB))
    (tmp_path / "notes.txt").write_text("not DICOM")
    with pytest.raises(DicomLimitError, match=r"level0\.dcm: the deflated dataset inflates") as info:
        WsiDicomReader.from_folder(tmp_path)
    assert isinstance(info.value, ImagingError)
    screen_file(tmp_path / "notes.txt", "notes.txt")  # other files pass
    (tmp_path / "ok.dcm").write_bytes(_deflated_ct())
    screen_file(tmp_path / "ok.dcm", "ok.dcm")


# ---------------------------------------------------------------------------- lengths and pixel data


def test_a_4_gb_element_is_refused_as_such_not_as_a_cut(tmp_path: Path) -> None:
    head, body = bad_files.part10(bad_files.ct_dataset(with_pixels=False))
    at = body.index(b"\x28\x00\x10\x00")  # Rows: a private OB element goes before it
    element = struct.pack("<HH2sHL", 0x0009, 0x1001, b"OB", 0, 0xFFFFFFF0) + bytes(16)
    for data in (head + body[:at] + element, bad_files.dicom_huge_length()):
        with pytest.raises(
            DicomSourceError, match=r"huge: element \((0009,1001|7FE0,0010)\) declares 4294967280"
        ):
            read_instance(data, "huge")
        path = tmp_path / "huge.dcm"
        path.write_bytes(data)
        with pytest.raises(DicomSourceError, match="declares 4294967280 bytes"):
            load_file(path)


def test_pixel_data_must_fit_rows_columns_and_frames(tmp_path: Path) -> None:
    path = tmp_path / "p.dcm"
    for data, problem in (
        (bad_files.dicom_short_pixels(), "pixel data has 1000 bytes, shorter than the 8192 bytes"),
        (bad_files.dicom_excess_pixels(), "pixel data has 4194304 bytes (4 MiB), at least one frame more"),
    ):
        path.write_bytes(data)
        with pytest.raises(DicomSourceError, match=re.escape(f"{path}: {problem}")):
            load_file(path)
        with pytest.raises(DicomSourceError, match=re.escape(f"web: {problem}")):
            read_instance(data, "web")
    result = load_folder(tmp_path)
    assert [f.origin for f in result.failures] == [str(tmp_path / "p.dcm")]


def test_a_frame_over_the_limit_is_refused_before_decoding(limits: pytest.MonkeyPatch) -> None:
    limits.setenv("CHARTAGENT_DICOM_MAX_FRAME_BYTES", "4096")
    data = bad_files.normal_dicom()  # 64 x 64 x 16 bits = 8 KiB
    with pytest.raises(
        DicomSourceError, match=r"one frame of 64 x 64 pixels is 8 KiB decoded, over the limit of 4 KiB"
    ):
        read_instance(data, "big-frame.dcm")
    ds = pydicom.dcmread(io.BytesIO(data))  # a dataset that did not come through sources
    volume = assemble([Instance("mem", ds)]).select("t")
    with pytest.raises(DicomLimitError, match="mem: one frame of 64 x 64"):
        volume.stored(0)


def test_encapsulated_pixel_data_needs_a_fragment_per_frame() -> None:
    ds = bad_files.ct_dataset(16, 16)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.NumberOfFrames = 3
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(10)] * 2)
    ds["PixelData"].is_undefined_length = True
    with pytest.raises(
        DicomLimitError, match="NumberOfFrames is 3 but the encapsulated pixel data has 2 fragment"
    ):
        check_dataset(ds, "enc.dcm")


def test_describe_bytes() -> None:
    assert [describe_bytes(n) for n in (5, 2048, 1536 * 1024, 1 << 30)] == [
        "5 bytes",
        "2 KiB",
        "1.5 MiB",
        "1 GiB",
    ]


# ---------------------------------------------------------------------------- DICOMweb


def test_a_multipart_part_over_the_limit_is_refused_as_it_streams() -> None:
    body = build_multipart([b"a" * 100, b"b" * 5000], part_type="application/dicom", boundary="xyz")
    parser = MultipartParser("xyz", max_part_bytes=1000)
    data = b"".join(body.chunks)
    parser.feed(data[:600])  # the first part, and the start of the second
    with pytest.raises(MultipartError, match="over the limit of 1000 bytes"):
        parser.feed(data[600:1700])
    exact = MultipartParser("xyz", max_part_bytes=5000)
    assert [len(p.body) for p in exact.feed(data)] == [100, 5000]


async def test_retrieve_instance_streams_and_refuses_a_part_over_the_limit(
    limits: pytest.MonkeyPatch,
) -> None:
    limits.setenv("CHARTAGENT_DICOM_MAX_INSTANCE_BYTES", "4096")
    big = b"\0" * 128 + b"DICM" + bytes(8000)
    body = build_multipart([big], part_type="application/dicom", boundary="xyz")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"".join(body.chunks), headers={"content-type": body.content_type})

    async with DicomWebClient("http://pacs.test/dicom-web", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(
            DicomWebProtocolError, match=f"instances/{SOP}: a multipart part is over the limit"
        ):
            await client.retrieve_instance(ST, SE, SOP)


# ---------------------------------------------------------------------------- what a file looks like


def test_looks_like() -> None:
    assert looks_like(bad_files.png_bytes()) == "PNG"
    assert looks_like(bad_files.tiff_bytes()) == "TIFF"
    assert looks_like(bad_files.normal_dicom()) == "DICOM"
    assert looks_like(bad_files.normal_pdf()) == "PDF"
    assert looks_like(b"PK\x03\x04rest") == "a ZIP archive (DOCX, XLSX, ...)"
    assert looks_like(b"  <!DOCTYPE html><html>") == "HTML"
    assert looks_like("Résultats du laboratoire\n".encode()) == "text"
    assert looks_like(b"\x00\x01\x02\xfe") is None
    assert looks_like(b"") is None


# ---------------------------------------------------------------------------- PDF


def test_a_png_renamed_pdf_is_not_a_pdf(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(bad_files.png_bytes())
    for source in (path, path.read_bytes()):
        with pytest.raises(PdfNotPdfError, match=r"not a readable PDF: not a PDF at all \(looks like PNG\)"):
            extract_labs(source, name="scan.pdf")
    junk_first = b"\x00" * 500 + bad_files.normal_pdf()  # readers accept junk before the header
    assert extract_labs(junk_first).results


def test_pdf_limits_are_checked_before_any_page_is_read() -> None:
    bomb = bad_files.pdf_stream_bomb(8 * MIB)
    refused = "b.pdf: refused: object 4 is a stream that inflates to more than 4 MiB"
    with pytest.raises(PdfOverLimitError, match=re.escape(refused)):
        extract_labs(bomb, name="b.pdf", max_stream_bytes=4 * MIB)
    assert extract_labs(bomb, max_stream_bytes=16 * MIB).page_count == 1
    twice = bad_files.pdf_double_flate_bomb(8 * MIB)  # 1 MiB after the first layer
    with pytest.raises(PdfOverLimitError, match=re.escape("object 4 is a stream that inflates")):
        extract_labs(twice, max_stream_bytes=4 * MIB)
    doc = pymupdf.open(stream=bomb, filetype="pdf")  # encrypted, opening without a password
    locked = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner", user_pw="")
    assert not pymupdf.open(stream=locked, filetype="pdf").needs_pass
    with pytest.raises(PdfOverLimitError, match=re.escape("object 4 is a stream that inflates")):
        extract_labs(locked, max_stream_bytes=4 * MIB)
    with pytest.raises(PdfOverLimitError, match="page 1 measures 200000 x 200000 pt"):
        extract_labs(bad_files.pdf_giant_page())


def test_pages_render_within_the_pixel_limit() -> None:
    assert render_dpi(595, 842, 150) == 150  # A4: 2.2 million pixels
    dpi = render_dpi(14_400, 14_400, 150)
    assert dpi < 150
    assert (14_400 * dpi / 72) ** 2 <= 25_000_000 < (14_400 * (dpi + 1) / 72) ** 2
