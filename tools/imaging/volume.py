"""Series assembly: DICOM instances -> one ordered `Volume` per series (pure; decodes on demand).

Ordering follows DESIGN.md: position along the slice normal (ImageOrientationPatient row x column
cosines, dotted with ImagePositionPatient), in the direction in which InstanceNumber rises, so a
well-ordered series comes out exactly in Google's InstanceNumber order. Without InstanceNumber the
order is descending along the normal (head to foot for axial slices). Without geometry the order is
InstanceNumber, and without that the order of the source.

Multi-frame Enhanced CT/MR objects contribute one slice per frame (per-frame or shared functional
groups: PlanePositionSequence, PlaneOrientationSequence, PixelValueTransformationSequence).

Assembly reads headers only; pixel data are decoded per slice when asked for, so a 3,000-slice series
costs the 85 slices that CT sampling picks.
"""

from __future__ import annotations

import itertools
import statistics
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import pixel_array
from pydicom.tag import BaseTag

from tools.imaging.dicom_limits import check_frame_size
from tools.imaging.errors import DicomFileError, SeriesError, SeriesSelectionError, WrongModalityError
from tools.imaging.tags import shared_tag

# Objects that are not pictures of the patient, even when they carry pixel data (RTDOSE, SEG).
NON_IMAGE_MODALITIES = frozenset(
    {"SR", "SEG", "KO", "PR", "RTSTRUCT", "RTPLAN", "RTRECORD", "RTDOSE", "RTIMAGE", "REG", "DOC",
     "ECG", "HD", "AU", "PLAN", "FID", "RWV", "IOL", "OPT"}
)  # fmt: skip

# Gaps and duplicates are judged against the median spacing.
DUPLICATE_TOLERANCE_MM = 0.01
GAP_FACTOR = 1.5
UNEVEN_TOLERANCE = 0.1
ORIENTATION_TOLERANCE = 1e-3

# pydicom raises these for corrupt, truncated or undecodable pixel data and for deferred reads of a
# file that has gone; they are translated into one error naming the object.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    ValueError, RuntimeError, NotImplementedError, AttributeError, KeyError, TypeError, OSError, EOFError,
)  # fmt: skip

_PIXEL_DATA = shared_tag("PixelData")
# pydicom's pixel pipeline and its decoder plugins are not documented as thread-safe, and the frames
# of a multi-frame object share one dataset: one pydicom decode at a time (CT slices are read by
# worker threads, `tools.imaging.ct`). Direct reads of uncompressed slices need no lock.
_PYDICOM_DECODE = threading.Lock()
_NUMBER_OF_FRAMES = shared_tag("NumberOfFrames")
_NATIVE_ATTRIBUTES = tuple(
    shared_tag(k)
    for k in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "PixelRepresentation")
)
_NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
_UNDEFINED_LENGTH = 0xFFFFFFFF
_MODALITY = shared_tag("Modality")
_TRANSFER_SYNTAX = shared_tag("TransferSyntaxUID")
_PHOTOMETRIC = shared_tag("PhotometricInterpretation")
_SERIES_INSTANCE_UID = shared_tag("SeriesInstanceUID")
_ROWS = shared_tag("Rows")
_COLUMNS = shared_tag("Columns")
_PER_FRAME = shared_tag("PerFrameFunctionalGroupsSequence")
_MODALITY_LUT = shared_tag("ModalityLUTSequence")
_IPP = shared_tag("ImagePositionPatient")
_IOP = shared_tag("ImageOrientationPatient")
_INSTANCE_NUMBER = shared_tag("InstanceNumber")
_RESCALE_SLOPE = shared_tag("RescaleSlope")
_RESCALE_INTERCEPT = shared_tag("RescaleIntercept")

Order = Literal["position", "instance_number", "source"]
FloatArray = npt.NDArray[np.floating[Any]]


class InstanceLike(Protocol):
    """What a loader hands over: where an object came from, and its dataset."""

    @property
    def origin(self) -> str: ...

    @property
    def dataset(self) -> Dataset: ...


@dataclass(frozen=True)
class Instance:
    """A plain `InstanceLike` (tests, callers that read files themselves)."""

    origin: str
    dataset: Dataset


class SkippedObject(BaseModel):
    """An object that is not an image to prepare, and why."""

    model_config = ConfigDict(frozen=True)

    origin: str
    series_uid: str | None
    modality: str | None
    sop_class: str | None
    reason: str


@dataclass(frozen=True)
class Rescale:
    slope: float
    intercept: float


@dataclass(frozen=True, eq=False)
class Slice:
    """One 2-D image of a series: a single-frame object, or one frame of a multi-frame one."""

    origin: str
    dataset: Dataset
    frame: int | None  # 0-based frame index in a multi-frame object, None for single-frame
    instance_number: int | None
    position: float | None  # mm along the slice normal
    orientation: tuple[float, ...] | None
    rescale: Rescale | None
    modality_lut: bool  # a ModalityLUTSequence replaces the rescale

    @property
    def label(self) -> str:
        return self.origin if self.frame is None else f"{self.origin} frame {self.frame + 1}"

    def order_key(self) -> tuple[int, int]:
        return (self.instance_number if self.instance_number is not None else 0, self.frame or 0)


@dataclass(frozen=True, eq=False)
class Volume:
    """The ordered slices of one series. Pixel data stay in the datasets until `stored` asks."""

    series_uid: str
    modality: str
    description: str
    rows: int
    columns: int
    slices: tuple[Slice, ...]
    order: Order
    warnings: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.slices)

    @property
    def positions(self) -> list[float | None]:
        return [s.position for s in self.slices]

    def require_modality(self, task: str, expected: Sequence[str]) -> None:
        """Refuse a task that does not fit this series (a CT preparation of an MR series, say)."""
        if self.modality not in expected:
            raise WrongModalityError(self.series_uid, self.modality, task, tuple(expected))

    def stored(self, index: int) -> npt.NDArray[Any]:
        """Stored pixel values of slice `index` (as `pixel_array` gives them), decoded now."""
        return decode_slice(self.slices[index], self.rows, self.columns)

    def modality_values(self, index: int) -> npt.NDArray[Any]:
        """Slice `index` with its rescale or modality LUT applied (HU for CT), as `apply_rescale` does."""
        return apply_slice_rescale(self.stored(index), self.slices[index])


@dataclass(frozen=True)
class SeriesFailure:
    series_uid: str
    reason: str


@dataclass(frozen=True)
class Assembly:
    """Every series found among some instances, plus what was skipped and what could not be assembled."""

    volumes: tuple[Volume, ...]
    skipped: tuple[SkippedObject, ...]
    failures: tuple[SeriesFailure, ...]

    def series_uids(self) -> tuple[str, ...]:
        return tuple(v.series_uid for v in self.volumes)

    def select(self, source: str, series_uid: str | None = None) -> Volume:
        """The volume `series_uid`, or the only one; otherwise an error listing the series found."""
        if series_uid is not None:
            for volume in self.volumes:
                if volume.series_uid == series_uid:
                    return volume
            for failure in self.failures:
                if failure.series_uid == series_uid:
                    raise SeriesError(series_uid, failure.reason)
            raise SeriesSelectionError(source, f"no image series {series_uid}; found", self.series_uids())
        if len(self.volumes) == 1:
            return self.volumes[0]
        if not self.volumes:
            reasons = [f"{f.series_uid}: {f.reason}" for f in self.failures]
            reasons += [f"{s.origin}: {s.reason}" for s in self.skipped[:5]]
            detail = "; ".join(reasons) if reasons else "no DICOM objects"
            raise SeriesSelectionError(source, f"no usable image series ({detail})")
        raise SeriesSelectionError(
            source, f"{len(self.volumes)} image series; choose one with --series", self.series_uids()
        )


def sample_slice_indices(n: int, max_slices: int = 85) -> list[int]:
    """Google's uniform sampling: all slices up to `max_slices`, else round(i / max * (n - 1)), i = 1..max.

    Python's `round` (half to even) on the same float expression as the notebook, so indices match it.
    """
    if n <= max_slices:
        return list(range(n))
    return [round(i / max_slices * (n - 1)) for i in range(1, max_slices + 1)]


def skip_reason(ds: Dataset) -> str | None:
    """Why a dataset is not an image to prepare, or None if it is one."""
    modality = _text(ds, _MODALITY)
    if modality in NON_IMAGE_MODALITIES:
        return f"not an image ({modality})"
    if _PIXEL_DATA not in ds._dict:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            return "float pixel data (parametric map) is not supported"
        return "no pixel data"
    if not _us_or_none(ds, _ROWS) or not _us_or_none(ds, _COLUMNS):
        return "no Rows/Columns"
    return None


def assemble(instances: Iterable[InstanceLike]) -> Assembly:
    """Group instances by SeriesInstanceUID and build one ordered volume per series."""
    by_series: dict[str, list[InstanceLike]] = defaultdict(list)
    skipped: list[SkippedObject] = []
    for inst in instances:
        ds = inst.dataset
        uid = _text(ds, _SERIES_INSTANCE_UID)
        reason = skip_reason(ds)
        if reason is None and not uid:
            reason = "no SeriesInstanceUID"
        if reason is not None:
            skipped.append(_skipped(inst, reason))
            continue
        by_series[uid].append(inst)
    volumes: list[Volume] = []
    failures: list[SeriesFailure] = []
    for uid, members in by_series.items():
        try:
            volumes.append(assemble_series(uid, members))
        except SeriesError as exc:
            failures.append(SeriesFailure(uid, exc.reason))
        except DicomFileError as exc:
            failures.append(SeriesFailure(uid, str(exc)))
    return Assembly(tuple(volumes), tuple(skipped), tuple(failures))


def assemble_series(series_uid: str, instances: Sequence[InstanceLike]) -> Volume:
    """Order the slices of one series and report what looks wrong with it as warnings."""
    if not instances:
        raise SeriesError(series_uid, "no image instances")
    slices: list[Slice] = []
    for inst in instances:
        slices.extend(slices_of(inst))
    warnings: list[str] = []
    slices = _keep_majority_size(slices, warnings)
    slices = _keep_majority_orientation(slices, warnings)
    ordered, order = order_slices(slices, warnings)
    first = ordered[0].dataset
    ds0 = instances[0].dataset
    modalities = {_text(i.dataset, _MODALITY) for i in instances}
    if len(modalities) > 1:
        warnings.append(f"mixed modalities in one series: {', '.join(sorted(modalities))}")
    return Volume(
        series_uid=series_uid,
        modality=_text(ds0, _MODALITY),
        description=str(ds0.get("SeriesDescription", "") or ""),
        rows=int(first.Rows),
        columns=int(first.Columns),
        slices=tuple(ordered),
        order=order,
        warnings=tuple(warnings),
    )


def slices_of(inst: InstanceLike) -> list[Slice]:
    """The slices one object contributes: itself, or each of its frames."""
    ds = inst.dataset
    frames = _frames(ds, inst.origin)
    instance_number = _int_or_none(_raw_numbers(ds, _INSTANCE_NUMBER))
    modality_lut = _MODALITY_LUT in ds._dict and bool(ds.get("ModalityLUTSequence"))
    if frames <= 1 and _PER_FRAME not in ds._dict:
        ipp = _floats(_raw_numbers(ds, _IPP), 3)
        iop = _floats(_raw_numbers(ds, _IOP), 6)
        return [
            Slice(
                origin=inst.origin,
                dataset=ds,
                frame=None,
                instance_number=instance_number,
                position=_position(ipp, iop),
                orientation=iop,
                rescale=_rescale(ds),
                modality_lut=modality_lut,
            )
        ]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared_seq = ds.get("SharedFunctionalGroupsSequence") or []
    shared = shared_seq[0] if shared_seq else Dataset()
    if per_frame and len(per_frame) != frames:
        raise DicomFileError(inst.origin, f"{len(per_frame)} per-frame functional groups for {frames} frames")
    out: list[Slice] = []
    for k in range(frames):
        group = per_frame[k] if per_frame else Dataset()
        ipp = _floats(_functional(group, shared, "PlanePositionSequence", "ImagePositionPatient"), 3)
        iop = _floats(_functional(group, shared, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        iop = iop or _floats(ds.get("ImageOrientationPatient"), 6)
        slope = _functional(group, shared, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _functional(group, shared, "PixelValueTransformationSequence", "RescaleIntercept")
        rescale = (
            Rescale(float(slope), float(intercept))
            if slope is not None and intercept is not None
            else _rescale(ds)
        )
        out.append(
            Slice(
                origin=inst.origin,
                dataset=ds,
                frame=k,
                instance_number=instance_number,
                position=_position(ipp, iop),
                orientation=iop,
                rescale=rescale,
                modality_lut=modality_lut,
            )
        )
    return out


def order_slices(slices: Sequence[Slice], warnings: list[str]) -> tuple[list[Slice], Order]:
    """Order by position along the normal, in the direction in which InstanceNumber rises."""
    if not slices:
        raise ValueError("no slices to order")
    if all(s.position is not None for s in slices):
        ascending = sorted(slices, key=lambda s: (_pos(s), s.order_key()))
        keys = [s.order_key() for s in ascending]
        rises = sum(b > a for a, b in itertools.pairwise(keys))
        falls = sum(b < a for a, b in itertools.pairwise(keys))
        # InstanceNumber falls along the normal, or says nothing: descending (head to foot for axial).
        descending = sorted(slices, key=lambda s: (-_pos(s), s.order_key()))
        ordered = ascending if rises > falls else descending
        if len(ordered) > 1 and min(rises, falls) > 0:
            warnings.append("InstanceNumber does not follow slice position throughout; ordered by position")
        warnings.extend(spacing_warnings([_pos(s) for s in ordered]))
        return ordered, "position"
    if len(slices) > 1:
        missing = sum(s.position is None for s in slices)
        warnings.append(
            f"{missing} of {len(slices)} slices lack ImagePositionPatient/ImageOrientationPatient; "
            "ordered by InstanceNumber"
        )
    if all(s.instance_number is not None for s in slices) or all(s.frame is not None for s in slices):
        return sorted(slices, key=lambda s: s.order_key()), "instance_number"
    if len(slices) > 1:
        warnings.append("some slices lack InstanceNumber too; kept in source order")
    return list(slices), "source"


def spacing_warnings(positions: Sequence[float]) -> list[str]:
    """Duplicate positions, gaps (missing slices) and uneven spacing, judged on the median spacing."""
    if len(positions) < 2:
        return []
    steps = [abs(b - a) for a, b in itertools.pairwise(positions)]
    out: list[str] = []
    duplicates = [i for i, d in enumerate(steps) if d < DUPLICATE_TOLERANCE_MM]
    if duplicates:
        where = ", ".join(f"{positions[i]:.2f}" for i in duplicates[:5])
        out.append(f"{len(duplicates)} duplicate slice positions (at {where} mm)")
    real = [d for d in steps if d >= DUPLICATE_TOLERANCE_MM]
    if not real:
        return out
    median = statistics.median(real)
    gaps = [(i, d) for i, d in enumerate(steps) if d > GAP_FACTOR * median]
    for i, d in gaps[:5]:
        missing = round(d / median) - 1
        out.append(
            f"gap of {d:.2f} mm after slice {i + 1} (median spacing {median:.2f} mm; "
            f"about {missing} slice(s) missing)"
        )
    if len(gaps) > 5:
        out.append(f"{len(gaps) - 5} more gaps")
    regular = [d for d in real if d <= GAP_FACTOR * median]
    if any(abs(d - median) > UNEVEN_TOLERANCE * median for d in regular):
        out.append(
            f"uneven slice spacing: {min(regular):.2f} to {max(regular):.2f} mm (median {median:.2f} mm)"
        )
    return out


def decode_slice(sl: Slice, rows: int, columns: int) -> npt.NDArray[Any]:
    """Decode one slice's stored values; any decoder failure becomes an error naming the object.

    Uncompressed little-endian greyscale data are read directly (`native_slice`); the rest goes
    through pydicom's pixel pipeline.
    """
    check_frame_size(sl.dataset, sl.label)  # files and DICOMweb were checked whole when read
    try:
        arr = native_slice(sl)
        if arr is None:
            with _PYDICOM_DECODE:
                arr = pixel_array(sl.dataset, index=sl.frame)
    except DECODE_ERRORS as exc:
        raise DicomFileError(sl.label, f"pixel data cannot be decoded: {exc}") from exc
    if arr.ndim != 2:
        raise DicomFileError(
            sl.label,
            f"expected one greyscale frame, got pixel array of shape {arr.shape} "
            f"({sl.dataset.get('PhotometricInterpretation', '?')})",
        )
    if arr.shape != (rows, columns):
        raise DicomFileError(sl.label, f"frame is {arr.shape[0]}x{arr.shape[1]}, series is {rows}x{columns}")
    return arr


def native_slice(sl: Slice) -> npt.NDArray[Any] | None:
    """The stored values of an uncompressed little-endian greyscale single-frame slice, exactly as
    `pydicom.pixels.pixel_array` gives them (dtype from BitsAllocated and PixelRepresentation, bits
    above BitsStored corrected by the same shifts), read with one `readinto` at the pixel data's
    offset when they were left in the file (sources' deferred reads) or copied from memory; None for
    anything else, which pydicom decodes. A file cut short raises DicomFileError naming it.
    """
    ds = sl.dataset
    # pydicom's annotation says DataElement; unconverted (and deferred) elements come back raw.
    elem = _element(ds, _PIXEL_DATA, keep_deferred=True)
    if sl.frame is not None or elem is None:
        return None
    if isinstance(elem, RawDataElement):
        length = elem.length
    elif isinstance(elem.value, bytes):
        length = len(elem.value)
    else:
        return None
    if length == _UNDEFINED_LENGTH:
        return None
    syntax = _text(ds.file_meta, _TRANSFER_SYNTAX) if hasattr(ds, "file_meta") else ""
    if syntax not in _NATIVE_LITTLE_ENDIAN:
        return None
    values = [value for tag in _NATIVE_ATTRIBUTES if (value := _us_or_none(ds, tag)) is not None]
    if len(values) != len(_NATIVE_ATTRIBUTES):
        return None
    rows, columns, samples, allocated, stored, representation = values
    frames = _int_or_none(_raw_numbers(ds, _NUMBER_OF_FRAMES))
    if frames not in (None, 1) or samples != 1 or allocated not in (8, 16):
        return None
    if representation not in (0, 1) or not 0 < stored <= allocated:
        return None
    if _text(ds, _PHOTOMETRIC) not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    dtype = np.dtype(f"<{'ui'[representation]}{allocated // 8}")
    count = rows * columns
    if not count * dtype.itemsize <= length < 2 * count * dtype.itemsize:
        # Too short: pydicom says what is wrong. A whole frame too long: pydicom returns the
        # excess frames (allow_excess_frames), which decode_slice then refuses.
        return None
    if isinstance(elem, RawDataElement) and elem.value is None:  # deferred: still in the file
        filename = getattr(ds, "filename", None)
        if not isinstance(filename, str) or getattr(ds, "fileobj_type", None) is not open:
            return None
        arr = np.empty(count, dtype=dtype)
        got = _read_into(filename, elem.value_tell, arr)
        if got < arr.nbytes:
            raise DicomFileError(
                sl.label,
                f"pixel data cannot be decoded: the file is truncated ({got} of {arr.nbytes} bytes "
                "of pixel data)",
            )
    elif isinstance(elem.value, bytes):
        arr = np.frombuffer(elem.value, dtype=dtype, count=count).copy()
    else:
        return None
    arr = arr.astype(dtype.newbyteorder("="), copy=False).reshape(rows, columns)
    if stored < allocated:
        shift = allocated - stored
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    return arr


def _read_into(filename: str, offset: int, arr: npt.NDArray[Any]) -> int:
    """Fill `arr` from the file at `offset`; the number of bytes read (fewer at end of file).

    An unbuffered `readinto` straight into the array: np.fromfile costs several times more here.
    """
    view = arr.reshape(-1).view(np.uint8).data
    got = 0
    with open(filename, "rb", buffering=0) as f:
        f.seek(offset)
        while got < len(view):
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
    return got


def _us(ds: Dataset, tag: BaseTag) -> int:
    """An unsigned short (US) element that must be there (ValueError: a defect of the caller)."""
    value = _us_or_none(ds, tag)
    if value is None:
        raise ValueError(f"no {tag}, or not one number")
    return value


def _us_or_none(ds: Dataset, tag: BaseTag) -> int | None:
    """A single US value (Rows, Columns), from its raw little-endian bytes when not yet converted;
    None when absent, empty or not one number."""
    elem = _element(ds, tag, keep_deferred=True)
    if elem is None:
        return None
    value = elem.value
    if (
        isinstance(elem, RawDataElement)
        and elem.VR in ("US", None)
        and isinstance(value, bytes)
        and len(value) == 2
        and elem.is_little_endian
    ):
        return int.from_bytes(value, "little")
    try:
        return int(ds[tag].value)
    except (TypeError, ValueError):
        return None


def apply_slice_rescale(stored: npt.NDArray[Any], sl: Slice) -> npt.NDArray[Any]:
    """`pydicom.pixels.apply_rescale` semantics, with the slice's own (per-frame) slope and intercept."""
    if sl.modality_lut:
        return apply_modality_lut(stored, sl.dataset)
    if sl.rescale is None:
        return stored
    out = stored.astype(np.float64) * sl.rescale.slope
    out += sl.rescale.intercept
    return out


def _skipped(inst: InstanceLike, reason: str) -> SkippedObject:
    ds = inst.dataset
    sop = ds.get("SOPClassUID")
    return SkippedObject(
        origin=inst.origin,
        series_uid=str(ds.get("SeriesInstanceUID", "") or "") or None,
        modality=str(ds.get("Modality", "") or "") or None,
        sop_class=getattr(sop, "name", None) if sop else None,
        reason=reason,
    )


def _keep_majority_size(slices: list[Slice], warnings: list[str]) -> list[Slice]:
    sizes = Counter(_size(s) for s in slices)
    if len(sizes) == 1:
        return slices
    (rows, cols), _ = sizes.most_common(1)[0]
    kept = [s for s in slices if _size(s) == (rows, cols)]
    dropped = _labels_left_out(slices, kept)
    warnings.append(f"left out {len(dropped)} slice(s) not {rows}x{cols}: {', '.join(dropped[:5])}")
    return kept


def _keep_majority_orientation(slices: list[Slice], warnings: list[str]) -> list[Slice]:
    oriented = [s for s in slices if s.orientation is not None]
    if len(oriented) < 2:
        return slices
    counts = Counter(tuple(round(v, 3) for v in s.orientation or ()) for s in oriented)
    if len(counts) == 1:
        return slices
    main = np.array(counts.most_common(1)[0][0])
    kept = [
        s
        for s in slices
        if s.orientation is None or np.abs(np.array(s.orientation) - main).max() <= 10 * ORIENTATION_TOLERANCE
    ]
    dropped = _labels_left_out(slices, kept)
    if dropped:
        warnings.append(
            f"left out {len(dropped)} slice(s) with another orientation (localizers?): "
            + ", ".join(dropped[:5])
        )
    return kept


def _labels_left_out(slices: Sequence[Slice], kept: Sequence[Slice]) -> list[str]:
    kept_ids = {id(s) for s in kept}
    return [s.label for s in slices if id(s) not in kept_ids]


def _functional(group: Dataset, shared: Dataset, sequence: str, keyword: str) -> Any:
    for source in (group, shared):
        items = source.get(sequence)
        if items:
            value = items[0].get(keyword)
            if value is not None:
                return value
    return None


def _rescale(ds: Dataset) -> Rescale | None:
    # apply_rescale uses the pair only when both are present.
    slope = _floats(_raw_numbers(ds, _RESCALE_SLOPE), 1)
    intercept = _floats(_raw_numbers(ds, _RESCALE_INTERCEPT), 1)
    if slope is None or intercept is None:
        return None
    return Rescale(slope[0], intercept[0])


def _text(ds: Dataset, tag: BaseTag) -> str:
    """`str(ds.get(keyword, "") or "")` of a CS or UI element (default character set), from the raw
    bytes where pydicom has not converted it yet: its conversion validates the value, which cost
    more than the rest of assembly. Multiple values go through pydicom.
    """
    elem = _element(ds, tag, keep_deferred=True)
    if elem is None:
        return ""
    value = elem.value
    if isinstance(elem, RawDataElement) and isinstance(value, bytes) and b"\\" not in value:
        return value.decode("latin-1").rstrip(" \0")
    value = ds[tag].value
    return str(value) if value else ""


def _element(
    ds: Dataset, tag: BaseTag, *, keep_deferred: bool = False
) -> DataElement | RawDataElement | None:
    """`ds.get_item(tag, keep_deferred=...)` without its key conversion (`tag` is a BaseTag already),
    which cost more than the rest of a lookup; None when absent (pydicom's annotation says otherwise)."""
    elem: DataElement | RawDataElement | None = ds._dict.get(tag)
    if not keep_deferred and isinstance(elem, RawDataElement) and elem.value is None:
        return ds.get_item(tag)  # a deferred value: pydicom reads and converts it
    return elem


def _size(sl: Slice) -> tuple[int, int]:
    return _us(sl.dataset, _ROWS), _us(sl.dataset, _COLUMNS)


def _frames(ds: Dataset, origin: str) -> int:
    """`int(ds.get("NumberOfFrames", 1) or 1)`, from the raw decimal string when possible;
    DicomFileError naming `origin` when it is not a number."""
    raw = _raw_numbers(ds, _NUMBER_OF_FRAMES)
    if raw is None:
        return 1
    if isinstance(raw, list) and len(raw) == 1 and raw[0].isdigit():
        return int(raw[0]) or 1
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise DicomFileError(origin, f"bad NumberOfFrames {raw!r}") from exc


def _raw_numbers(ds: Dataset, tag: BaseTag) -> Any:
    """A DS/IS value read straight from the raw bytes when pydicom has not converted it yet.

    Converting through pydicom's DSfloat/IS (with validation) dominated assembly of a 300-slice
    series; float() of the same decimal strings gives the same numbers.
    """
    elem = _element(ds, tag)
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes):
        parts = [p.strip() for p in value.decode("ascii", "replace").split("\\")]
        return [p for p in parts if p] or None
    return value


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | int | float):
        value = [value]
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _position(ipp: tuple[float, ...] | None, iop: tuple[float, ...] | None) -> float | None:
    if ipp is None or iop is None:
        return None
    # Plain arithmetic: np.cross per slice cost more than the rest of the header work.
    r0, r1, r2, c0, c1, c2 = iop
    n0, n1, n2 = r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0
    if n0 == n1 == n2 == 0:
        return None
    return n0 * ipp[0] + n1 * ipp[1] + n2 * ipp[2]


def _pos(s: Slice) -> float:
    assert s.position is not None
    return s.position


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    try:
        return int(value) if value is not None and str(value).strip() != "" else None
    except (TypeError, ValueError):
        return None


__all__ = [
    "NON_IMAGE_MODALITIES",
    "Assembly",
    "Instance",
    "InstanceLike",
    "Rescale",
    "SeriesFailure",
    "SkippedObject",
    "Slice",
    "Volume",
    "apply_slice_rescale",
    "assemble",
    "assemble_series",
    "decode_slice",
    "native_slice",
    "order_slices",
    "sample_slice_indices",
    "skip_reason",
    "slices_of",
    "spacing_warnings",
]
