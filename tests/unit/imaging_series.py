"""Synthetic DICOM for the imaging tests: CT/MR series, chest X-rays and non-image objects, made with pydicom.

Every object is a complete Part 10 dataset (file meta, explicit VR little endian) so it can be used in
memory or written to a folder. Pixel values are seeded random numbers; no patient data is real.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    generate_uid,
)

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
NON_IMAGE_STORAGE = {
    "SR": "1.2.840.10008.5.1.4.1.1.88.33",
    "SEG": "1.2.840.10008.5.1.4.1.1.66.4",
    "KO": "1.2.840.10008.5.1.4.1.1.88.59",
    "PR": "1.2.840.10008.5.1.4.1.1.11.1",
    "RTSTRUCT": "1.2.840.10008.5.1.4.1.1.481.3",
}
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def base_dataset(sop_class: str, modality: str, series_uid: str, study_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.PatientID = "SYNTH-0001"
    ds.PatientName = "Synthetic^Test"
    return ds


def set_pixels(ds: Dataset, stored: npt.NDArray[np.integer], *, photometric: str = "MONOCHROME2") -> None:
    """Native (uncompressed) 8- or 16-bit greyscale pixel data, one frame or (frames, rows, cols)."""
    signed = stored.dtype.kind == "i"
    bits = stored.dtype.itemsize * 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(stored.shape[-2]), int(stored.shape[-1])
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    if stored.ndim == 3:
        ds.NumberOfFrames = int(stored.shape[0])
    ds.PixelData = np.ascontiguousarray(stored.astype(stored.dtype.newbyteorder("<"))).tobytes()


def random_hu(rows: int, cols: int, rng: np.random.Generator) -> npt.NDArray[np.int16]:
    """HU values well beyond every CT window on both sides, so clipping is exercised."""
    return rng.integers(-2048, 3072, size=(rows, cols)).astype(np.int16)


def ct_series(
    n: int,
    *,
    rows: int = 32,
    cols: int = 32,
    seed: int = 0,
    spacing: float = 2.5,
    slope: float = 1.0,
    intercept: float = -1024.0,
    signed: bool = False,
    modality: str = "CT",
    series_uid: str | None = None,
    study_uid: str | None = None,
    positions: Sequence[float] | None = None,
    orientation: Sequence[float] = AXIAL,
) -> list[Dataset]:
    """A well-ordered axial series: InstanceNumber 1..n from head to foot (z falls by `spacing`)."""
    rng = np.random.default_rng(seed)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    sop = CT_STORAGE if modality == "CT" else MR_STORAGE
    zs = list(positions) if positions is not None else [100.0 - i * spacing for i in range(n)]
    out = []
    for i in range(n):
        ds = base_dataset(sop, modality, series_uid, study_uid)
        ds.InstanceNumber = i + 1
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.ImagePositionPatient = [-100.0, -100.0, float(zs[i])]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = spacing
        ds.SeriesDescription = f"synthetic {modality}"
        hu = random_hu(rows, cols, rng).astype(np.float64)
        stored = np.round((hu - intercept) / slope)
        dtype = np.int16 if signed else np.uint16
        info = np.iinfo(dtype)
        set_pixels(ds, np.clip(stored, info.min, info.max).astype(dtype))
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.RescaleType = "HU"
        out.append(ds)
    return out


def mr_series(n: int, *, rows: int = 16, cols: int = 16, seed: int = 0) -> list[Dataset]:
    series = ct_series(n, rows=rows, cols=cols, seed=seed, modality="MR")
    rng = np.random.default_rng(seed + 1)
    for ds in series:
        set_pixels(ds, rng.integers(0, 4000, size=(rows, cols)).astype(np.uint16))
        del ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType
    return series


def enhanced_ct(frames: int, *, rows: int = 16, cols: int = 16, seed: int = 0) -> Dataset:
    """One Enhanced CT object: per-frame positions (given foot to head) and a per-frame rescale."""
    rng = np.random.default_rng(seed)
    ds = base_dataset("1.2.840.10008.5.1.4.1.1.2.1", "CT", generate_uid(), generate_uid())
    ds.InstanceNumber = 1
    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = list(AXIAL)
    shared.PlaneOrientationSequence = DicomSequence([orient])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    groups = []
    for k in range(frames):
        group = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, -50.0 + 5.0 * k]
        group.PlanePositionSequence = DicomSequence([pos])
        pvt = Dataset()
        pvt.RescaleSlope = 1.0 + k  # differs per frame: the per-frame group must win
        pvt.RescaleIntercept = -1024.0
        pvt.RescaleType = "HU"
        group.PixelValueTransformationSequence = DicomSequence([pvt])
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(groups)
    set_pixels(ds, rng.integers(0, 3000, size=(frames, rows, cols)).astype(np.uint16))
    return ds


def chest_xray(
    rows: int,
    cols: int,
    *,
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    seed: int = 0,
    stored: npt.NDArray[np.uint16] | None = None,
) -> Dataset:
    rng = np.random.default_rng(seed)
    ds = base_dataset(
        DX_STORAGE if modality == "DX" else CR_STORAGE, modality, generate_uid(), generate_uid()
    )
    ds.InstanceNumber = 1
    pixels = stored if stored is not None else rng.integers(0, 4096, size=(rows, cols)).astype(np.uint16)
    set_pixels(ds, pixels, photometric=photometric)
    ds.BitsStored = 12
    ds.HighBit = 11
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    return ds


def non_image(kind: str, *, series_uid: str | None = None, study_uid: str | None = None) -> Dataset:
    """An SR, SEG, KO, PR or RTSTRUCT object (a SEG carries pixel data, the others none)."""
    ds = base_dataset(
        NON_IMAGE_STORAGE[kind], kind, series_uid or generate_uid(), study_uid or generate_uid()
    )
    ds.InstanceNumber = 1
    if kind == "SEG":
        set_pixels(ds, np.zeros((2, 8, 8), dtype=np.uint8))
    return ds


def write_series(folder: Path, datasets: Sequence[Dataset], *, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(datasets):
        path = folder / f"{prefix}{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
