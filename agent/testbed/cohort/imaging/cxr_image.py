"""Chest radiographs (CR or DX for presentation), one instance per study."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from agent.testbed.cohort.imaging.cxr_phantom import CXR_BITS, CXR_MAX_VALUE, cxr_phantom
from agent.testbed.cohort.imaging.dicom_header import base_dataset, set_pixels
from agent.testbed.cohort.imaging.identity import PatientIdentity
from agent.testbed.cohort.imaging.study import CxrSpec, Modality, Photometric, StudyPlan, VoiKind

__all__ = ["cxr_dataset", "sigmoid_voi_lut"]


def sigmoid_voi_lut(centre: float, width: float) -> NDArray[np.uint16]:
    """A VOI LUT over all stored values: a sigmoid around `centre`, 12-bit output."""
    x = np.arange(CXR_MAX_VALUE + 1, dtype=np.float64)
    y = CXR_MAX_VALUE / (1.0 + np.exp(-4.0 * (x - centre) / width))
    return np.rint(y).astype(np.uint16)


def cxr_dataset(study: StudyPlan, patient: PatientIdentity) -> Dataset:
    """The PA radiograph; MONOCHROME1 stores the inverted image (air has high values)."""
    spec = study.spec
    if not isinstance(spec, CxrSpec):
        raise ValueError(f"study {study.uid} is a {spec.kind} study, not a chest X-ray")
    series = study.series[0]
    image = cxr_phantom(
        spec.rows, spec.columns, spec.pixel_spacing_mm, spec.anatomy, spec.opacities, spec.noise_seed
    )
    values = image.values
    inverted = spec.photometric is Photometric.MONOCHROME1
    if inverted:
        values = (CXR_MAX_VALUE - values).astype(np.uint16)
    # The window spans the body's values (air excluded), as the modality's processing would.
    low, high = (float(v) for v in np.percentile(image.values[image.values > 400], [0.5, 99.5]))
    centre, width = (low + high) / 2, high - low
    if inverted:
        centre = CXR_MAX_VALUE - centre

    ds = base_dataset(patient, study, series, 1)
    is_dx = series.modality is Modality.DX
    ds.ImageType = ["DERIVED", "PRIMARY"] if is_dx else ["ORIGINAL", "PRIMARY"]
    if is_dx:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.DetectorType = "SCINTILLATOR"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.KVP = 120
    ds.DistanceSourceToDetector = 1800
    ds.ImagerPixelSpacing = [spec.pixel_spacing_mm, spec.pixel_spacing_mm]
    ds.PixelSpacing = [spec.pixel_spacing_mm, spec.pixel_spacing_mm]
    ds.PresentationLUTShape = "INVERSE" if inverted else "IDENTITY"
    if spec.voi is VoiKind.WINDOW:
        ds.WindowCenter = round(centre)
        ds.WindowWidth = max(round(width), 1)
    else:
        item = Dataset()
        item.LUTDescriptor = [CXR_MAX_VALUE + 1, 0, CXR_BITS]
        item.LUTExplanation = "SIGMOID"
        # LUT Data is "US or OW"; say US so that pydicom writes the list of values.
        item.add_new(0x00283006, "US", sigmoid_voi_lut(centre, width).tolist())
        ds.VOILUTSequence = [item]
    set_pixels(ds, values, bits_stored=CXR_BITS, photometric=spec.photometric)
    return ds
