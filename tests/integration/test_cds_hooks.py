"""CDS Hooks patient-view against the real app (uvicorn), the seeded cohort after a summarize run,
and the EHR stand-in signing each call: the card shows the run's summary, read from the service's
FHIR server or through the EHR's FHIR proxy with the token the call carries; unsigned, replayed or
mis-addressed calls get 401; a FHIR server that does not answer gives no card, and a log line
without patient data."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from ehr_fixtures import EhrStandin, EhrStandinFactory
from fhir_reads import search, server_with
from live_app import serve_on

from agent.context import RunContext
from agent.jobs.summarize import summarize_many
from agent.service.app import create_app
from agent.service.cds_card import SOURCE_LABEL, trim_summary
from agent.service.token_uses import SERVICE_DATABASE_FILE
from agent.settings import Settings
from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.ehr.cds_client import call_patient_view, patient_view_request, sign_hook_request
from agent.testbed.stack.ports import free_port
from fhir_adapters import FhirClient

pytestmark = pytest.mark.integration

SUMMARY_CODE = "http://loinc.org|11502-2"


@dataclass(frozen=True)
class Stack:
    fhir: str
    app: str
    ehr: EhrStandin
    settings: Settings
    summarized: str  # a patient with a summary
    plain: str  # a patient without one

    @property
    def hook(self) -> str:
        return f"{self.app}/cds-services/chartagent-summary"


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(2, 21)


@pytest.fixture(scope="module")
def stack(
    fhir_server_factory: Callable[..., str],
    ehr_standin_factory: EhrStandinFactory,
    cohort: Cohort,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    fhir = server_with(fhir_server_factory, cohort)
    summarized, plain = (p.id for p in cohort.patients)

    async def summarize() -> None:
        async with FhirClient(fhir) as client:
            (outcome,) = await summarize_many(RunContext(fhir=client), [summarized])
        assert outcome.status == "written", outcome.error

    asyncio.run(summarize())
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    ehr = ehr_standin_factory(app_url=public, fhir_url=fhir)
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("cds-state"),
        cds_trusted_issuers={ehr.base_url: ehr.hook_signer.jwks_url},
    )
    app = create_app(settings, public_url=public, fhir_url=fhir)
    with serve_on(app, port) as url:
        yield Stack(fhir=fhir, app=url, ehr=ehr, settings=settings, summarized=summarized, plain=plain)


async def conclusion_of(stack: Stack) -> str:
    (report,) = await search(
        stack.fhir, "DiagnosticReport", subject=f"Patient/{stack.summarized}", code=SUMMARY_CODE
    )
    return str(report["conclusion"])


async def test_discovery_names_the_patient_view_service(stack: Stack) -> None:
    async with httpx.AsyncClient() as http:
        body = (await http.get(f"{stack.app}/cds-services")).json()
    (service,) = body["services"]
    assert service["id"] == "chartagent-summary"
    assert service["hook"] == "patient-view"
    assert service["title"]
    assert service["description"]


async def test_the_card_shows_the_runs_summary(stack: Stack) -> None:
    async with httpx.AsyncClient() as http:
        response = await call_patient_view(
            http, stack.ehr.hook_signer, stack.hook, patient_id=stack.summarized, user_id="Practitioner/1"
        )
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert card["summary"] == trim_summary(await conclusion_of(stack))
    assert len(card["summary"]) <= 140
    assert card["source"]["label"] == SOURCE_LABEL
    assert "**preliminary**" in card["detail"]
    assert card["indicator"] in ("info", "warning")
    (link,) = card["links"]
    assert link["type"] == "smart"
    assert link["url"] == f"{stack.app}/app/launch"


async def test_through_the_ehrs_fhir_server_with_the_token_the_call_carries(stack: Stack) -> None:
    token = stack.ehr.token_for(stack.summarized, "launch openid patient/*.rs")
    auth = {
        "access_token": token.access_token.get_secret_value(),
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.rs",
        "subject": "chartagent-cds",
        "patient": stack.summarized,
    }
    async with httpx.AsyncClient() as http:
        response = await call_patient_view(
            http,
            stack.ehr.hook_signer,
            stack.hook,
            patient_id=stack.summarized,
            user_id="Practitioner/1",
            fhir_server=stack.ehr.fhir_url,
            fhir_authorization=auth,
        )
        (card,) = response.json()["cards"]
        assert card["summary"] == trim_summary(await conclusion_of(stack))
        # The token is bound to its patient: a call about another patient is refused before FHIR.
        other = await call_patient_view(
            http,
            stack.ehr.hook_signer,
            stack.hook,
            patient_id=stack.plain,
            user_id="Practitioner/1",
            fhir_server=stack.ehr.fhir_url,
            fhir_authorization=auth,
        )
    assert other.status_code == 400


async def test_no_summary_no_card(stack: Stack) -> None:
    async with httpx.AsyncClient() as http:
        response = await call_patient_view(
            http, stack.ehr.hook_signer, stack.hook, patient_id=stack.plain, user_id="Practitioner/1"
        )
    assert response.status_code == 200
    assert response.json() == {"cards": []}


async def test_unsigned_replayed_or_misaddressed_calls_are_refused(stack: Stack) -> None:
    body = patient_view_request(patient_id=stack.summarized, user_id="Practitioner/1")
    signer = stack.ehr.hook_signer
    async with httpx.AsyncClient() as http:
        unsigned = await http.post(stack.hook, json=body)
        token = sign_hook_request(signer, stack.hook)
        first = await http.post(stack.hook, json=body, headers={"Authorization": f"Bearer {token}"})
        replayed = await http.post(stack.hook, json=body, headers={"Authorization": f"Bearer {token}"})
        elsewhere = sign_hook_request(signer, "https://other.example/cds-services/chartagent-summary")
        misaddressed = await http.post(
            stack.hook, json=body, headers={"Authorization": f"Bearer {elsewhere}"}
        )
    assert first.status_code == 200
    for refused in (unsigned, replayed, misaddressed):
        assert refused.status_code == 401
        assert "cards" not in refused.json()
        assert stack.summarized not in refused.text


async def test_a_call_replayed_to_another_replica_is_refused(stack: Stack) -> None:
    """Two replicas behind one public URL, as the Helm chart runs them: the EHR's server sends no
    route cookie, so a replayed call may reach either; the tokens used are in the shared database."""
    body = patient_view_request(patient_id=stack.summarized, user_id="Practitioner/1")
    signer = stack.ehr.hook_signer
    other = create_app(stack.settings, public_url=stack.app, fhir_url=stack.fhir)
    with serve_on(other, free_port(), "chartagent-replica") as replica:
        replica_hook = f"{replica}/cds-services/chartagent-summary"
        token = sign_hook_request(signer, stack.hook)
        fresh = sign_hook_request(signer, stack.hook)
        async with httpx.AsyncClient() as http:
            first = await http.post(stack.hook, json=body, headers={"Authorization": f"Bearer {token}"})
            replayed = await http.post(replica_hook, json=body, headers={"Authorization": f"Bearer {token}"})
            answered = await http.post(replica_hook, json=body, headers={"Authorization": f"Bearer {fresh}"})
            back = await http.post(stack.hook, json=body, headers={"Authorization": f"Bearer {fresh}"})
    assert first.status_code == 200, first.text
    assert answered.status_code == 200, answered.text  # the replica answers calls it has not seen
    for refused in (replayed, back):
        assert refused.status_code == 401
        assert "replayed" in refused.json()["detail"]


async def test_a_call_is_refused_when_its_single_use_cannot_be_checked(stack: Stack, tmp_path: Path) -> None:
    """The record of used tokens failing (its table gone here) gives 503, never an unchecked card."""
    settings = stack.settings.model_copy(update={"state_dir": tmp_path})
    app = create_app(settings, public_url=stack.app, fhir_url=stack.fhir)
    with serve_on(app, free_port(), "chartagent-replica") as replica:
        with sqlite3.connect(tmp_path / SERVICE_DATABASE_FILE) as db:
            db.execute("DROP TABLE token_uses")
        token = sign_hook_request(stack.ehr.hook_signer, stack.hook)
        body = patient_view_request(patient_id=stack.summarized, user_id="Practitioner/1")
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{replica}/cds-services/chartagent-summary",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
    assert response.status_code == 503
    assert response.json() == {"detail": "the token's single use could not be checked"}


async def test_a_fhir_server_that_does_not_answer_gives_no_card(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/fhir"
    auth = {"access_token": "x" * 20, "token_type": "Bearer", "scope": "patient/*.rs", "subject": "cds"}
    with caplog.at_level(logging.WARNING, logger="agent.service.cds_hooks"):
        async with httpx.AsyncClient() as http:
            response = await call_patient_view(
                http,
                stack.ehr.hook_signer,
                stack.hook,
                patient_id=stack.summarized,
                user_id="Practitioner/1",
                fhir_server=closed,
                fhir_authorization=auth,
            )
    assert response.status_code == 200
    assert response.json() == {"cards": []}
    warnings = [r.getMessage() for r in caplog.records if r.name == "agent.service.cds_hooks"]
    assert warnings
    assert not any(stack.summarized in w or "x" * 20 in w or closed in w for w in warnings)
