"""Seed the cohort's imaging: DICOM into the PACS over STOW-RS, then the FHIR Endpoint and
ImagingStudy resources that point at it, so that record gathering finds the studies.

Idempotent: a study the PACS already holds completely is not sent again, and the FHIR side
is PUT at deterministic ids. A study the PACS refuses is reported (UID and reason) and the
others go on; its ImagingStudy is not written, so FHIR never points at missing pixels.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date
from typing import Any

from pydantic import BaseModel

from agent.cohort.bundles import WriteTally, put_transaction
from agent.cohort.generate import Cohort
from agent.cohort.imaging.fhir import imaging_resources
from agent.cohort.imaging.identity import PatientIdentity, PatientSex
from agent.cohort.imaging.plan import ImagingPlan, plan_imaging
from agent.cohort.imaging.render import render_study
from agent.cohort.imaging.study import StudyPlan
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
    """Store every planned study in the PACS and describe the stored ones in FHIR.

    `dicomweb_url` is the PACS base URL as the EHR's users reach it (the Endpoint address).
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
    tally = WriteTally()
    if ok:
        stored_plan = plan.model_copy(update={"studies": tuple(ok)})
        bundle = put_transaction(imaging_resources(stored_plan, dicomweb_url))
        tally.add(bundle, await fhir.transaction(bundle))
    return ImagingSeedReport(
        studies=len(plan.studies),
        instances_stored=stored,
        studies_already_stored=already,
        failed=failed,
        fhir_created=tally.created,
        fhir_updated=tally.updated,
        elapsed_s=round(time.perf_counter() - started, 3),
    )
