"""Where DICOM instances come from: a folder, a file, or a DICOMweb study/series.

Every source gives a `LoadResult`: the instances that read cleanly and, for every input that
did not, an `InstanceFailure` naming it (file path or DICOMweb UIDs) and the problem. A corrupt,
truncated or non-DICOM file is a failure, not an exception, so one bad file in a folder does
not hide the others. Nothing here knows about modalities; volume assembly builds on this.

pydicom reads a truncated file without raising; truncation is detected here from what it
leaves behind (a value shorter than its declared length, an encapsulated pixel data sequence
without its end). pydicom's warnings are not passed on: they can quote element values, which
may be patient data.
"""

from __future__ import annotations

import asyncio
import io
import os
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import pydicom
from pydantic import BaseModel, ConfigDict, field_validator
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.tag import Tag

from tools.imaging.dicomweb import (
    DicomWebAuthError,
    DicomWebClient,
    DicomWebHttpError,
    DicomWebNotFound,
    DicomWebProtocolError,
    InstanceMatch,
    validate_uid,
)

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
_PIXEL_DATA = Tag(0x7FE0, 0x0010)
_PIXEL_DATA_TAGS = (_PIXEL_DATA, Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009))  # + float, double float
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR: an index of files, not an instance
_ITEM = (0xFFFE, 0xE000)
_SEQUENCE_DELIMITER = (0xFFFE, 0xE0DD)


class DicomSourceError(ValueError):
    """An input that cannot be read at all (or, from `load_file`, a file that is not a usable instance)."""

    def __init__(self, origin: str, reason: str) -> None:
        self.origin = origin
        self.reason = reason
        super().__init__(f"{origin}: {reason}")


class _DicomDirError(DicomSourceError):
    """A DICOMDIR: skipped in folders, refused as a single file."""


@dataclass(frozen=True, slots=True)
class LoadedInstance:
    """One DICOM instance and where it came from (a file path or `dicomweb:STUDY/SERIES/SOP`)."""

    origin: str
    dataset: Dataset

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
    data: bytes | BinaryIO | Path, origin: str, *, stop_before_pixels: bool = False
) -> LoadedInstance:
    """Parse one Part 10 file; DicomSourceError naming `origin` when it is not a complete instance."""
    source: BinaryIO | Path = io.BytesIO(data) if isinstance(data, bytes) else data
    # The checks below convert elements, which warns about odd values too: all inside.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = _dcmread(source, origin, stop_before_pixels)
        if any("End of file reached" in str(w.message) for w in caught):
            raise DicomSourceError(origin, "truncated DICOM file (a sequence ends at end of file)")
        size = None if stop_before_pixels else len(data) if isinstance(data, bytes) else _size(data)
        problem = _truncation(ds, size)
        if problem:
            raise DicomSourceError(origin, f"truncated DICOM file ({problem})")
        if ds.file_meta.get("MediaStorageSOPClassUID") == _MEDIA_STORAGE_DIRECTORY:
            raise _DicomDirError(origin, "a DICOMDIR (index of files), not an instance")
        if not ds.get("SOPInstanceUID"):
            raise DicomSourceError(
                origin, "no SOPInstanceUID: not a DICOM instance (or cut off in its header)"
            )
        if stop_before_pixels and "Rows" not in ds and "Image Storage" in _sop_class_name(ds):
            raise DicomSourceError(origin, "truncated DICOM file (an image instance without Rows)")
    return LoadedInstance(origin, ds)


def _dcmread(source: BinaryIO | Path, origin: str, stop_before_pixels: bool) -> Dataset:
    try:
        return pydicom.dcmread(source, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        raise DicomSourceError(origin, "not a DICOM Part 10 file (no 'DICM' prefix)") from None
    except (EOFError, struct.error, BytesLengthException) as exc:
        raise DicomSourceError(origin, f"truncated or corrupt DICOM file ({type(exc).__name__})") from None
    except (ValueError, KeyError, IndexError, NotImplementedError) as exc:
        raise DicomSourceError(origin, f"corrupt DICOM file ({type(exc).__name__})") from None
    except OSError as exc:
        raise DicomSourceError(origin, f"cannot read ({exc.strerror or type(exc).__name__})") from None


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
    if size is not None:
        last: DataElement | RawDataElement | None = ds.get_item(max(ds.keys())) if len(ds) else None
        if isinstance(last, RawDataElement) and last.length != _UNDEFINED_LENGTH:
            stray = size - (last.value_tell + last.length)
            if 0 < stray < 12:  # shorter than any element header: the next element was cut off
                return f"{stray} byte(s) of an element header after the last element"
        if not any(t in ds for t in _PIXEL_DATA_TAGS) and (
            "Rows" in ds or "Image Storage" in _sop_class_name(ds)
        ):
            # A cut between two elements leaves a well-formed but incomplete header.
            return "an image instance without pixel data"
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset would convert the raw elements)
        # pydicom's annotation says DataElement; unconverted elements come back raw.
        elem: DataElement | RawDataElement = ds.get_item(tag)
        if not isinstance(elem, RawDataElement) or elem.value is None:
            continue
        if elem.length != _UNDEFINED_LENGTH and len(elem.value) < elem.length:
            return f"element {Tag(tag)} has {len(elem.value)} of {elem.length} bytes"
        if tag == _PIXEL_DATA and elem.length == _UNDEFINED_LENGTH:
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


def load_file(path: str | Path, *, stop_before_pixels: bool = False) -> LoadedInstance:
    """One file; DicomSourceError naming the path when it is missing or not a complete instance."""
    p = Path(path)
    if not p.is_file():
        raise DicomSourceError(str(p), "no such file")
    return read_instance(p, str(p), stop_before_pixels=stop_before_pixels)


def load_folder(path: str | Path, *, stop_before_pixels: bool = False) -> LoadResult:
    """Every file under `path` (recursively, in path order; hidden files and folders skipped).

    DICOMDIR index files are skipped (they describe the other files); every other file that is
    not a complete DICOM instance is a failure naming it.
    """
    root = Path(path)
    if not root.is_dir():
        raise DicomSourceError(str(root), "no such folder")
    instances: list[LoadedInstance] = []
    failures: list[InstanceFailure] = []
    for file in _files(root):
        try:
            instances.append(read_instance(file, str(file), stop_before_pixels=stop_before_pixels))
        except _DicomDirError:
            continue
        except DicomSourceError as exc:
            failures.append(InstanceFailure(exc.origin, exc.reason))
    return LoadResult(tuple(instances), tuple(failures))


def _files(root: Path) -> Iterator[Path]:
    # os.walk does not follow symlinked folders, so a link loop cannot trap us.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


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
        try:
            study, series = validate_uid(uids[0]), validate_uid(uids[1]) if len(uids) == 2 else None
        except ValueError as exc:
            raise DicomSourceError(text, str(exc)) from None
        return DicomWebRef(study_uid=study, series_uid=series)
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
