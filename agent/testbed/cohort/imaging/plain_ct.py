"""A bare axial CT series as Part-10 bytes: no study plan, no patient identity beyond an ID.

For what only moves CT objects (STOW, QIDO, WADO round trips and their benchmark): a disc of soft
tissue (40 HU) in air with seeded noise, int16 with the usual rescale (slope 1, intercept -1024),
fresh UIDs per call. The cohort's imaging (``ct_series.ct_chest_datasets``) is what to use where
the pixels or the header must mean something.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Final

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

__all__ = ["CT_IMAGE_STORAGE", "ct_image", "part10_bytes", "plain_ct_series"]

CT_IMAGE_STORAGE: Final = UID("1.2.840.10008.5.1.4.1.1.2")


def plain_ct_series(
    n: int, size: int = 512, *, patient_id: str = "synthetic", spacing_mm: float = 2.5, seed: int = 0
) -> Iterator[bytes]:
    """``n`` slices of ``size`` x ``size``, InstanceNumber 1..n head to foot; generated lazily."""
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    body = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.4 * size) ** 2
    for i in range(1, n + 1):
        pixels = np.where(body, 1064, 24) + rng.integers(-20, 20, (size, size))
        ds = ct_image(study, series, i, pixels.astype(np.int16))
        ds.PatientID = patient_id
        ds.ImagePositionPatient = [0.0, 0.0, -spacing_mm * i]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = spacing_mm
        yield part10_bytes(ds)


def ct_image(study_uid: str, series_uid: str, number: int, pixels: np.ndarray) -> Dataset:
    """One CT image of int16 ``pixels`` (rows x columns) with the usual rescale and a fresh SOP
    instance UID, explicit VR little endian; no patient and no geometry (callers add theirs)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.Modality = "CT"
    ds.InstanceNumber = number
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = pixels.astype(np.int16).tobytes()
    return ds


def part10_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
