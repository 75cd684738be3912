"""Seed the cohort's imaging into a real Orthanc and FHIR server, find it the way the agent
does (ImagingStudy -> Endpoint -> DICOMweb), and prepare every modality from the PACS."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pydicom
import pytest

from agent.cohort import Cohort, generate_cohort
from agent.cohort.imaging import Modality, StudyPlan, Timepoint, render_study
from agent.cohort.imaging.seed import cohort_imaging_plan, identity_of, seed_imaging
from agent.cohort.load import seed_cohort
from fhir_adapters import FhirClient
from tools.imaging.ct import prepare_ct
from tools.imaging.cxr import prepare_cxr
from tools.imaging.dicomweb import DicomWebClient
from tools.imaging.mri import prepare_mri
from tools.imaging.prepared import PreparedImages
from tools.imaging.sources import LoadedInstance, load_dicomweb
from tools.imaging.volume import assemble
from tools.record import gather_record

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    # Seven patients: every imaging role of the plan (CT pairs, MR, CXR pairs) is present.
    return generate_cohort(7, 5)


@pytest.fixture(scope="module")
def servers(fhir_server_factory: Callable[..., str], orthanc_factory: Callable[..., Any]) -> tuple[str, str]:
    return fhir_server_factory(), orthanc_factory().dicomweb_url


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


async def test_seeded_imaging_is_found_through_fhir_and_prepared_from_the_pacs(
    servers: tuple[str, str], cohort: Cohort
) -> None:
    fhir_url, dicomweb_url = servers
    async with FhirClient(fhir_url) as fhir, DicomWebClient(dicomweb_url) as pacs:
        await seed_cohort(fhir, cohort)
        first = await seed_imaging(fhir, pacs, cohort, dicomweb_url=dicomweb_url)
        assert first.failed == []
        assert first.instances_stored == sum(s.instance_count for s in cohort_imaging_plan(cohort).studies)
        again = await seed_imaging(fhir, pacs, cohort, dicomweb_url=dicomweb_url)
        assert again.instances_stored == 0
        assert again.studies_already_stored == first.studies
        assert again.fhir_created == 0

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
