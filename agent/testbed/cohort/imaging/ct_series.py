"""CT chest series: the phantom, sliced into axial CT Image Storage instances."""

from __future__ import annotations

from collections.abc import Iterator

from pydicom.dataset import Dataset

from agent.testbed.cohort.imaging.ct_phantom import RESCALE_INTERCEPT, ct_chest_phantom
from agent.testbed.cohort.imaging.dicom_header import base_dataset, set_pixels
from agent.testbed.cohort.imaging.geometry import AXIAL_ORIENTATION
from agent.testbed.cohort.imaging.identity import PatientIdentity
from agent.testbed.cohort.imaging.study import CtChestSpec, Photometric, StudyPlan

__all__ = ["ct_chest_datasets"]


def ct_chest_datasets(study: StudyPlan, patient: PatientIdentity) -> Iterator[Dataset]:
    """One dataset per slice, InstanceNumber 1 at the top (head) of the scan range."""
    spec = study.spec
    if not isinstance(spec, CtChestSpec):
        raise ValueError(f"study {study.uid} is a {spec.kind} study, not a CT chest")
    series = study.series[0]
    g = spec.geometry
    if series.instance_count != g.slices:
        raise ValueError(f"series {series.uid} plans {series.instance_count} instances for {g.slices} slices")
    phantom = ct_chest_phantom(g, spec.anatomy, spec.lesion, spec.noise_seed)
    for k in range(g.slices):
        ds = base_dataset(patient, study, series, k + 1)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ScanOptions = "HELICAL MODE"
        ds.KVP = 120
        ds.SliceThickness = g.slice_spacing_mm
        ds.SpacingBetweenSlices = g.slice_spacing_mm
        ds.ConvolutionKernel = "STANDARD"
        ds.PatientPosition = "HFS"
        ds.ContrastBolusAgent = "IV contrast"
        ds.AcquisitionNumber = 1
        ds.ImagePositionPatient = [round(v, 4) for v in g.image_position(k)]
        ds.ImageOrientationPatient = list(AXIAL_ORIENTATION)
        ds.SliceLocation = round(g.slice_z_mm(k), 4)
        ds.PixelSpacing = [g.pixel_spacing_mm, g.pixel_spacing_mm]
        ds.RescaleIntercept = RESCALE_INTERCEPT
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter = [40, -600]
        ds.WindowWidth = [400, 1500]
        ds.WindowCenterWidthExplanation = ["MEDIASTINUM", "LUNG"]
        set_pixels(ds, phantom.stored[k], bits_stored=16, photometric=Photometric.MONOCHROME2)
        yield ds
