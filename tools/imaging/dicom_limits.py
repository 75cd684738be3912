"""What reading one DICOM object may cost, and the reads that keep it to that.

Every place that parses DICOM bytes (files and folders in `sources`, DICOM WSI folders in `wsi`,
instances and multipart parts over DICOMweb) goes through these limits before anything is decoded.
An object over a limit is refused with `DicomLimitError`, naming the input (file path or DICOMweb
UIDs) and the problem, never a value from the dataset.

**Limits** (bytes; environment `CHARTAGENT_DICOM_MAX_INSTANCE_BYTES`, `..._MAX_INFLATED_BYTES`,
`..._MAX_FRAME_BYTES`):

- `max_instance_bytes`, 1 GiB: one object held in memory (a DICOMweb multipart part) and any
  element's declared length. A CT or MR slice is 0.5 MiB (512 x 512 x 16 bits), the 85 slices a
  CT preparation samples 42.5 MiB, an enhanced multi-frame CT of 2,048 such frames 1 GiB. A whole-
  slide image is read by wsidicom frame by frame (under 1 MiB each), never as one object.
- `max_inflated_bytes`, 256 MiB: the dataset of a Deflated Explicit VR Little Endian object once
  inflated. It is held in memory while parsed; the syntax is used for structured reports and small
  images in practice, and 256 MiB still holds six 85-slice CTs as one multi-frame object.
- `max_frame_bytes`, 256 MiB: one decoded frame, Rows x Columns x SamplesPerPixel x BitsAllocated/8
  (what pydicom's decoders allocate). The largest radiographs are 4k x 4k x 16 bits = 32 MiB.

**Deflated objects.** pydicom 3's `dcmread` inflates the whole dataset with one unbounded
`zlib.decompress` and then copies its values out of the result, so a 1 MB file whose dataset
inflates to a 1 GiB element peaked at 2.4 GB before any check could run. `read_deflated` reads
the file meta with pydicom, then inflates the rest with `zlib.decompressobj().decompress(data,
max_length)` in 1 MiB steps, counting: the output is kept while it stays under 8 MiB (one pass
for every deflated object seen in practice); beyond that it is dropped and only counted up to the
limit, and an object within the limit is inflated a second time, now of known size. A bomb
therefore costs a few MiB and the time to inflate `max_inflated_bytes` (about 0.5 s), whatever
it claims. pydicom then parses the inflated bytes (`read_dataset`), never the compressed ones.

**Declared lengths and pixel data** (`check_dataset`, on a parsed header): an element declaring
more than `max_instance_bytes` (a 4 GB length in a 1 KB file); native pixel data shorter than
Rows x Columns x NumberOfFrames x SamplesPerPixel x BitsAllocated/8, or a whole frame or more
longer (pydicom would decode the excess as extra frames; less than a frame is padding it
ignores); a frame over `max_frame_bytes`; encapsulated pixel data with fewer fragments than frames.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Final, cast

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.tag import BaseTag, Tag

from tools.imaging.errors import DicomFileError

__all__ = [
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN",
    "DicomLimitError",
    "DicomLimits",
    "check_dataset",
    "check_declared_lengths",
    "check_frame_size",
    "check_pixel_data",
    "describe_bytes",
    "dicom_limits",
    "expected_pixel_bytes",
    "inflate",
    "read_deflated",
    "screen_file",
]

GIB: Final = 1 << 30
MIB: Final = 1 << 20
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.99"
_DEFLATED_UID = DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN.encode("ascii")
_NATIVE_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN}
)
_STEP = MIB  # output of one bounded decompress call
_KEEP = 8 * MIB  # inflated output kept on the first pass; beyond it, counted only
_PREFIX = 4096  # the file meta of any real object lies within this (the deflated UID is searched there)
# Deflate never grows data by more than 5 bytes per 16 KiB block (stored blocks): compressed data
# longer than this bound cannot inflate to less than the limit.
_DEFLATE_SLACK: Final = 1 / 3000
_UNDEFINED_LENGTH = 0xFFFFFFFF
_PIXEL_DATA = Tag(0x7FE0, 0x0010)
_ROWS, _COLUMNS = Tag(0x0028, 0x0010), Tag(0x0028, 0x0011)
_SAMPLES, _BITS_ALLOCATED = Tag(0x0028, 0x0002), Tag(0x0028, 0x0100)
_FRAMES, _PHOTOMETRIC = Tag(0x0028, 0x0008), Tag(0x0028, 0x0004)
_TRANSFER_SYNTAX = Tag(0x0002, 0x0010)
_ITEM, _SEQUENCE_DELIMITER = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)
# What pydicom raises reading the preamble and file meta of something that is not a sound Part 10 file.
_META_ERRORS = (InvalidDicomError, EOFError, struct.error, ValueError, KeyError, NotImplementedError)


class DicomLimits(BaseSettings):
    """The caps (module docstring), from `CHARTAGENT_DICOM_*` environment variables or defaults."""

    model_config = SettingsConfigDict(env_prefix="CHARTAGENT_DICOM_", extra="ignore", frozen=True)

    max_instance_bytes: int = Field(default=GIB, gt=0)
    max_inflated_bytes: int = Field(default=256 * MIB, gt=0)
    max_frame_bytes: int = Field(default=256 * MIB, gt=0)


@functools.cache
def dicom_limits() -> DicomLimits:
    """The limits in force (read from the environment once; `dicom_limits.cache_clear()` rereads)."""
    return DicomLimits()


class DicomLimitError(DicomFileError):
    """A DICOM object over one of the limits: refused before it is inflated or decoded."""


def describe_bytes(n: int) -> str:
    """`1073741824` -> `1 GiB`, `1062062` -> `1.0 MiB`: sizes in messages."""
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


# ---------------------------------------------------------------------------- deflate


def inflate(data: bytes, origin: str, limit: int) -> bytes:
    """A raw deflate stream (DICOM PS3.5 A.5: no zlib header) inflated, refused past `limit` bytes.

    Never holds more than about 8 MiB of output for a stream over the limit (module docstring).
    """
    if len(data) > limit * (1 + _DEFLATE_SLACK) + 1024:
        raise _over_inflated(origin, limit)
    kept = _inflate_counting(data, origin, limit, keep=_KEEP)
    if kept is not None:
        return kept
    # Known to end within the limit: inflate again, keeping it all this time.
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error:  # pragma: no cover - the first pass read the same bytes
        raise DicomFileError(origin, "corrupt deflated dataset") from None
    return out


def _inflate_counting(data: bytes, origin: str, limit: int, *, keep: int) -> bytes | None:
    """Inflate in bounded steps, counting; the output when it stays within `keep`, else None."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    chunks: list[bytes] | None = []
    total = 0
    pending = data
    try:
        while not d.eof:
            chunk = d.decompress(pending, _STEP)
            pending = d.unconsumed_tail
            if not chunk and not pending:
                raise DicomFileError(origin, "truncated DICOM file (the deflated dataset ends early)")
            total += len(chunk)
            if total > limit:
                raise _over_inflated(origin, limit)
            if chunks is not None:
                chunks.append(chunk)
                if total > keep:
                    chunks = None
    except zlib.error as exc:
        raise DicomFileError(origin, f"corrupt deflated dataset ({exc})") from None
    return b"".join(chunks) if chunks is not None else None


def _over_inflated(origin: str, limit: int) -> DicomLimitError:
    return DicomLimitError(
        origin,
        f"the deflated dataset inflates to more than {describe_bytes(limit)} (a decompression bomb?); "
        "refused before reading it (limit CHARTAGENT_DICOM_MAX_INFLATED_BYTES)",
    )


def read_deflated(
    source: bytes | BinaryIO | Path,
    origin: str,
    *,
    stop_before_pixels: bool = False,
    limits: DicomLimits | None = None,
) -> tuple[FileDataset, int] | None:
    """A Deflated Explicit VR Little Endian Part 10 object parsed within the limits, with the size
    of its inflated dataset; None (and a file object left where it was) for any other object.

    Element values are all in memory (the inflated bytes are no file to defer reads to).
    """
    lim = limits or dicom_limits()
    if isinstance(source, Path):
        try:
            with open(source, "rb") as fp:
                return _read_deflated(fp, origin, stop_before_pixels, lim)
        except OSError as exc:
            raise DicomFileError(origin, f"cannot read ({exc.strerror or type(exc).__name__})") from None
    stream: BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else source
    start = stream.tell()
    try:
        return _read_deflated(stream, origin, stop_before_pixels, lim)
    finally:
        if not isinstance(source, bytes):
            stream.seek(start)


def _read_deflated(
    fp: BinaryIO, origin: str, stop_before_pixels: bool, limits: DicomLimits
) -> tuple[FileDataset, int] | None:
    start = fp.tell()
    if _DEFLATED_UID not in fp.read(_PREFIX):
        return None
    fp.seek(start)
    meta = _part10_meta(fp)
    if meta is None:
        return None
    preamble, file_meta = meta
    syntax = file_meta.get("TransferSyntaxUID")
    if syntax is None or str(syntax) != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return None
    compressed = fp.read(int(limits.max_inflated_bytes * (1 + _DEFLATE_SLACK)) + 1025)
    inflated = inflate(compressed, origin, limits.max_inflated_bytes)
    buffer = DicomBytesIO(inflated)
    buffer.name = origin
    stop = _at_pixel_data if stop_before_pixels else None
    try:
        dataset = read_dataset(
            cast(BinaryIO, buffer), is_implicit_VR=False, is_little_endian=True, stop_when=stop
        )
    except (struct.error, ValueError, KeyError, IndexError, NotImplementedError) as exc:
        raise DicomFileError(origin, f"corrupt deflated DICOM file ({type(exc).__name__})") from None
    ds = FileDataset(buffer, dataset, preamble, file_meta, False, True)
    ds.set_original_encoding(False, True, dataset._character_set)
    return ds, len(inflated)


def _part10_meta(fp: BinaryIO) -> tuple[bytes | None, FileMetaDataset] | None:
    """The preamble and file meta at the start of `fp`; None when pydicom finds no Part 10 file, or
    a broken meta (reading the file whole explains what is wrong)."""
    try:
        preamble = read_preamble(fp, False)
    except _META_ERRORS:
        return None
    try:
        return preamble, _read_file_meta_info(fp)
    except _META_ERRORS:
        return None


def _at_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag in (0x7FE00010, 0x7FE00009, 0x7FE00008)


def screen_file(path: Path, origin: str, limits: DicomLimits | None = None) -> None:
    """Refuse a file that another reader (wsidicom) would inflate past the limit; nothing is kept.

    Other files pass: their reader reads values by offset, within the file.
    """
    lim = limits or dicom_limits()
    try:
        with open(path, "rb") as fp:
            size = os.fstat(fp.fileno()).st_size
            if _DEFLATED_UID not in fp.read(_PREFIX):
                return
            fp.seek(0)
            found = _part10_meta(fp)
            if found is None:
                return
            _, meta = found
            if str(meta.get("TransferSyntaxUID", "")) != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
                return
            if size - fp.tell() > lim.max_inflated_bytes * (1 + _DEFLATE_SLACK) + 1024:
                raise _over_inflated(origin, lim.max_inflated_bytes)
            _inflate_counting(fp.read(), origin, lim.max_inflated_bytes, keep=0)
    except OSError as exc:
        raise DicomFileError(origin, f"cannot read ({exc.strerror or type(exc).__name__})") from None


# ---------------------------------------------------------------------------- a parsed header


def check_declared_lengths(ds: Dataset, origin: str, limits: DicomLimits | None = None) -> None:
    """Refuse a top-level element that declares more than `max_instance_bytes` (before any
    truncation check: a 4 GB length in a small file is a refusal, not a cut)."""
    limit = (limits or dicom_limits()).max_instance_bytes
    for tag, elem in ds.items():
        if isinstance(elem, RawDataElement) and elem.length != _UNDEFINED_LENGTH and elem.length > limit:
            raise DicomLimitError(
                origin,
                f"element {Tag(tag)} declares {elem.length} bytes ({describe_bytes(elem.length)}), "
                f"over the limit of {describe_bytes(limit)} for one object "
                "(CHARTAGENT_DICOM_MAX_INSTANCE_BYTES)",
            )


def check_dataset(ds: Dataset, origin: str, limits: DicomLimits | None = None) -> None:
    """Every check on a parsed header (module docstring); DicomLimitError naming `origin`."""
    lim = limits or dicom_limits()
    check_declared_lengths(ds, origin, lim)
    check_pixel_data(ds, origin, lim)


def expected_pixel_bytes(ds: Dataset) -> tuple[int, int, int] | None:
    """(bytes of all frames, bytes of one frame, frames) of native pixel data as pydicom computes
    them (`get_expected_length`), from the raw header; None when the header does not say."""
    rows, columns = _uint(ds, _ROWS), _uint(ds, _COLUMNS)
    bits = _uint(ds, _BITS_ALLOCATED)
    if not rows or not columns or not bits:
        return None
    samples = _uint(ds, _SAMPLES) or 1
    frames = _number_of_frames(ds)
    if frames is None:
        return None
    pixels = rows * columns * samples
    if bits == 1:
        frame = (pixels + 7) // 8
        total = (pixels * frames + 7) // 8
    else:
        frame = pixels * (bits // 8)
        total = frame * frames
    if _text(ds, _PHOTOMETRIC) == "YBR_FULL_422":
        frame, total = frame // 3 * 2, total // 3 * 2
    return total, frame, frames


def check_pixel_data(ds: Dataset, origin: str, limits: DicomLimits | None = None) -> None:
    """Pixel data that does not fit the image the header describes, or a frame over the limit."""
    lim = limits or dicom_limits()
    elem: DataElement | RawDataElement | None = _raw(ds, _PIXEL_DATA)
    if elem is None:
        return
    expected = expected_pixel_bytes(ds)
    if expected is None:
        return
    total, frame, frames = expected
    _check_frame(ds, frame, origin, lim)
    length = _length(elem)
    if length is None:
        return
    if length == _UNDEFINED_LENGTH:
        fragments = _fragment_count(elem.value) if isinstance(elem.value, bytes) else None
        if fragments is not None and fragments < frames:
            raise DicomLimitError(
                origin,
                f"NumberOfFrames is {frames} but the encapsulated pixel data has {fragments} fragment(s)",
            )
        return
    if total <= length < total + max(frame, 1):
        return  # it fits (less than a frame more is padding, as pydicom reads it)
    syntax = _text(ds.file_meta, _TRANSFER_SYNTAX) if hasattr(ds, "file_meta") else ""
    if syntax and syntax not in _NATIVE_SYNTAXES:
        return
    shape = f"{frames} frame(s) of {_uint(ds, _ROWS)} x {_uint(ds, _COLUMNS)}"
    if length < total:
        raise DicomLimitError(
            origin, f"pixel data has {length} bytes, shorter than the {total} bytes {shape} need"
        )
    if frame and length - total >= frame:
        raise DicomLimitError(
            origin,
            f"pixel data has {length} bytes ({describe_bytes(length)}), at least one frame more than "
            f"the {total} bytes {shape} allow; refused before decoding",
        )


def check_frame_size(ds: Dataset, origin: str, limits: DicomLimits | None = None) -> None:
    """Refuse to decode a frame larger than `max_frame_bytes` (what a decoder would allocate)."""
    expected = expected_pixel_bytes(ds)
    if expected is not None:
        _check_frame(ds, expected[1], origin, limits or dicom_limits())


def _check_frame(ds: Dataset, frame: int, origin: str, limits: DicomLimits) -> None:
    if frame > limits.max_frame_bytes:
        raise DicomLimitError(
            origin,
            f"one frame of {_uint(ds, _ROWS)} x {_uint(ds, _COLUMNS)} pixels is {describe_bytes(frame)} "
            f"decoded, over the limit of {describe_bytes(limits.max_frame_bytes)} "
            "(CHARTAGENT_DICOM_MAX_FRAME_BYTES)",
        )


def _length(elem: DataElement | RawDataElement) -> int | None:
    if isinstance(elem, RawDataElement):
        return int(elem.length)
    if isinstance(elem.value, bytes):
        return _UNDEFINED_LENGTH if elem.is_undefined_length else len(elem.value)
    return None


def _fragment_count(value: bytes) -> int | None:
    """Items after the Basic Offset Table in encapsulated pixel data; None if malformed (the
    truncation checks report that)."""
    offset, items = 0, 0
    while offset + 8 <= len(value):
        group, element, length = struct.unpack_from("<HHL", value, offset)
        if (group, element) == _SEQUENCE_DELIMITER:
            return max(0, items - 1)
        if (group, element) != _ITEM:
            return None
        items += 1
        offset += 8 + length
    return max(0, items - 1)


def _raw(ds: Dataset, tag: BaseTag) -> DataElement | RawDataElement | None:
    """`ds.get_item(tag, keep_deferred=True)` without its key conversion, a third of the cost of
    these checks (the tags here are BaseTags already)."""
    return ds._dict.get(tag)


def _uint(ds: Dataset, tag: BaseTag) -> int | None:
    """A US value from its raw bytes when not yet converted (conversion costs more than a header
    read), else through pydicom; None when absent or not one number."""
    elem: DataElement | RawDataElement | None = _raw(ds, tag)
    if elem is None:
        return None
    value = elem.value
    if isinstance(elem, RawDataElement) and elem.VR in ("US", None) and isinstance(value, bytes):
        if len(value) != 2:
            return None
        return int.from_bytes(value, "little" if elem.is_little_endian else "big")
    try:
        return int(ds[tag].value)
    except (TypeError, ValueError, KeyError):
        return None


def _number_of_frames(ds: Dataset) -> int | None:
    elem: DataElement | RawDataElement | None = _raw(ds, _FRAMES)
    if elem is None:
        return 1
    value = elem.value
    if isinstance(value, bytes):
        text = value.decode("ascii", "replace").strip(" \0")  # not ASCII: int() refuses it below
        try:
            frames = int(text) if text else 1
        except ValueError:
            return None
    else:
        try:
            frames = int(ds[_FRAMES].value or 1)
        except (TypeError, ValueError):
            return None
    return (frames or 1) if frames >= 0 else None


def _text(ds: Dataset, tag: BaseTag) -> str:
    elem: DataElement | RawDataElement | None = _raw(ds, tag)
    if elem is None or elem.value is None:
        return ""
    if isinstance(elem.value, bytes):
        return elem.value.decode("ascii", "replace").strip("\0 ")
    return str(elem.value)
