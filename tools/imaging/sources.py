"""Where DICOM instances come from: a folder, a file, or a DICOMweb study/series.

Every source gives a `LoadResult`: the instances that read cleanly and, for every input that
did not, an `InstanceFailure` naming it (file path or DICOMweb UIDs) and the problem. A corrupt,
truncated or non-DICOM file is a failure, not an exception, so one bad file in a folder does
not hide the others. Nothing here knows about modalities; volume assembly builds on this.

pydicom reads a truncated file without raising; truncation is detected here from what it
leaves behind (a value shorter than its declared length, an encapsulated pixel data sequence
without its end). pydicom's warnings are not passed on: they can quote element values, which
may be patient data.

Files are read lazily by default (`defer_pixels`): the header is parsed and large values (native
pixel data above all) stay in the file, to be read when a slice is decoded (`volume.decode_slice`
reads them with one `readinto` at their offset). A 300-slice CT of which 85 slices are sampled
then reads 85 slices' pixels, not 300. What that gives up: a deferred value is checked against the
file's size (a file cut in its pixel data is still a failure here, naming it), but its bytes are not
read, so an I/O error inside them, or a file changed after loading, shows only when (and if) that
slice is decoded, as an error naming the file. Encapsulated (compressed) pixel data are read and
their fragments walked as before. Explicit and implicit VR little-endian files whose top-level
elements all have defined lengths are parsed by a small reader of our own (the same raw elements
pydicom would build, at a fraction of its per-element cost); anything else is read by pydicom.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import pydicom
from pydantic import BaseModel, ConfigDict, field_validator
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from fhir_adapters.error_tree import BadInputError
from tools.file_kinds import PREFIX_BYTES, looks_like
from tools.imaging.dicom_limits import check_declared_lengths, check_pixel_data, read_deflated
from tools.imaging.dicomweb import (
    DicomWebAuthError,
    DicomWebClient,
    DicomWebHttpError,
    DicomWebNotFound,
    DicomWebProtocolError,
    InstanceMatch,
    is_uid,
    validate_uid,
)
from tools.imaging.errors import DicomFileError
from tools.imaging.tags import SHARED_TAGS, shared_tag

__all__ = [
    "DicomSourceError",
    "DicomWebRef",
    "FileSource",
    "FolderSource",
    "InstanceFailure",
    "LoadResult",
    "LoadedInstance",
    "Source",
    "load_dicomweb",
    "load_file",
    "load_folder",
    "load_source",
    "parse_source",
    "read_instance",
]

DICOMWEB_SCHEME = "dicomweb:"
_UNDEFINED_LENGTH = 0xFFFFFFFF
_PIXEL_DATA = shared_tag(0x7FE00010)
_PIXEL_DATA_TAGS = (_PIXEL_DATA, shared_tag(0x7FE00008), shared_tag(0x7FE00009))  # + float, double float
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_MEDIA_STORAGE_SOP_CLASS = shared_tag(0x00020002)
_SOP_INSTANCE_UID = shared_tag(0x00080018)  # DICOMDIR: an index of files, not an instance
_ROWS = shared_tag(0x00280010)
_ITEM = (0xFFFE, 0xE000)
_SEQUENCE_DELIMITER = (0xFFFE, 0xE0DD)

# Lazy reads: values longer than this stay in the file until used (pixel data, in practice).
DEFER_SIZE = 16 * 1024
_CHUNK = 16 * 1024  # first read of a file: the header of a typical CT/MR slice fits
_SPECIFIC_CHARACTER_SET = 0x00080005
_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_VR_LE = "1.2.840.10008.1.2"
_TRANSFER_SYNTAX = 0x00020010
_ELEMENT_EXPLICIT = struct.Struct("<HH2sH")
_ELEMENT_IMPLICIT = struct.Struct("<HHL")
_LENGTH_32 = struct.Struct("<L")
_GROUP = struct.Struct("<H")
_VR_NAMES = {str(vr).encode(): str(vr) for vr in VR if len(str(vr)) == 2}
_VR_32 = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)


class DicomSourceError(BadInputError):
    """An input that cannot be read at all (or, from `load_file`, a file that is not a usable instance)."""

    def __init__(self, origin: str, reason: str) -> None:
        self.origin = origin
        self.reason = reason
        super().__init__(f"{origin}: {reason}")


class _DicomDirError(DicomSourceError):
    """A DICOMDIR: skipped in folders, refused as a single file."""


@dataclass(frozen=True, slots=True)
class LoadedInstance:
    """One DICOM instance and where it came from (a file path or `dicomweb:STUDY/SERIES/SOP`).

    The dataset is left out of the repr: printing it converts every element and reads every
    deferred value, and asyncio.run formats its main task's result (a LoadResult of hundreds of
    instances) when it restores the SIGINT handler, which cost the CLI about 0.3 s per CT series.
    """

    origin: str
    dataset: Dataset = field(repr=False)

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def series_instance_uid(self) -> str | None:
        uid = self.dataset.get("SeriesInstanceUID")
        return str(uid) if uid else None


@dataclass(frozen=True, slots=True)
class InstanceFailure:
    """An input that did not give an instance, and why."""

    origin: str
    reason: str


@dataclass(frozen=True, slots=True)
class LoadResult:
    instances: tuple[LoadedInstance, ...] = ()
    failures: tuple[InstanceFailure, ...] = ()

    def __add__(self, other: LoadResult) -> LoadResult:
        return LoadResult(self.instances + other.instances, self.failures + other.failures)


# ---------------------------------------------------------------------------- reading (pure core)


def read_instance(
    data: bytes | BinaryIO | Path,
    origin: str,
    *,
    stop_before_pixels: bool = False,
    defer_pixels: bool = False,
) -> LoadedInstance:
    """Parse one Part 10 file; DicomSourceError naming `origin` when it is not a complete instance.

    `defer_pixels` (a Path only): leave values over DEFER_SIZE in the file, checked against its size
    but read when used (see the module docstring).
    """
    try:
        return _read_instance(data, origin, stop_before_pixels, defer_pixels)
    except DicomFileError as exc:  # the limits' refusals (dicom_limits), as this module reports files
        raise DicomSourceError(exc.origin, exc.reason) from None


def _read_instance(
    data: bytes | BinaryIO | Path, origin: str, stop_before_pixels: bool, defer_pixels: bool
) -> LoadedInstance:
    source: BinaryIO | Path = io.BytesIO(data) if isinstance(data, bytes) else data
    # The checks below convert elements, which warns about odd values too: all inside.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        size: int | None
        if defer_pixels and not stop_before_pixels and isinstance(data, Path):
            ds, size = _read_deferred(data, origin)
        elif (deflated := read_deflated(source, origin, stop_before_pixels=stop_before_pixels)) is not None:
            ds, size = deflated[0], None if stop_before_pixels else deflated[1]
        else:
            ds = _dcmread(source, origin, stop_before_pixels)
            size = None if stop_before_pixels else len(data) if isinstance(data, bytes) else _size(data)
        check_declared_lengths(ds, origin)  # before the truncation checks: a 4 GB length is no cut
        if any("End of file reached" in str(w.message) for w in caught):
            raise DicomSourceError(origin, "truncated DICOM file (a sequence ends at end of file)")
        problem = _truncation(ds, size)
        if problem:
            raise DicomSourceError(origin, f"truncated DICOM file ({problem})")
        if _text(ds.file_meta, _MEDIA_STORAGE_SOP_CLASS) == _MEDIA_STORAGE_DIRECTORY:
            raise _DicomDirError(origin, "a DICOMDIR (index of files), not an instance")
        if not _text(ds, _SOP_INSTANCE_UID):
            raise DicomSourceError(
                origin, "no SOPInstanceUID: not a DICOM instance (or cut off in its header)"
            )
        if stop_before_pixels and _ROWS not in ds._dict and "Image Storage" in _sop_class_name(ds):
            raise DicomSourceError(origin, "truncated DICOM file (an image instance without Rows)")
        check_pixel_data(ds, origin)
    return LoadedInstance(origin, ds)


def _dcmread(
    source: BinaryIO | Path, origin: str, stop_before_pixels: bool, defer_size: int | None = None
) -> Dataset:
    try:
        return pydicom.dcmread(source, stop_before_pixels=stop_before_pixels, defer_size=defer_size)
    except InvalidDicomError:
        raise DicomSourceError(origin, f"not a DICOM Part 10 file ({_not_dicom(source)})") from None
    except (EOFError, struct.error, BytesLengthException) as exc:
        raise DicomSourceError(origin, f"truncated or corrupt DICOM file ({type(exc).__name__})") from None
    except (ValueError, KeyError, IndexError, NotImplementedError) as exc:
        raise DicomSourceError(origin, f"corrupt DICOM file ({type(exc).__name__})") from None
    except OSError as exc:
        raise DicomSourceError(origin, f"cannot read ({exc.strerror or type(exc).__name__})") from None


def _not_dicom(source: BinaryIO | Path) -> str:
    """Why pydicom found no Part 10 header: an empty file, or what the file looks like."""
    try:
        if isinstance(source, Path):
            with open(source, "rb") as fp:
                prefix = fp.read(PREFIX_BYTES)
        else:
            source.seek(0)
            prefix = source.read(PREFIX_BYTES)
    except OSError:
        prefix = b"?"
    if not prefix:
        return "an empty file"
    kind = looks_like(prefix)
    return f"no 'DICM' prefix; looks like {kind}" if kind else "no 'DICM' prefix"


def _read_deferred(path: Path, origin: str) -> tuple[Dataset, int]:
    """The file's header, values over DEFER_SIZE left in the file; and the file's size."""
    try:
        fp = open(path, "rb")  # noqa: SIM115 (closed below; pydicom's errors are translated too)
    except OSError as exc:
        raise DicomSourceError(origin, f"cannot read ({exc.strerror or type(exc).__name__})") from None
    with fp:
        stat = os.fstat(fp.fileno())
        size = stat.st_size
        ds: Dataset | None
        try:
            ds = _read_header(fp, size, stat.st_mtime)
        except (struct.error, ValueError, KeyError, IndexError, TypeError):
            ds = None  # anything odd: pydicom reads it and the checks explain what is wrong
        if ds is None:
            fp.seek(0)
            deflated = read_deflated(fp, origin)  # pydicom would inflate it whole, unbounded
            if deflated is not None:
                return deflated
            ds = _dcmread(fp, origin, False, DEFER_SIZE)
    pixels: DataElement | RawDataElement | None = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    if isinstance(pixels, RawDataElement) and pixels.value is None and pixels.length == _UNDEFINED_LENGTH:
        # Encapsulated pixel data: pydicom scanned them to their end anyway; read them for the checks.
        try:
            ds.get_item(_PIXEL_DATA)
        except (OSError, EOFError, ValueError) as exc:
            reason = f"truncated or corrupt DICOM file ({type(exc).__name__})"
            raise DicomSourceError(origin, reason) from None
    return ds, size


def _read_header(fp: BinaryIO, size: int, mtime: float) -> FileDataset | None:
    """A Part 10 file in explicit or implicit VR little endian, as pydicom's `dcmread(defer_size=)`
    would read it (the same raw elements, values read on use), or None where the file is anything
    else: another transfer syntax, undefined lengths at the top level (sequences, encapsulated pixel
    data), a command set, an odd VR, or a cut that pydicom's reading then reports.

    `size` and `mtime` are the open file's (fstat): where reading reaches `size` the file ends,
    without a read to find out; `mtime` is the dataset's timestamp, as pydicom would stat it.
    """
    buf = fp.read(_CHUNK)
    if len(buf) < 132 or buf[128:132] != b"DICM":
        return None
    meta, pos, buf, base = _elements(fp, buf, 0, 132, implicit=False, group=2, size=size)
    if meta is None:
        return None
    syntax = meta.get(BaseTag(_TRANSFER_SYNTAX))
    if syntax is None or not isinstance(syntax.value, bytes):
        return None
    uid = syntax.value.rstrip(b"\0 ").decode("ascii", "replace")
    if uid not in (_EXPLICIT_VR_LE, _IMPLICIT_VR_LE):
        return None
    implicit = uid == _IMPLICIT_VR_LE
    elements, _, _, _ = _elements(fp, buf, base, pos, implicit=implicit, group=None, size=size)
    if not elements:
        return None
    return _file_dataset(fp.name, elements, buf[:128], meta, implicit, mtime)


@functools.cache
def _blank_attributes() -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The attributes a new FileMetaDataset and a new FileDataset start with (less those that
    `_file_dataset` sets), where all are plain values or dicts of them (copied for each dataset);
    None otherwise (another pydicom: its constructors are used)."""
    meta = FileMetaDataset()
    blanks = (dict(vars(meta)), dict(vars(FileDataset(io.BytesIO(), {}, b"", meta, False, True))))
    for attributes, own in zip(
        blanks, (_META_ATTRIBUTES, _FILE_ATTRIBUTES + _ENCODING_ATTRIBUTES), strict=True
    ):
        if not {*own} - {*_ENCODING_ATTRIBUTES} <= attributes.keys():
            return None
        for name in own:
            attributes.pop(name, None)
        for value in attributes.values():
            values = value.values() if isinstance(value, dict) else (value,)
            if not all(v is None or isinstance(v, bool | int | float | str | bytes) for v in values):
                return None
    return blanks


# What _file_dataset sets on each dataset (beyond the blank attributes), as pydicom's constructors do.
_META_ATTRIBUTES = ("_dict", "_read_implicit", "_read_little", "_read_charset")
_FILE_ATTRIBUTES = (
    "_dict", "file_meta", "preamble", "_read_implicit", "_read_little", "_read_charset", "fileobj_type",
    "filename", "buffer", "timestamp",
)  # fmt: skip
_ENCODING_ATTRIBUTES = ("_is_implicit_VR", "_is_little_endian")  # pydicom < 4 only


def _file_dataset(
    filename: str,
    elements: dict[BaseTag, DataElement | RawDataElement],
    preamble: bytes,
    meta: dict[BaseTag, DataElement | RawDataElement],
    implicit: bool,
    mtime: float,
) -> FileDataset:
    """What `FileDataset(fp, elements, preamble, FileMetaDataset(meta), implicit, True)` then
    `set_original_encoding` give for a file opened from `filename` (group 2 elements in `meta`),
    built from blank attributes: pydicom's constructors set some 40 attributes through
    `Dataset.__setattr__` (a keyword look-up each) and stat the file twice, which cost a fifth of
    reading a CT slice's header."""
    blanks = _blank_attributes()
    # Dataset._character_set: the (0008,0005) value, else the parent encoding (the default here).
    charset = elements.get(BaseTag(_SPECIFIC_CHARACTER_SET))
    if blanks is None:
        file_meta = FileMetaDataset(meta)
        file_meta.set_original_encoding(False, True, default_encoding)
        ds = FileDataset(filename, elements, preamble, file_meta, implicit, True)
        ds.timestamp = mtime
        ds.set_original_encoding(implicit, True, ds._character_set if charset else default_encoding)
        return ds
    meta_blank, file_blank = blanks
    file_meta = FileMetaDataset.__new__(FileMetaDataset)
    _fill(file_meta, meta_blank, _dict=meta, _read_implicit=False, _read_little=True)
    vars(file_meta)["_read_charset"] = default_encoding
    ds = FileDataset.__new__(FileDataset)
    _fill(ds, file_blank, _dict=elements, file_meta=file_meta, preamble=preamble, _read_implicit=implicit)
    attributes = vars(ds)
    attributes.update(_read_little=True, fileobj_type=open, filename=filename, buffer=None, timestamp=mtime)
    if _blank_has_encoding():
        attributes.update(_is_implicit_VR=implicit, _is_little_endian=True)
    attributes["_read_charset"] = ds._character_set if charset else default_encoding
    return ds


@functools.cache
def _blank_has_encoding() -> bool:
    """Whether this pydicom's datasets still carry is_implicit_VR/is_little_endian (before 4.0)."""
    return "_is_implicit_VR" in vars(FileMetaDataset())


def _fill(ds: Dataset, blank: dict[str, Any], **values: Any) -> None:
    attributes = vars(ds)
    attributes.update(blank)
    for name, value in blank.items():
        if isinstance(value, dict):
            attributes[name] = dict(value)  # a dataset's own (private blocks, pixel options)
    attributes.update(values)


def _elements(
    fp: BinaryIO, buf: bytes, base: int, pos: int, *, implicit: bool, group: int | None, size: int
) -> tuple[dict[BaseTag, DataElement | RawDataElement] | None, int, bytes, int]:
    """Raw elements from file offset `pos` to the end of the file (`size` bytes) or of `group`.

    `buf` holds the file from offset `base`; it is extended (or moved on past deferred values) as
    needed, and returned with the position where reading stopped.
    """
    out: dict[BaseTag, DataElement | RawDataElement] = {}
    first = True
    # Locals: this loop runs for every element of every file of a folder.
    unpack_explicit, unpack_implicit = _ELEMENT_EXPLICIT.unpack_from, _ELEMENT_IMPLICIT.unpack_from
    vr_names, vr_32, tags, top = _VR_NAMES, _VR_32, SHARED_TAGS, group is None
    end = base + len(buf)
    while True:
        if pos >= size:
            return out, pos, buf, base  # end of file (past it: a deferred value the checks find cut)
        if pos + 12 > end:
            buf, base = _cover(fp, buf, base, pos, 12)
            end = base + len(buf)
        off = pos - base
        left = end - pos
        if left == 0:
            return out, pos, buf, base  # end of file
        if left < 8:
            return None, pos, buf, base  # a cut element header
        if not top and _GROUP.unpack_from(buf, off)[0] != group:
            return out, pos, buf, base
        vr: str | None
        if implicit:
            grp, elem, length = unpack_implicit(buf, off)
            # pydicom switches to explicit VR when the first element looks like it: let it.
            if first and 0x40 < buf[off + 4] < 0x5B and 0x40 < buf[off + 5] < 0x5B:
                return None, pos, buf, base
            vr, value_tell = None, pos + 8
        else:
            grp, elem, raw_vr, length = unpack_explicit(buf, off)
            vr = vr_names.get(raw_vr)
            if vr is None:
                return None, pos, buf, base
            value_tell = pos + 8
            if vr in vr_32:
                if left < 12:
                    return None, pos, buf, base
                (length,) = _LENGTH_32.unpack_from(buf, off + 8)
                value_tell = pos + 12
        first = False
        if top and grp in (0x0000, 0x0002, 0xFFFE):
            return None, pos, buf, base  # command set, stray meta or delimiters: pydicom's business
        if length == _UNDEFINED_LENGTH:
            return None, pos, buf, base
        key = grp << 16 | elem
        tag = tags.get(key)
        if tag is None:
            tag = shared_tag(key)
        value: Any
        if length > DEFER_SIZE and top and key != _SPECIFIC_CHARACTER_SET:
            value = None  # read on use; checked against the file's size
        elif length == 0:
            value = empty_value_for_VR(vr, raw=True)
        else:
            if value_tell + length > end:
                buf, base = _cover(fp, buf, base, value_tell, length)
                end = base + len(buf)
            start = value_tell - base
            value = buf[start : start + length]
            if len(value) < length:
                return None, pos, buf, base  # cut inside a value
        out[tag] = RawDataElement(tag, vr, length, value, value_tell, implicit, True)
        pos = value_tell + length


def _cover(fp: BinaryIO, buf: bytes, base: int, pos: int, n: int) -> tuple[bytes, int]:
    """`buf` (the file from offset `base`) made to hold bytes [pos, pos + n) where the file has them."""
    end = base + len(buf)
    if pos + n <= end:
        return buf, base
    if pos >= end:
        fp.seek(pos)
        return fp.read(max(n, _CHUNK)), pos
    fp.seek(end)
    return buf[pos - base :] + fp.read(max(pos + n - end, _CHUNK)), pos


def _text(ds: Dataset, tag: BaseTag) -> str:
    """A text element's value ('' when absent), from its raw bytes where pydicom has not converted it:
    its conversion validates the value, which costs more than the rest of reading a header. (The
    look-ups here go to the element dict: `get_item` and `in` convert their key, at a cost.)"""
    elem: DataElement | RawDataElement | None = ds._dict.get(tag)
    if elem is None or elem.value is None:
        return ""
    if isinstance(elem.value, bytes):
        return elem.value.decode("ascii", "replace").strip("\0 ")
    return str(elem.value)


def _sop_class_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID")
    return str(getattr(uid, "name", "")) if uid else ""


def _size(source: BinaryIO | Path) -> int | None:
    if isinstance(source, Path):
        return source.stat().st_size
    return None


def _truncation(ds: Dataset, size: int | None) -> str | None:
    """What a truncated read left behind: a top-level value shorter than its declared length,
    encapsulated pixel data whose last fragment is cut off, a partial element header at the end
    (pydicom stops there silently) or image attributes without pixel data.

    `size` is the file's size when it was read whole (None with `stop_before_pixels`).
    """
    elements = ds._dict
    if size is not None:
        last = elements[max(elements, key=int)] if elements else None
        if isinstance(last, RawDataElement) and last.length != _UNDEFINED_LENGTH:
            stray = size - (last.value_tell + last.length)
            if 0 < stray < 12:  # shorter than any element header: the next element was cut off
                return f"{stray} byte(s) of an element header after the last element"
        if not any(t in elements for t in _PIXEL_DATA_TAGS) and (
            _ROWS in elements or "Image Storage" in _sop_class_name(ds)
        ):
            # A cut between two elements leaves a well-formed but incomplete header.
            return "an image instance without pixel data"
    # items() gives the stored elements as they are (iterating a Dataset would convert the raw
    # ones, and get_item would read deferred values).
    for tag, elem in elements.items():
        if not isinstance(elem, RawDataElement):
            continue
        if elem.value is None:
            if size is not None and elem.length not in (0, _UNDEFINED_LENGTH):  # deferred: in the file?
                have = max(0, min(elem.length, size - elem.value_tell))
                if have < elem.length:
                    return f"element {Tag(tag)} has {have} of {elem.length} bytes"
            continue
        if elem.length != _UNDEFINED_LENGTH and len(elem.value) < elem.length:
            return f"element {Tag(tag)} has {len(elem.value)} of {elem.length} bytes"
        if elem.length == _UNDEFINED_LENGTH and tag == _PIXEL_DATA:
            problem = _fragments_problem(elem.value, little_endian=elem.is_little_endian)
            if problem:
                return problem
    return None


def _fragments_problem(value: bytes, *, little_endian: bool) -> str | None:
    """Walk the items of encapsulated pixel data (the Basic Offset Table, then the fragments)."""
    fmt = "<HHL" if little_endian else ">HHL"
    offset = 0
    while offset < len(value):
        if offset + 8 > len(value):
            return "pixel data item header cut off"
        group, element, length = struct.unpack_from(fmt, value, offset)
        if (group, element) == _SEQUENCE_DELIMITER:
            return None
        if (group, element) != _ITEM:
            return f"unexpected tag ({group:04X},{element:04X}) in encapsulated pixel data"
        if offset + 8 + length > len(value):
            return f"pixel data fragment has {len(value) - offset - 8} of {length} bytes"
        offset += 8 + length
    return None


# ---------------------------------------------------------------------------- files and folders


def load_file(
    path: str | Path, *, stop_before_pixels: bool = False, defer_pixels: bool = True
) -> LoadedInstance:
    """One file; DicomSourceError naming the path when it is missing or not a complete instance.

    Pixel data stay in the file until decoded unless `defer_pixels` is False (module docstring).
    """
    p = Path(path)
    if not p.is_file():
        raise DicomSourceError(str(p), "no such file")
    return read_instance(p, str(p), stop_before_pixels=stop_before_pixels, defer_pixels=defer_pixels)


def load_folder(
    path: str | Path, *, stop_before_pixels: bool = False, defer_pixels: bool = True
) -> LoadResult:
    """Every file under `path` (recursively, in path order; hidden files and folders skipped).

    DICOMDIR index files are skipped (they describe the other files); every other file that is
    not a complete DICOM instance is a failure naming it. Pixel data stay in the files until
    decoded unless `defer_pixels` is False (see the module docstring for what that trades).
    """
    root = Path(path)
    if not root.is_dir():
        raise DicomSourceError(str(root), "no such folder")
    instances: list[LoadedInstance] = []
    failures: list[InstanceFailure] = []
    for file in _files(root):
        try:
            inst = read_instance(
                file, str(file), stop_before_pixels=stop_before_pixels, defer_pixels=defer_pixels
            )
            instances.append(inst)
        except _DicomDirError:
            continue
        except DicomSourceError as exc:
            failures.append(InstanceFailure(exc.origin, exc.reason))
    return LoadResult(tuple(instances), tuple(failures))


def _files(root: Path) -> Iterator[Path]:
    # os.walk does not follow symlinked folders, so a link loop cannot trap us.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        for name in sorted(filenames):
            if not name.startswith("."):
                yield folder / name


# ---------------------------------------------------------------------------- DICOMweb


def dicomweb_origin(study_uid: str, series_uid: str, sop_uid: str) -> str:
    return f"{DICOMWEB_SCHEME}{study_uid}/{series_uid}/{sop_uid}"


async def load_dicomweb(
    client: DicomWebClient,
    study_uid: str,
    series_uid: str | None = None,
    *,
    stop_before_pixels: bool = False,
) -> LoadResult:
    """Every instance of a study (or of one of its series), as stored.

    Each series comes as one streamed multipart body (one request; the fastest way, see
    `DicomWebClient.retrieve_series`). Where the server refuses that or the stream breaks,
    the series is fetched again instance by instance, concurrently: an instance that is gone
    (404) or not a readable Part 10 file is then a failure of its own. Errors that concern
    the whole server (auth, transport) are raised.
    """
    validate_uid(study_uid, "StudyInstanceUID")
    if series_uid is None:
        series = [s.series_instance_uid for s in await client.search_series(study_uid)]
    else:
        series = [validate_uid(series_uid, "SeriesInstanceUID")]
    result = LoadResult()
    for uid in series:
        try:
            result += await _load_series_stream(client, study_uid, uid, stop_before_pixels)
        except DicomWebAuthError:
            raise
        except (DicomWebHttpError, DicomWebProtocolError):
            result += await _load_series_per_instance(client, study_uid, uid, stop_before_pixels)
    return result


async def _load_series_stream(
    client: DicomWebClient, study_uid: str, series_uid: str, stop_before_pixels: bool
) -> LoadResult:
    instances: list[LoadedInstance] = []
    failures: list[InstanceFailure] = []
    index = 0
    async for data in client.retrieve_series(study_uid, series_uid, strategy="multipart"):
        index += 1
        where = f"{DICOMWEB_SCHEME}{study_uid}/{series_uid} (part {index})"
        try:
            inst = read_instance(data, where, stop_before_pixels=stop_before_pixels)
        except DicomSourceError as exc:
            failures.append(InstanceFailure(where, exc.reason))
            continue
        origin = dicomweb_origin(study_uid, series_uid, inst.sop_instance_uid)
        instances.append(LoadedInstance(origin, inst.dataset))
    return LoadResult(tuple(instances), tuple(failures))


async def _load_series_per_instance(
    client: DicomWebClient, study_uid: str, series_uid: str, stop_before_pixels: bool
) -> LoadResult:
    matches = await client.search_instances(study_uid, series_uid)
    # The client's semaphore bounds the requests in flight.
    results = await asyncio.gather(*(_fetch(client, m, stop_before_pixels) for m in matches))
    return LoadResult(
        tuple(r for r in results if isinstance(r, LoadedInstance)),
        tuple(r for r in results if isinstance(r, InstanceFailure)),
    )


async def _fetch(
    client: DicomWebClient, match: InstanceMatch, stop_before_pixels: bool
) -> LoadedInstance | InstanceFailure:
    st, se, sop = match.study_instance_uid, match.series_instance_uid, match.sop_instance_uid
    origin = dicomweb_origin(st, se, sop)
    try:
        data = await client.retrieve_instance(st, se, sop)
    except (DicomWebNotFound, DicomWebProtocolError) as exc:
        return InstanceFailure(origin, str(exc))
    try:
        return read_instance(data, origin, stop_before_pixels=stop_before_pixels)
    except DicomSourceError as exc:
        return InstanceFailure(origin, exc.reason)


# ---------------------------------------------------------------------------- SOURCE strings


class _Source(BaseModel):
    model_config = ConfigDict(frozen=True)


class FolderSource(_Source):
    kind: Literal["folder"] = "folder"
    path: Path


class FileSource(_Source):
    kind: Literal["file"] = "file"
    path: Path


class DicomWebRef(_Source):
    """`dicomweb:STUDY_UID[/SERIES_UID]` on the configured DICOMweb server."""

    kind: Literal["dicomweb"] = "dicomweb"
    study_uid: str
    series_uid: str | None = None

    @field_validator("study_uid", "series_uid")
    @classmethod
    def _uid(cls, value: str | None) -> str | None:
        return validate_uid(value) if value is not None else None

    def __str__(self) -> str:
        return f"{DICOMWEB_SCHEME}{self.study_uid}" + (f"/{self.series_uid}" if self.series_uid else "")


Source = FolderSource | FileSource | DicomWebRef


def parse_source(text: str) -> Source:
    """A CLI SOURCE: `dicomweb:STUDY_UID[/SERIES_UID]`, or the path of a folder or a file."""
    text = text.strip()
    if not text:
        raise DicomSourceError("''", "empty source")
    if text.lower().startswith(DICOMWEB_SCHEME):
        uids = text[len(DICOMWEB_SCHEME) :].strip("/").split("/")
        if len(uids) > 2 or not uids[0]:
            raise DicomSourceError(text, "expected dicomweb:STUDY_UID or dicomweb:STUDY_UID/SERIES_UID")
        if bad := [uid for uid in uids if not is_uid(uid)]:
            raise DicomSourceError(text, f"UID {bad[0]!r} is not a DICOM UID")
        return DicomWebRef(study_uid=uids[0], series_uid=uids[1] if len(uids) == 2 else None)
    path = Path(text).expanduser()
    if path.is_dir():
        return FolderSource(path=path)
    if path.is_file():
        return FileSource(path=path)
    raise DicomSourceError(text, "no such file or folder (or use dicomweb:STUDY_UID[/SERIES_UID])")


async def load_source(
    source: Source, *, client: DicomWebClient | None = None, stop_before_pixels: bool = False
) -> LoadResult:
    """Load any source; a DICOMweb reference needs `client`."""
    if isinstance(source, FolderSource):
        return await asyncio.to_thread(load_folder, source.path, stop_before_pixels=stop_before_pixels)
    if isinstance(source, FileSource):
        try:
            inst = await asyncio.to_thread(load_file, source.path, stop_before_pixels=stop_before_pixels)
        except DicomSourceError as exc:
            return LoadResult(failures=(InstanceFailure(exc.origin, exc.reason),))
        return LoadResult(instances=(inst,))
    if client is None:
        raise DicomSourceError(str(source), "a DICOMweb source needs a DICOMweb server (client)")
    return await load_dicomweb(
        client, source.study_uid, source.series_uid, stop_before_pixels=stop_before_pixels
    )
