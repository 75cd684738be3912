"""Seed the cohort's imaging into a real Orthanc and FHIR server, find it the way the agent
does (ImagingStudy -> Endpoint -> DICOMweb), and prepare every modality from the PACS,
the whole-slide study included."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
import pytest

from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.cohort.imaging import Modality, StudyPlan, Timepoint, render_study
from agent.testbed.cohort.imaging.fhir import slide_imaging_study_id
from agent.testbed.cohort.imaging.seed import (
    ImagingSeedReport,
    cohort_imaging_plan,
    cohort_slide_plan,
    identity_of,
    seed_imaging,
)
from agent.testbed.cohort.imaging.slide import SlidePlan
from agent.testbed.cohort.load import seed_cohort
from fhir_adapters import FhirClient
from tools.imaging.ct import prepare_ct
from tools.imaging.cxr import prepare_cxr
from tools.imaging.dicomweb import DicomWebClient
from tools.imaging.mri import prepare_mri
from tools.imaging.prepared import PreparedImages
from tools.imaging.sources import LoadedInstance, load_dicomweb
from tools.imaging.volume import assemble
from tools.imaging.wsi import PATCH_PX
from tools.imaging.wsi_web import prepare_slide_dicomweb
from tools.record import gather_record

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    # Eight patients: every imaging role of the plan (CT pairs, MR, CXR pairs) and the slide (position 7).
    return generate_cohort(8, 5)


@pytest.fixture(scope="module")
def servers(fhir_server_factory: Callable[..., str], orthanc_factory: Callable[..., Any]) -> tuple[str, str]:
    return fhir_server_factory(), orthanc_factory().dicomweb_url


@dataclass(frozen=True)
class Seeded:
    first: ImagingSeedReport
    again: ImagingSeedReport


@pytest.fixture(scope="module")
async def seeded(servers: tuple[str, str], cohort: Cohort) -> Seeded:
    fhir_url, dicomweb_url = servers
    async with FhirClient(fhir_url) as fhir, DicomWebClient(dicomweb_url) as pacs:
        await seed_cohort(fhir, cohort)
        first = await seed_imaging(fhir, pacs, cohort, dicomweb_url=dicomweb_url)
        again = await seed_imaging(fhir, pacs, cohort, dicomweb_url=dicomweb_url)
    return Seeded(first=first, again=again)


def slide_of(cohort: Cohort) -> SlidePlan:
    slide = cohort_slide_plan(cohort)
    assert slide is not None
    return slide


def study_of(cohort: Cohort, index: int, modality: Modality, timepoint: Timepoint | None = None) -> StudyPlan:
    plan = cohort_imaging_plan(cohort)
    patient_id = cohort.patients[index].id
    return next(
        s
        for s in plan.for_patient(patient_id)
        if modality in s.modalities and (timepoint is None or s.timepoint == timepoint)
    )


async def prepare_from_pacs(
    fhir: FhirClient, cohort: Cohort, study: StudyPlan, prepare: Callable[..., PreparedImages]
) -> PreparedImages:
    """What the agent will do: the ImagingStudy in the record names the study and its Endpoint."""
    record = await gather_record(fhir, study.patient_id)
    studies = [s for s in record.of_type("ImagingStudy") if getattr(s, "identifier", None)]
    wanted = f"urn:oid:{study.uid}"
    found = next(s for s in studies if any(i.value == wanted for i in s.identifier))
    endpoint_ref = found.endpoint[0].reference
    endpoint = await fhir.read("Endpoint", endpoint_ref.split("/")[1])
    async with DicomWebClient(endpoint["address"]) as pacs:
        loaded = await load_dicomweb(pacs, study.uid)
    assert not loaded.failures
    volume = assemble(loaded.instances).select(f"dicomweb:{study.uid}", study.series[0].uid)
    return prepare(volume, source=f"dicomweb:{study.uid}")


async def test_reseeding_stores_nothing_new(seeded: Seeded, cohort: Cohort) -> None:
    first, again = seeded.first, seeded.again
    assert first.failed == []
    plan = cohort_imaging_plan(cohort)
    assert first.studies == len(plan.studies) + 1  # the slide counts as one study
    # The dicomizer writes one instance per pyramid level: 3 for the slide.
    slide_instances = slide_of(cohort).min_instances
    assert first.instances_stored == sum(s.instance_count for s in plan.studies) + slide_instances
    assert first.studies_already_stored == 0
    assert again.failed == []
    assert again.instances_stored == 0
    assert again.studies_already_stored == first.studies
    assert again.fhir_created == 0


async def test_seeded_imaging_is_found_through_fhir_and_prepared_from_the_pacs(
    servers: tuple[str, str], cohort: Cohort, seeded: Seeded
) -> None:
    fhir_url, _ = servers
    async with FhirClient(fhir_url) as fhir:
        # CT over DICOMweb equals CT from the generator's own datasets, slice for slice.
        ct = study_of(cohort, 0, Modality.CT, Timepoint.CURRENT)
        from_pacs = await prepare_from_pacs(fhir, cohort, ct, prepare_ct)
        identity = identity_of(cohort.patients[0].resources[0])
        local = [
            LoadedInstance(origin=f"local-{i.instance_number}", dataset=pydicom.dcmread(io.BytesIO(i.data)))
            for i in render_study(ct, identity)
        ]
        from_files = prepare_ct(assemble(local).select("local", ct.series[0].uid), source="local")
        assert from_pacs.images.shape == (85, 512, 512, 3)
        assert np.array_equal(from_pacs.images, from_files.images)

        mri = await prepare_from_pacs(fhir, cohort, study_of(cohort, 2, Modality.MR), prepare_mri)
        assert mri.images.shape[1:] == (256, 256, 3)
        assert mri.images.min() == 0
        assert mri.images.max() == 255

        # A MONOCHROME1 RLE chest X-ray with a planned nodule: padded to square, nodule bright.
        cxr = study_of(cohort, 3, Modality.CR, Timepoint.CURRENT)
        prepared = await prepare_from_pacs(fhir, cohort, cxr, prepare_cxr)
        image = prepared.images[0]
        assert image.shape[0] == image.shape[1]
        padding = prepared.metadata.padding
        assert padding is not None
        box = cxr.truth.findings[0].box  # type: ignore[union-attr]
        y0, y1 = box.y0 + padding.top, box.y1 + padding.top
        x0, x1 = box.x0 + padding.left, box.x1 + padding.left
        inside = image[y0:y1, x0:x1, 0].astype(float).mean()
        margin = 20
        ring = image[y0 - margin : y1 + margin, x0 - margin : x1 + margin, 0].astype(float)
        assert inside > ring.mean()


async def test_seeded_slide_is_found_through_fhir_and_prepared_at_10x_from_the_pacs(
    servers: tuple[str, str], cohort: Cohort, seeded: Seeded
) -> None:
    fhir_url, _ = servers
    slide = slide_of(cohort)
    assert slide.patient_id == cohort.patients[7].id
    async with FhirClient(fhir_url) as fhir:
        record = await gather_record(fhir, slide.patient_id)
        wanted = f"urn:oid:{slide.uid}"
        found = [
            s
            for s in record.of_type("ImagingStudy")
            if any(i.value == wanted for i in getattr(s, "identifier", None) or [])
        ]
        assert [s.id for s in found] == [slide_imaging_study_id(slide)]
        study = found[0]
        assert [m.code for m in study.modality] == ["SM"]
        assert study.series[0].uid == slide.series_uid
        assert study.numberOfInstances == study.series[0].numberOfInstances == slide.min_instances
        endpoint = await fhir.read("Endpoint", study.endpoint[0].reference.split("/")[1])
    async with DicomWebClient(endpoint["address"]) as dicomweb:
        prepared = await prepare_slide_dicomweb(dicomweb, slide.uid, study.series[0].uid)

    meta = prepared.metadata
    assert meta.warnings == []
    assert meta.level_mpp == pytest.approx(1.0, rel=0.01)
    assert meta.grid == (4, 4)
    n = len(meta.patches)
    assert n >= 1
    assert prepared.images.shape == (n, PATCH_PX, PATCH_PX, 3)
    assert prepared.images.dtype == np.uint8
    # Every patch is on tissue by the slide's own truth: its islands, sampled per 16 level-0 px.
    mask_ds = 16
    mask = slide.truth.tissue_mask(mask_ds)
    truth_fraction = {}
    for row in range(4):
        for col in range(4):
            size0 = round(PATCH_PX * meta.level_downsample)
            y0, x0 = row * size0 // mask_ds, col * size0 // mask_ds
            cell = mask[y0 : y0 + size0 // mask_ds, x0 : x0 + size0 // mask_ds]
            truth_fraction[(row, col)] = float(cell.mean())
    chosen = {(p.row, p.col) for p in meta.patches}
    # The thumbnail mask is 8 um/px: cells this close to the 50% threshold may go either way.
    ambiguity = 0.06
    assert all(truth_fraction[c] >= meta.min_tissue_fraction - ambiguity for c in chosen)
    # At most 16 cells < 125: every clearly tissue cell is a patch.
    assert {c for c, f in truth_fraction.items() if f >= meta.min_tissue_fraction + ambiguity} <= chosen
    for image, patch in zip(prepared.images, meta.patches, strict=True):
        assert patch.x0 == patch.col * PATCH_PX * 2
        # Tissue is stained, glass is near white: a tissue patch is far from the background colour.
        assert image.mean() < 235, (patch.row, patch.col)
