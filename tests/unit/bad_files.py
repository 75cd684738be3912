"""Bad input files, made at test time (no binary is committed): DICOM objects and lab-report PDFs that
ChartAgent must refuse with a message naming the file and the problem, in bounded memory.

Each generator returns the file's bytes; `write_bad_files(folder)` writes them all under the names
the tests and `bench/bench_bad_files.py` use. The bombs are cheap to make: one deflate block of
1 MiB of zeros, compressed once and ended by a full flush (byte-aligned, no back-reference into
what came before), is repeated as often as needed, so a 1 GiB bomb costs about 1 MB and a few
milliseconds. No value in them is patient data.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
)

from agent.testbed.cohort.labpdf.bad import deterministic_encrypted_pdf, truncated_pdf
from tools.labs.pdf.drawing import write_pdf

GIB: Final = 1 << 30
MIB: Final = 1 << 20
CT_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.2"
_STUDY: Final = "1.2.826.0.1.3680043.8.498.1"
_SERIES: Final = "1.2.826.0.1.3680043.8.498.2"
_PIXEL_DATA_OW: Final = struct.pack("<HH2sH", 0x7FE0, 0x0010, b"OW", 0)  # tag, VR, reserved
_REPORT_ROWS: Final = [
    (40, 60, "Collected: 2024-06-01"),
    (40, 100, "Test"), (200, 100, "Result"), (300, 100, "Units"), (380, 100, "Reference Range"),
    (40, 115, "Potassium"), (200, 115, "4.2"), (300, 115, "mmol/L"), (380, 115, "3.5-5.1"),
]  # fmt: skip


# ---------------------------------------------------------------------------- deflate streams


def zero_deflate(size: int, *, head: bytes = b"", tail: bytes = b"") -> bytes:
    """A raw deflate stream (no zlib header, as DICOM's deflated syntax and nothing else uses) of
    `head`, `size` zero bytes and `tail`, made in milliseconds whatever `size` is."""
    out = bytearray()
    if head:
        c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        out += c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = c.compress(bytes(MIB)) + c.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(size, MIB)
    out += block * whole
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out += c.compress(bytes(rest) + tail) + c.flush()
    return bytes(out)


def zlib_zeros(size: int, *, head: bytes = b"") -> bytes:
    """The same with a zlib header and checksum, as a PDF's FlateDecode expects."""
    raw = zero_deflate(size, head=head)
    start = zlib.adler32(head)
    a, b = start & 0xFFFF, start >> 16
    check = ((b + size * a) % 65521) << 16 | a  # Adler-32 over `size` more zeros, without them
    return b"\x78\xda" + raw + struct.pack(">L", check)


# ---------------------------------------------------------------------------- DICOM


def ct_dataset(rows: int = 64, cols: int = 64, *, with_pixels: bool = True) -> Dataset:
    """One synthetic 16-bit CT slice (explicit VR little endian), fixed UIDs so the files are stable."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(CT_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID("1.2.826.0.1.3680043.8.498.3")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _STUDY
    ds.SeriesInstanceUID = _SERIES
    ds.Modality = "CT"
    ds.InstanceNumber = 1
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
    if with_pixels:
        ramp = np.arange(rows * cols, dtype="<u2") % 2048
        ds.PixelData = ramp.tobytes()
    return ds


def part10(ds: Dataset, *, transfer_syntax: str = ExplicitVRLittleEndian) -> tuple[bytes, bytes]:
    """(preamble, DICM and file meta; the dataset in explicit VR little endian), not yet joined:
    the generators below cut, stretch or deflate the second."""
    meta = ds.file_meta
    meta.TransferSyntaxUID = UID(transfer_syntax)
    head = DicomBytesIO()
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    return head.getvalue(), body.getvalue()


def normal_dicom(rows: int = 64, cols: int = 64) -> bytes:
    head, body = part10(ct_dataset(rows, cols))
    return head + body


def dicom_deflate_bomb(inflated: int = GIB) -> bytes:
    """Deflated Explicit VR Little Endian whose dataset inflates to a header and one `inflated`-byte
    pixel data element (about 1 MB on disk for 1 GiB)."""
    head, body = part10(ct_dataset(with_pixels=False), transfer_syntax=DeflatedExplicitVRLittleEndian)
    element = _PIXEL_DATA_OW + struct.pack("<L", inflated)
    return head + zero_deflate(inflated, head=body + element)


def dicom_huge_length() -> bytes:
    """A complete header, then pixel data declaring 0xFFFFFFF0 bytes (4 GiB) with 64 bytes behind it."""
    head, body = part10(ct_dataset(with_pixels=False))
    return head + body + _PIXEL_DATA_OW + struct.pack("<L", 0xFFFFFFF0) + bytes(64)


def dicom_truncated() -> bytes:
    """A CT slice cut in the middle of its pixel data."""
    data = normal_dicom()
    return data[: len(data) - 4096]


def dicom_short_pixels() -> bytes:
    """A complete file whose pixel data (1,000 bytes) is shorter than its 64 x 64 x 16-bit image."""
    ds = ct_dataset()
    ds.PixelData = bytes(1000)
    head, body = part10(ds)
    return head + body


def dicom_excess_pixels() -> bytes:
    """A complete 16 x 16 slice carrying 4 MiB of pixel data: far more than Rows x Columns allow."""
    ds = ct_dataset(16, 16)
    ds.PixelData = bytes(4 * MIB)
    head, body = part10(ds)
    return head + body


def not_dicom() -> bytes:
    return b"This is a text file that was given a .dcm name.\n" * 8


def tiff_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buf, format="TIFF")
    return buf.getvalue()


def empty() -> bytes:
    return b""


# ---------------------------------------------------------------------------- PDF


def normal_pdf() -> bytes:
    """A one-page lab report with a text layer (one potassium result)."""
    return write_pdf([list(_REPORT_ROWS)])


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def pdf_truncated() -> bytes:
    return truncated_pdf(normal_pdf())


def pdf_encrypted() -> bytes:
    return deterministic_encrypted_pdf(normal_pdf(), file_id=b"chartagent-bad-1")


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF of numbered `objects` (1 is the catalog) with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xc2\xb5\xc2\xb6\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _page_pdf(media_box: bytes, content: bytes, filters: bytes = b"") -> bytes:
    return _pdf(
        [
            b"<</Type/Catalog/Pages 2 0 R>>",
            b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
            b"<</Type/Page/Parent 2 0 R/MediaBox[" + media_box + b"]/Contents 4 0 R"
            b"/Resources<</Font<</F1 5 0 R>>>>>>",
            b"<</Length %d%s>>\nstream\n" % (len(content), filters) + content + b"\nendstream",
            b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>",
        ]
    )


_TEXT: Final = b"BT /F1 10 Tf 40 700 Td (Potassium 4.2 mmol/L 3.5-5.1) Tj ET\n"


def pdf_stream_bomb(inflated: int = GIB) -> bytes:
    """One page whose FlateDecode content stream inflates to a line of text and `inflated` zero bytes
    (whitespace to a PDF reader); about 1 MB on disk for 1 GiB."""
    return _page_pdf(b"0 0 595 842", zlib_zeros(inflated, head=_TEXT), b"/Filter/FlateDecode")


def pdf_double_flate_bomb(inflated: int = GIB) -> bytes:
    """One page whose content stream is deflated twice (/Filter [/FlateDecode /FlateDecode]): about
    10 KB on disk, 1 MB after the first layer, `inflated` bytes after the second."""
    twice = zlib.compress(zlib_zeros(inflated, head=_TEXT), 9)
    return _page_pdf(b"0 0 595 842", twice, b"/Filter[/FlateDecode /FlateDecode]")


def lzw_zeros(size: int) -> bytes:
    """PDF LZWDecode data (early change, as the filter's default) of `size` zero bytes, in about
    1/1300 of that: after each clear code, a literal zero and then every new code defined by itself
    (each one zero longer than the last) until the table is full."""
    out = bytearray()
    held, bits, width = 0, 0, 9

    def emit(code: int) -> None:
        nonlocal held, bits
        held, bits = held << width | code, bits + width
        while bits >= 8:
            bits -= 8
            out.append(held >> bits & 0xFF)
        held &= (1 << bits) - 1

    left = size
    while left:
        emit(256)  # clear
        width, table = 9, 258
        emit(0)
        left -= 1
        length = 1
        while table < 4096 and length + 1 <= left:
            emit(table)  # the code being defined: the last string and its first byte
            length += 1
            left -= length
            table += 1
            if table + 1 >= 1 << width and width < 12:
                width += 1
    emit(257)  # end of data
    if bits:
        out.append(held << (8 - bits) & 0xFF)
    return bytes(out)


def pdf_lzw_bomb(inflated: int = GIB) -> bytes:
    """One page whose LZWDecode content stream decodes to `inflated` zero bytes: about 800 KB for
    1 GiB (the Flate check alone never opened it)."""
    return _page_pdf(b"0 0 595 842", lzw_zeros(inflated), b"/Filter/LZWDecode")


def pdf_run_length_bomb(inflated: int = 256 * MIB) -> bytes:
    """One page whose RunLengthDecode content stream repeats a zero 128 times per two bytes: 4 MiB
    on disk for 256 MiB."""
    return _page_pdf(b"0 0 595 842", b"\x81\x00" * (inflated // 128) + b"\x80", b"/Filter/RunLengthDecode")


def pdf_ascii85_flate_bomb(inflated: int = GIB) -> bytes:
    """A Flate bomb wrapped in ASCII85 (/Filter [/ASCII85Decode /FlateDecode]): its stream opens
    with text, not with a zlib header."""
    text = base64.a85encode(zlib_zeros(inflated, head=_TEXT)) + b"~>"
    return _page_pdf(b"0 0 595 842", text, b"/Filter[/ASCII85Decode /FlateDecode]")


def pdf_huge_image() -> bytes:
    """A page drawing a CCITT G4 image that declares 100,000 x 100,000 pixels (10 gigapixels) in a
    few bytes."""
    content = _TEXT + b"q 500 0 0 700 50 50 cm /Im1 Do Q\n"
    return _pdf(
        [
            b"<</Type/Catalog/Pages 2 0 R>>",
            b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
            b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 4 0 R"
            b"/Resources<</Font<</F1 5 0 R>>/XObject<</Im1 6 0 R>>>>>>",
            b"<</Length %d>>\nstream\n" % len(content) + content + b"\nendstream",
            b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>",
            b"<</Type/XObject/Subtype/Image/Width 100000/Height 100000/BitsPerComponent 1"
            b"/ColorSpace/DeviceGray/Filter/CCITTFaxDecode/DecodeParms<</K -1/Columns 100000"
            b"/Rows 100000>>/Length 4>>\nstream\n\xff\xff\xff\xff\nendstream",
        ]
    )


def pdf_many_paths(paths: int = 1_000_000) -> bytes:
    """A page of `paths` one-point squares and no text (about 13 KB on disk): read as a scan, in
    bounded memory (pymupdf's `get_drawings` made a dict of every path, about 1.3 KB each)."""
    return _page_pdf(b"0 0 595 842", zlib.compress(b"0 0 1 1 re f\n" * paths, 9), b"/Filter/FlateDecode")


def _inline_image_page(head: bytes, data: bytes) -> bytes:
    """One page of a line of text and an inline image drawn over the page: `head` its dictionary,
    `data` its data."""
    content = _TEXT + b"q 500 0 0 700 50 50 cm\nBI " + head + b" ID\n" + data + b"\nEI\nQ\n"
    return _page_pdf(b"0 0 595 842", content)


def pdf_inline_image_bomb(side: int = 16_000, inflated: int | None = None, *, lzw: bool = False) -> bytes:
    """A page drawing an inline RGB image of `side` x `side` pixels (16,000: 256 million, within
    the image limit) whose Flate (or LZW) data decode to `inflated` zero bytes, by default the
    768 MB it declares: about 750 KB on disk. mupdf makes the whole pixmap even to read words."""
    size = side * side * 3 if inflated is None else inflated
    data, name = (lzw_zeros(size), b"/LZW") if lzw else (zlib_zeros(size), b"/Fl")
    return _inline_image_page(b"/W %d /H %d /BPC 8 /CS /RGB /F %s" % (side, side, name), data)


def pdf_inline_huge_image() -> bytes:
    """A page drawing an inline CCITT G4 image mask that declares 100,000 x 100,000 pixels in 4 bytes."""
    head = b"/W 100000 /H 100000 /IM true /F /CCF /DP <</K -1 /Columns 100000 /Rows 100000>>"
    return _inline_image_page(head, b"\xff\xff\xff\xff")


def one_page_pdf(content: bytes, *, resources: bytes = b"", extra: Sequence[bytes] = ()) -> bytes:
    """One A4 page drawing `content`, then the line of text: font F1 and `resources` besides
    (dictionary entries, e.g. ``/XObject<</X 6 0 R>>``); `extra`: objects 6 on."""
    content += _TEXT
    return _pdf(
        [
            b"<</Type/Catalog/Pages 2 0 R>>",
            b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
            b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 4 0 R"
            b"/Resources<</Font<</F1 5 0 R>>" + resources + b">>>>",
            b"<</Length %d>>\nstream\n" % len(content) + content + b"\nendstream",
            b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>",
            *extra,
        ]
    )


def form_xobject(body: bytes, resources: bytes = b"") -> bytes:
    """A form XObject drawing `body`; `resources`: its own ``/Resources<<...>>`` entry, if any."""
    head = b"<</Type/XObject/Subtype/Form/BBox[0 0 595 842]" + resources + b"/Length %d>>" % len(body)
    return head + b"\nstream\n" + body + b"\nendstream"


def _forms_pdf(page: bytes, forms: list[tuple[bytes, bytes]]) -> bytes:
    """One page drawing `page` (form X is object 6) and form XObjects, objects 6 on, each (its
    content, the /XObject dictionary of its resources, or b"" for none)."""
    return one_page_pdf(
        page,
        resources=b"/XObject<</X 6 0 R>>",
        extra=[
            form_xobject(body, b"/Resources<</XObject" + xobjects + b">>" if xobjects else b"")
            for body, xobjects in forms
        ],
    )


def pdf_form_reuse_bomb(levels: int = 3, draws: int = 1000) -> bytes:
    """A page drawing a form `draws` times, each form drawing the next as often, `levels` deep,
    the last a small square: a billion squares by default, in 20 KB of streams."""
    forms = [(b"q /X Do Q\n" * draws, b"<</X %d 0 R>>" % (7 + level)) for level in range(levels - 1)]
    return _forms_pdf(b"q /X Do Q\n" * draws, [*forms, (b"0 0 1 1 re f\n", b"")])


def pdf_deep_forms(depth: int = 70) -> bytes:
    """A page drawing a chain of `depth` forms, each drawing the next once: mupdf stops reading
    the page with "exception stack overflow" past 61."""
    forms = [(b"/X Do\n", b"<</X %d 0 R>>" % (7 + level)) for level in range(depth - 1)]
    return _forms_pdf(b"/X Do\n", [*forms, (b"0 0 1 1 re f\n", b"")])


def pdf_form_cycle() -> bytes:
    """A page drawing form 6, which draws form 7, which draws form 6 again."""
    return _forms_pdf(b"/X Do\n", [(b"/X Do\n", b"<</X 7 0 R>>"), (b"/X Do\n", b"<</X 6 0 R>>")])


def pdf_giant_page() -> bytes:
    """One page of 200,000 x 200,000 pt (PDF allows 14,400) with a line of text on it."""
    return _page_pdf(b"0 0 200000 200000", _TEXT)


# ---------------------------------------------------------------------------- the corpus

BAD_DICOM: Final[dict[str, Callable[[], bytes]]] = {
    "deflate-bomb.dcm": dicom_deflate_bomb,
    "huge-length.dcm": dicom_huge_length,
    "truncated.dcm": dicom_truncated,
    "short-pixels.dcm": dicom_short_pixels,
    "excess-pixels.dcm": dicom_excess_pixels,
    "not-dicom.dcm": not_dicom,
    "empty.dcm": empty,
    "tiff-renamed.dcm": tiff_bytes,
}
BAD_PDF: Final[dict[str, Callable[[], bytes]]] = {
    "zero-bytes.pdf": empty,
    "png-renamed.pdf": png_bytes,
    "truncated.pdf": pdf_truncated,
    "encrypted.pdf": pdf_encrypted,
    "stream-bomb.pdf": pdf_stream_bomb,
    "double-flate-bomb.pdf": pdf_double_flate_bomb,
    "giant-page.pdf": pdf_giant_page,
    "lzw-bomb.pdf": pdf_lzw_bomb,
    "run-length-bomb.pdf": pdf_run_length_bomb,
    "ascii85-flate-bomb.pdf": pdf_ascii85_flate_bomb,
    "huge-image.pdf": pdf_huge_image,
    "many-paths.pdf": pdf_many_paths,
    "inline-image-bomb.pdf": pdf_inline_image_bomb,
    "inline-huge-image.pdf": pdf_inline_huge_image,
    "form-reuse-bomb.pdf": pdf_form_reuse_bomb,
    "form-cycle.pdf": pdf_form_cycle,
    "deep-forms.pdf": pdf_deep_forms,
}


def write_bad_files(folder: Path, names: dict[str, Callable[[], bytes]] | None = None) -> dict[str, Path]:
    """Every bad file (or those of `names`) written under `folder`; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, make in (names or {**BAD_DICOM, **BAD_PDF}).items():
        path = folder / name
        path.write_bytes(make())
        written[name] = path
    return written
