"""Seed the cohort's imaging: DICOM into the PACS over STOW-RS, then the FHIR Endpoint and
ImagingStudy resources that point at it, so that record gathering finds the studies.

Idempotent: a study the PACS already holds completely is not sent again, and the FHIR side
is PUT at deterministic ids. A study the PACS refuses is reported (UID and reason) and the
others go on; its ImagingStudy is not written, so FHIR never points at missing pixels.

A cohort of 8 or more patients also gets one whole-slide study (`slide.plan_slide`, patient
at position 7). It is checked first (QIDO-RS: held when the PACS has at least one instance per
pyramid level), since rendering and dicomizing it is the slow part (about 3 s); otherwise it
is rendered in a temporary folder and sent with STOW-RS. Its ImagingStudy carries the
instance count the PACS reports.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.testbed.cohort.bundles import WriteTally, put_transaction
from agent.testbed.cohort.generate import Cohort
from agent.testbed.cohort.imaging.fhir import endpoint_id, imaging_resources, slide_imaging_study
from agent.testbed.cohort.imaging.identity import PatientIdentity, PatientSex
from agent.testbed.cohort.imaging.plan import ImagingPlan, plan_imaging
from agent.testbed.cohort.imaging.render import render_study
from agent.testbed.cohort.imaging.slide import SlidePlan, plan_slide, render_slide
from agent.testbed.cohort.imaging.study import StudyPlan
from agent.testbed.cohort.imaging.wsi_synth import DicomizeError
from fhir_adapters import FhirClient
from tools.imaging.dicomweb import DicomWebClient, DicomWebError

_SEX = {"female": PatientSex.FEMALE, "male": PatientSex.MALE}


class ImagingSeedReport(BaseModel):
    studies: int
    instances_stored: int
    studies_already_stored: int
    # "<StudyInstanceUID>: <reason>" for each study the PACS did not take whole.
    failed: list[str]
    fhir_created: int
    fhir_updated: int
    elapsed_s: float


def identity_of(patient: Mapping[str, Any]) -> PatientIdentity:
    """The DICOM Patient module values of a cohort Patient resource."""
    name = (patient.get("name") or [{}])[0]
    return PatientIdentity(
        patient_id=str(patient["id"]),
        family=str(name.get("family", "")),
        given=str((name.get("given") or [""])[0]),
        birth_date=date.fromisoformat(str(patient["birthDate"])),
        sex=_SEX.get(str(patient.get("gender")), PatientSex.OTHER),
    )


def cohort_imaging_plan(cohort: Cohort) -> ImagingPlan:
    return plan_imaging([p.id for p in cohort.patients], cohort.seed, reference_date=cohort.reference_date)


def cohort_slide_plan(cohort: Cohort) -> SlidePlan | None:
    """The cohort's whole-slide study (patient at position 7), or None below 8 patients."""
    return plan_slide([p.id for p in cohort.patients], cohort.seed, reference_date=cohort.reference_date)


@dataclass(frozen=True)
class _SlideOutcome:
    held: int  # instances the PACS holds for the slide study after this run (0: write no ImagingStudy)
    stored: int  # instances sent and stored in this run
    already: bool
    failure: str | None = None


async def _held_instances(pacs: DicomWebClient, study_uid: str) -> int:
    found = await pacs.search_studies({"StudyInstanceUID": study_uid})
    return max((m.number_of_study_related_instances or 0 for m in found), default=0)


def _render_in_tempdir(slide: SlidePlan, identity: PatientIdentity) -> list[bytes]:
    with tempfile.TemporaryDirectory(prefix="chartagent-slide-") as tmp:
        return render_slide(slide, identity, Path(tmp))


async def _seed_slide(pacs: DicomWebClient, slide: SlidePlan, identity: PatientIdentity) -> _SlideOutcome:
    try:
        held = await _held_instances(pacs, slide.uid)
        if held >= slide.min_instances:
            return _SlideOutcome(held=held, stored=0, already=True)
        # CPU-bound for a few seconds: off the event loop.
        files = await asyncio.to_thread(_render_in_tempdir, slide, identity)
        result = await pacs.store(files, study_uid=slide.uid)
    except (DicomWebError, DicomizeError) as exc:
        return _SlideOutcome(held=0, stored=0, already=False, failure=f"{slide.uid}: {exc}")
    if result.failed:
        failure = f"{slide.uid}: {len(result.failed)} of {len(files)} instances refused"
        return _SlideOutcome(held=0, stored=len(result.stored), already=False, failure=failure)
    return _SlideOutcome(held=len(result.stored), stored=len(result.stored), already=False)


async def _already_stored(pacs: DicomWebClient, study: StudyPlan) -> bool:
    found = await pacs.search_studies({"StudyInstanceUID": study.uid})
    return any(m.number_of_study_related_instances == study.instance_count for m in found)


async def seed_imaging(
    fhir: FhirClient,
    pacs: DicomWebClient,
    cohort: Cohort,
    *,
    dicomweb_url: str,
    plan: ImagingPlan | None = None,
) -> ImagingSeedReport:
    """Store every planned study (and the cohort's slide) in the PACS and describe the stored ones in FHIR.

    `dicomweb_url` is the PACS base URL as the EHR's users reach it (the Endpoint address).
    The slide counts as one study in the report.
    """
    started = time.perf_counter()
    plan = plan or cohort_imaging_plan(cohort)
    identities = {p.id: identity_of(p.resources[0]) for p in cohort.patients}
    stored = already = 0
    failed: list[str] = []
    ok: list[StudyPlan] = []
    for study in plan.studies:
        try:
            if await _already_stored(pacs, study):
                already += 1
                ok.append(study)
                continue
            result = await pacs.store(
                (i.data for i in render_study(study, identities[study.patient_id])), study_uid=study.uid
            )
        except DicomWebError as exc:
            failed.append(f"{study.uid}: {exc}")
            continue
        stored += len(result.stored)
        if result.failed:
            failed.append(f"{study.uid}: {len(result.failed)} of {study.instance_count} instances refused")
            continue
        ok.append(study)
    slide = cohort_slide_plan(cohort)
    resources = imaging_resources(plan.model_copy(update={"studies": tuple(ok)}), dicomweb_url)
    if slide is not None:
        outcome = await _seed_slide(pacs, slide, identities[slide.patient_id])
        stored += outcome.stored
        already += int(outcome.already)
        if outcome.failure is not None:
            failed.append(outcome.failure)
        if outcome.held:
            resources.append(slide_imaging_study(slide, endpoint_id(dicomweb_url), instances=outcome.held))
    tally = WriteTally()
    if len(resources) > 1:  # more than the Endpoint
        bundle = put_transaction(resources)
        tally.add(bundle, await fhir.transaction(bundle))
    return ImagingSeedReport(
        studies=len(plan.studies) + int(slide is not None),
        instances_stored=stored,
        studies_already_stored=already,
        failed=failed,
        fhir_created=tally.created,
        fhir_updated=tally.updated,
        elapsed_s=round(time.perf_counter() - started, 3),
    )
