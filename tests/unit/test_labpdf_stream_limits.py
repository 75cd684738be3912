"""The stream limits (tools.labs.pdf.stream_limits): every filter mupdf applies is counted before
mupdf decodes it, and our decoders agree with mupdf's on what a stream decodes to."""

from __future__ import annotations

import base64
import binascii
import io
import random
import zlib

import bad_files
import numpy as np
import pymupdf
import pytest
from PIL import Image

from agent.testbed.cohort.labpdf.bad import deterministic_encrypted_pdf
from tools.labs.pdf import PdfOverLimitError
from tools.labs.pdf.reader import check_limits
from tools.labs.pdf.stream_limits import (
    _Ascii85,
    _AsciiHex,
    _Lzw,
    _RunLength,
    _Stage,
    _stages,
    stream_problem,
)

MIB = 1 << 20
BOMB = "object 4 is a stream that inflates to more than 128 MiB"


def _decoded_by_mupdf(data: bytes, filters: bytes, parms: bytes = b"") -> bytes:
    pdf = bad_files._page_pdf(b"0 0 595 842", data, filters + parms)
    return bytes(pymupdf.open(stream=pdf).xref_stream(4))


def _decoded_by_ours(stage: _Stage, data: bytes, step: int = 1000) -> bytes:
    """The stage fed in small pieces, as the check feeds it (pieces split codes and runs)."""
    out = b"".join(b"".join(stage.decode(data[i : i + step])) for i in range(0, len(data), step))
    return out + b"".join(stage.finish())


def _tiff_lzw(pixels: np.ndarray) -> bytes:
    """LZW data of another encoder (libtiff through Pillow: clear codes when the table fills)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="TIFF", compression="tiff_lzw", tiffinfo={278: pixels.shape[0]})
    tiff = Image.open(io.BytesIO(buf.getvalue()))
    offset, count = tiff.tag_v2[273], tiff.tag_v2[279]
    offset = offset[0] if isinstance(offset, tuple) else offset
    count = count[0] if isinstance(count, tuple) else count
    return buf.getvalue()[offset : offset + count]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lzw_decodes_what_mupdf_decodes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Runs of a few values: long strings, table resets, codes of every width.
    pixels = np.repeat(rng.integers(0, 6, size=(300, 80), dtype=np.uint8), 7, axis=1)
    data = _tiff_lzw(pixels)
    expected = _decoded_by_mupdf(data, b"/Filter/LZWDecode")
    assert expected == pixels.tobytes()
    assert _decoded_by_ours(_Lzw(early_change=1), data) == expected


@pytest.mark.parametrize("size", [1, 1000, 7_370_811, 20_000_003])
def test_the_lzw_bomb_generator_gives_what_mupdf_and_the_check_count(size: int) -> None:
    data = bad_files.lzw_zeros(size)
    assert len(_decoded_by_mupdf(data, b"/Filter/LZWDecode")) == size
    assert sum(len(piece) for piece in _Lzw(early_change=1).decode(data)) == size


def test_early_change_is_read_from_the_decode_parameters() -> None:
    (late,) = _stages(["LZWDecode"], "<</EarlyChange 0>>")
    (default,) = _stages(["LZW"], "")
    assert isinstance(late, _Lzw)
    assert late.early == 0
    assert isinstance(default, _Lzw)
    assert default.early == 1


def test_run_length_decodes_what_mupdf_decodes() -> None:
    rng = random.Random(5)
    data = bytearray()
    for _ in range(2000):
        if rng.random() < 0.5:
            n = rng.randint(1, 128)
            data += bytes([n - 1]) + rng.randbytes(n)
        else:
            data += bytes([rng.randint(129, 255), rng.randint(0, 255)])
    data += b"\x80"
    expected = _decoded_by_mupdf(bytes(data), b"/Filter/RunLengthDecode")
    assert _decoded_by_ours(_RunLength(), bytes(data), step=333) == expected


def test_ascii_filters_decode_what_mupdf_decodes() -> None:
    rng = random.Random(7)
    raw = rng.randbytes(5000) + bytes(64) + rng.randbytes(3)  # zero groups become "z"; a short last group
    a85 = base64.a85encode(raw, wrapcol=60) + b"~>"
    assert b"z" in a85
    assert _decoded_by_mupdf(a85, b"/Filter/ASCII85Decode") == raw
    assert _decoded_by_ours(_Ascii85(), a85, step=77) == raw
    hexed = binascii.hexlify(raw, b"\n", 30) + b"7>"  # an odd last digit is followed by 0
    assert _decoded_by_mupdf(hexed, b"/Filter/ASCIIHexDecode") == raw + b"\x70"
    assert _decoded_by_ours(_AsciiHex(), hexed, step=77) == raw + b"\x70"


def _problem(pdf: bytes, *, plain: bool = True) -> str | None:
    return stream_problem(pymupdf.open(stream=pdf), pdf if plain else None)


@pytest.mark.parametrize(
    "make",
    [bad_files.pdf_lzw_bomb, bad_files.pdf_run_length_bomb, bad_files.pdf_ascii85_flate_bomb],
    ids=["lzw", "run-length", "ascii85-flate"],
)
def test_bombs_of_every_filter_are_found_in_the_bytes_and_through_mupdf(make: object) -> None:
    pdf = make()  # type: ignore[operator]
    assert _problem(pdf) == f"{BOMB} (a decompression bomb?)"
    assert _problem(pdf, plain=False) == f"{BOMB} (a decompression bomb?)"


def test_a_filter_name_spelled_with_escapes_is_the_filter() -> None:
    data = bad_files.lzw_zeros(256 * MIB)
    pdf = bad_files._page_pdf(b"0 0 595 842", data, b"/Filter/LZW#44ecode")
    assert len(_decoded_by_mupdf(bad_files.lzw_zeros(1000), b"/Filter/LZW#44ecode")) == 1000  # mupdf reads it
    assert _problem(pdf) is not None


def test_a_filter_given_by_reference_is_followed() -> None:
    data = bad_files.lzw_zeros(256 * MIB)
    pdf = bad_files._pdf(
        [
            b"<</Type/Catalog/Pages 2 0 R>>",
            b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
            b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 4 0 R>>",
            b"<</Length %d/Filter 5 0 R>>\nstream\n" % len(data) + data + b"\nendstream",
            b"[/LZWDecode]",
        ]
    )
    assert _problem(pdf) is not None


def test_an_encrypted_bomb_is_found_through_mupdf() -> None:
    """Encrypted with an empty user password (opens without one): its stream bytes are ciphertext,
    so the byte scan cannot read them; mupdf decrypts them for the check."""
    bomb = bad_files.pdf_lzw_bomb(256 * MIB)
    pdf = deterministic_encrypted_pdf(bomb, b"chartagent-bad-2", user_password="")
    doc = pymupdf.open(stream=pdf)
    assert not doc.needs_pass
    assert doc.metadata["encryption"]
    assert b"/LZWDecode" in pdf
    assert bad_files.lzw_zeros(1000)[:8] not in pdf
    with pytest.raises(PdfOverLimitError, match="is a stream that inflates to more than 128 MiB"):
        check_limits(doc, "bomb.pdf", pdf)


def test_streams_under_the_limits_pass() -> None:
    # 100 MiB of LZW, an image of 16000 x 16000 (256 Mpx, within the limit), plain Flate.
    assert _problem(bad_files.pdf_lzw_bomb(100 * MIB)) is None
    huge = bad_files.pdf_huge_image().replace(b"100000", b"016000")
    assert _problem(huge) is None
    assert _problem(bad_files.normal_pdf()) is None


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding() -> None:
    assert _problem(bad_files.pdf_huge_image()) == (
        "object 6 is an image of 100000 x 100000 pixels, over the 268 million an image may have "
        "(a decompression bomb?)"
    )


def test_a_flate_stream_is_still_read_from_the_bytes_alone() -> None:
    """No call into mupdf per object for the common case: a Flate bomb is found without the
    document's objects (the byte scan names the object from its header)."""

    class NoObjects:
        def xref_length(self) -> int:
            raise AssertionError("the byte scan asked mupdf for objects")

    pdf = bad_files._page_pdf(b"0 0 595 842", zlib.compress(bytes(200 * MIB), 9), b"/Filter/FlateDecode")
    assert stream_problem(NoObjects(), pdf) == f"{BOMB} (a decompression bomb?)"


@pytest.mark.parametrize(
    "keyword",
    [b">>\nstream\r", b">>\nstream ", b">>\nstream \n", b">>%c\nstream\n", b">>\x00stream\n"],
    ids=["cr-alone", "space", "space-lf", "comment-before", "nul-before"],
)
def test_a_stream_keyword_in_any_spelling_mupdf_reads_is_found(keyword: bytes) -> None:
    pdf = bad_files.pdf_stream_bomb(200 * MIB).replace(b">>\nstream\n", keyword, 1)
    doc = pymupdf.open(stream=pdf)
    assert doc.xref_stream_raw(4)  # mupdf reads the stream there
    assert stream_problem(doc, pdf) == f"{BOMB} (a decompression bomb?)"
