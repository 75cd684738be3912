"""MR brain series: the phantom, sliced into axial MR Image Storage instances."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from pydicom.dataset import Dataset

from agent.testbed.cohort.imaging.dicom_header import base_dataset, set_pixels
from agent.testbed.cohort.imaging.geometry import AXIAL_ORIENTATION
from agent.testbed.cohort.imaging.identity import PatientIdentity
from agent.testbed.cohort.imaging.mr_phantom import MrWeighting, mr_brain_phantom
from agent.testbed.cohort.imaging.study import MrBrainSpec, Photometric, StudyPlan

__all__ = ["mr_brain_datasets"]

# (TR ms, TE ms, echo train length, sequence name) per weighting.
_SEQUENCE: dict[MrWeighting, tuple[float, float, int, str]] = {
    MrWeighting.T1: (500.0, 15.0, 1, "SE"),
    MrWeighting.T2: (4000.0, 100.0, 16, "TSE"),
}


def mr_brain_datasets(study: StudyPlan, patient: PatientIdentity) -> Iterator[Dataset]:
    """One dataset per slice and weighting (a series each); InstanceNumber follows the geometry's order."""
    spec = study.spec
    if not isinstance(spec, MrBrainSpec):
        raise ValueError(f"study {study.uid} is a {spec.kind} study, not an MR brain")
    if len(study.series) != len(spec.weightings):
        raise ValueError(
            f"study {study.uid} has {len(study.series)} series for {len(spec.weightings)} weightings"
        )
    g = spec.geometry
    for series, weighting in zip(study.series, spec.weightings, strict=True):
        if series.instance_count != g.slices:
            raise ValueError(
                f"series {series.uid} plans {series.instance_count} instances for {g.slices} slices"
            )
        phantom = mr_brain_phantom(g, weighting, spec.anatomy, spec.lesion, spec.noise_seed + series.number)
        # One window for the whole series, from the volume, as a scanner would store it.
        low, high = (float(v) for v in np.percentile(phantom.values[::4, ::4, ::4], [1.0, 99.5]))
        tr, te, etl, name = _SEQUENCE[weighting]
        for k in range(g.slices):
            ds = base_dataset(patient, study, series, k + 1)
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
            ds.ScanningSequence = "SE"
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "2D"
            ds.SequenceName = name
            ds.RepetitionTime = tr
            ds.EchoTime = te
            ds.EchoTrainLength = etl
            ds.MagneticFieldStrength = 1.5
            ds.ImagingFrequency = 63.87
            ds.ImagedNucleus = "1H"
            ds.SliceThickness = g.slice_spacing_mm
            ds.SpacingBetweenSlices = g.slice_spacing_mm
            ds.PatientPosition = "HFS"
            ds.AcquisitionNumber = 1
            ds.ImagePositionPatient = [round(v, 4) for v in g.image_position(k)]
            ds.ImageOrientationPatient = list(AXIAL_ORIENTATION)
            ds.SliceLocation = round(g.slice_z_mm(k), 4)
            ds.PixelSpacing = [g.pixel_spacing_mm, g.pixel_spacing_mm]
            ds.WindowCenter = round((low + high) / 2)
            ds.WindowWidth = max(round(high - low), 1)
            set_pixels(ds, phantom.values[k], bits_stored=12, photometric=Photometric.MONOCHROME2)
            yield ds
