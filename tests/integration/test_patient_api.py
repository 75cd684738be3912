"""The patient API against the real FHIR server with the seeded cohort after a real summarize run:
the summary view and its attachments, Approve and Reject written on the server with their
Provenance (once), refusals before any FHIR call, a run of the planning graph with progress, and
readiness.

Callers are injected with `dependency_overrides[current_principal]` (a patient-bound bearer-token
principal: no CSRF token needed): this tests the API's logic; the real session and token paths are
tested with the EHR stand-in (tests of agent.service.authz and the browser tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from ehr_fixtures import EhrStandinFactory
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fhir_reads import get, search, server_with
from launched_app import LaunchedApp, launched_app
from live_app import serve_on

from agent.context import RunContext
from agent.jobs.summarize import summarize_many
from agent.service.app import create_app
from agent.service.authz import current_principal
from agent.service.principal import Principal
from agent.settings import Settings
from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.cohort.load import seed_cohort
from agent.testbed.stack.ports import free_port
from fhir_adapters import FhirClient, FhirConflict
from fhir_adapters.confirmed import post_transaction
from fhir_adapters.smart_scopes import ScopeSet
from tools.writeback.approval import REVIEW_SYSTEM, plan_review

pytestmark = pytest.mark.integration

REVIEWER = "Practitioner/reviewer-1"
SCOPES = (
    "patient/*.rs patient/Observation.cu patient/DiagnosticReport.cu patient/Provenance.c patient/Device.c"
)


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(2, 31)


@pytest.fixture(scope="module")
def server(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    """The cohort, each patient summarized once (the summary, trends and PDF transcriptions)."""
    base = server_with(fhir_server_factory, cohort)

    async def summarize() -> None:
        async with FhirClient(base) as client:
            outcomes = await summarize_many(RunContext(fhir=client), [p.id for p in cohort.patients])
        assert [o.status for o in outcomes] == ["written", "written"], outcomes

    asyncio.run(summarize())
    return base


def principal(patient_id: str, scopes: str = SCOPES, *, kind: Any = "token") -> Principal:
    return Principal(
        kind=kind, patient_id=patient_id, fhir_user=REVIEWER, scopes=ScopeSet.parse(scopes), label="test"
    )


@asynccontextmanager
async def client_for(
    fhir_url: str,
    who: Principal,
    tmp_path: Path,
    dicomweb_url: str | None = None,
    *,
    lifespan: bool = True,
    **settings: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app as `who`, inside the app's lifespan (its shared stores open) unless
    `lifespan` is False."""
    app = create_app(
        Settings(state_dir=tmp_path, **settings),
        public_url="http://testserver",
        fhir_url=fhir_url,
        dicomweb_url=dicomweb_url,
    )
    app.dependency_overrides[current_principal] = lambda: who
    async with AsyncExitStack() as stack:
        if lifespan:
            await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        yield await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://testserver")
        )


@pytest.fixture
async def api(server: str, cohort: Cohort, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # No lifespan: a fixture's setup and teardown run in different tasks, and the lifespan's cancel
    # scopes must end in the task that began them. Its routes (summary, results) need none of it.
    async with client_for(server, principal(cohort.patients[0].id), tmp_path, lifespan=False) as client:
        yield client


async def review_provenances(base: str, reference: str) -> list[dict[str, Any]]:
    return [
        p
        for p in await search(base, "Provenance")
        if any(t.get("system") == REVIEW_SYSTEM for t in p.get("meta", {}).get("tag", []))
        and any(t["reference"].startswith(reference + "/") for t in p["target"])
    ]


async def test_summary_view_after_a_summarize_run(api: httpx.AsyncClient, cohort: Cohort) -> None:
    patient = cohort.patients[0].id
    resp = await api.get(f"/api/patients/{patient}/summary")
    assert resp.status_code == 200, resp.text
    view = resp.json()
    assert view["patient"]["id"] == patient
    assert view["patient"]["name"]
    assert view["patient"]["birthDate"]
    assert view["need_patient_banner"] is True  # no session: SMART's default
    summary = view["summary"]
    assert summary["status"] == "preliminary"
    assert summary["reference"].startswith("DiagnosticReport/")
    assert summary["conclusion"]
    kinds = [f["contentType"].split(";")[0] for f in summary["presentedForm"]]
    assert kinds[0] == "text/plain"
    assert "image/png" in kinds
    png = next(f for f in summary["presentedForm"] if f["contentType"] == "image/png")
    got = await api.get(png["url"])
    assert got.status_code == 200
    assert got.headers["content-type"] == "image/png"
    assert got.content.startswith(b"\x89PNG")

    assert view["trends"], view
    for trend in view["trends"]:
        assert trend["reference"].startswith("Observation/")
        assert trend["direction"] in ("improved", "stable", "worsened")
        assert len(trend["points"]) >= 2
        times = [p["time"] for p in trend["points"]]
        assert times == sorted(times)
    assert any(t["referenceRange"] for t in view["trends"])

    assert view["pdf_values"], "the cohort's lab-report PDFs were transcribed"
    value = view["pdf_values"][0]
    assert value["document"].startswith("DocumentReference/")
    assert value["page"] >= 1
    assert len(value["bbox"]) == 4
    pdf = await api.get(value["url"])
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")

    pending = {p["reference"]: p for p in view["pending"]}
    assert summary["reference"] in pending
    assert value["reference"] in pending
    assert all(p["status"] == "preliminary" for p in pending.values())
    assert view["imaging"] == []  # no model: no imaging read


async def test_approve_sets_final_with_one_provenance_naming_the_reviewer(
    api: httpx.AsyncClient, server: str, cohort: Cohort
) -> None:
    view = (await api.get(f"/api/patients/{cohort.patients[0].id}/summary")).json()
    report = view["summary"]["reference"]
    rtype, rid = report.split("/")
    first = await api.post(f"/api/results/{rtype}/{rid}/approve", json={})
    assert first.status_code == 200, first.text
    outcome = first.json()
    assert (outcome["status"], outcome["written"]) == ("final", True)
    assert (await get(f"{server}/{report}"))["status"] == "final"
    (provenance,) = await review_provenances(server, report)
    assert provenance["agent"][0]["who"]["reference"] == REVIEWER
    assert provenance["agent"][0]["type"]["coding"][0]["code"] == "verifier"
    assert f"Provenance/{provenance['id']}" == outcome["provenance"]

    again = await api.post(f"/api/results/{rtype}/{rid}/approve")
    assert again.status_code == 200, again.text
    assert again.json() == {**outcome, "written": False}
    assert len(await review_provenances(server, report)) == 1

    # An approved result cannot be rejected any more.
    assert (await api.post(f"/api/results/{rtype}/{rid}/reject", json={"reason": "x"})).status_code == 409


async def test_reject_sets_entered_in_error_with_the_reason(
    api: httpx.AsyncClient, server: str, cohort: Cohort
) -> None:
    view = (await api.get(f"/api/patients/{cohort.patients[0].id}/summary")).json()
    value = view["pdf_values"][-1]["reference"]
    rtype, rid = value.split("/")
    assert (await api.post(f"/api/results/{rtype}/{rid}/reject", json={"reason": " "})).status_code == 422
    resp = await api.post(f"/api/results/{rtype}/{rid}/reject", json={"reason": "Misread unit on the scan"})
    assert resp.status_code == 200, resp.text
    stored = await get(f"{server}/{value}")
    assert stored["status"] == "entered-in-error"
    assert stored["note"][-1]["text"] == "Rejected by a reviewer: Misread unit on the scan"
    (provenance,) = await review_provenances(server, value)
    assert provenance["reason"] == [{"text": "Misread unit on the scan"}]
    after = (await api.get(f"/api/patients/{cohort.patients[0].id}/summary")).json()
    assert value not in {p["reference"] for p in after["pending"]}
    assert value not in {v["reference"] for v in after["pdf_values"]}


async def test_another_patients_result_is_refused_and_left_alone(
    api: httpx.AsyncClient, server: str, cohort: Cohort
) -> None:
    other = cohort.patients[1].id
    reports = await search(server, "DiagnosticReport", patient=other)
    theirs = next(r for r in reports if r["status"] == "preliminary")
    resp = await api.post(f"/api/results/DiagnosticReport/{theirs['id']}/approve")
    assert resp.status_code == 403
    assert (await get(f"{server}/DiagnosticReport/{theirs['id']}"))["status"] == "preliminary"
    assert await review_provenances(server, f"DiagnosticReport/{theirs['id']}") == []


async def test_refusals_come_before_any_fhir_call(cohort: Cohort, tmp_path: Path) -> None:
    # Nothing listens on this port: a FHIR call would answer 502, not the refusal.
    dead = f"http://127.0.0.1:{free_port()}/fhir"
    me, other = cohort.patients[0].id, cohort.patients[1].id
    async with client_for(dead, principal(me), tmp_path) as client:
        assert (await client.get(f"/api/patients/{other}/summary")).status_code == 403
        assert (
            await client.get(f"/api/patients/{other}/attachments/DiagnosticReport/x/0")
        ).status_code == 403
        assert (await client.post(f"/api/patients/{other}/summarize")).status_code == 403
        assert (await client.post("/api/results/Patient/x/approve")).status_code == 404
        assert (await client.get(f"/api/patients/{me}/summary")).status_code == 502  # the control
    read_only = principal(me, "patient/*.rs")
    async with client_for(dead, read_only, tmp_path) as client:
        resp = await client.post("/api/results/DiagnosticReport/x/approve")
        assert resp.status_code == 403
        assert "'u' on DiagnosticReport" in resp.json()["detail"]
    # A session's POST needs its CSRF token.
    async with client_for(dead, principal(me, kind="session"), tmp_path) as client:
        resp = await client.post("/api/results/DiagnosticReport/x/approve")
        assert resp.status_code == 403
        assert "CSRF" in resp.json()["detail"]


async def test_a_concurrent_change_fails_the_whole_review(server: str, cohort: Cohort) -> None:
    patient = cohort.patients[1].id
    reports = await search(server, "DiagnosticReport", patient=patient)
    report = next(r for r in reports if r["status"] == "preliminary")
    stale = plan_review(
        report, patient_id=patient, action="approve", reviewer=REVIEWER, now=datetime.now(UTC)
    )
    async with FhirClient(server) as client:
        changed = {**report, "conclusion": report["conclusion"] + " (edited)"}
        await client._request("PUT", f"{server}/DiagnosticReport/{report['id']}", body=changed)
        assert stale.bundle is not None
        with pytest.raises(FhirConflict):
            await post_transaction(client, stale.bundle)
    assert (await get(f"{server}/DiagnosticReport/{report['id']}"))["status"] == "preliminary"
    assert await review_provenances(server, f"DiagnosticReport/{report['id']}") == []


async def test_summarize_now_runs_the_graph_once_with_progress_on_any_replica(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    """Two replicas of the app over one state database: the run started on one is the patient's
    run on the other too, and either reports its progress."""
    patient = cohort.patients[1].id
    async with (
        client_for(server, principal(patient), tmp_path) as client,
        client_for(server, principal(patient), tmp_path) as replica,
    ):
        started = await client.post(f"/api/patients/{patient}/summarize")
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        again = await client.post(f"/api/patients/{patient}/summarize")
        assert again.json()["run_id"] == run_id  # one run at a time per patient
        elsewhere = await replica.post(f"/api/patients/{patient}/summarize")
        assert elsewhere.json()["run_id"] == run_id  # on every replica
        run: dict[str, Any] = {"status": "running"}
        for _ in range(600):
            run = (await replica.get(f"/api/runs/{run_id}")).json()
            if run["status"] != "running":
                break
            await asyncio.sleep(0.1)
        assert run["status"] == "done", run
        assert run["error"] is None
        nodes = [s["node"] for s in run["steps"]]
        assert nodes[:1] == ["check_changes"], nodes
        # Nothing new since the module's run: the graph plans nothing and writes nothing.
        assert run["written"] == []
        assert (await client.get(f"/api/runs/{run_id}")).json() == run
        assert (await client.get("/api/runs/unknown")).status_code == 404
    async with client_for(server, principal(cohort.patients[0].id), tmp_path) as client:
        assert (await client.get(f"/api/runs/{run_id}")).status_code == 404  # not this patient's run
    # The same patient id on another FHIR server is another patient: its runs are apart.
    other_server = principal(patient).model_copy(update={"fhir_base_url": "https://other-ehr.example/fhir"})
    async with client_for(server, other_server, tmp_path) as client:
        assert (await client.get(f"/api/runs/{run_id}")).status_code == 404


async def test_readyz_names_the_failing_check(
    server: str, dicomweb_base_url: str, cohort: Cohort, tmp_path: Path
) -> None:
    who = principal(cohort.patients[0].id)
    async with client_for(server, who, tmp_path, dicomweb_base_url) as client:
        resp = await client.get("/readyz")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["status"] == "ready"
        assert set(body["checks"]) == {"fhir", "dicomweb", "model", "checkpointer"}
        assert (await client.get("/healthz")).json() == {"status": "ok"}
    dead = f"http://127.0.0.1:{free_port()}/fhir"
    async with client_for(dead, who, tmp_path, dicomweb_base_url) as client:
        resp = await client.get("/readyz")
        assert resp.status_code == 503
        body = resp.json()
        assert body["status"] == "not ready"
        assert not body["checks"]["fhir"]["ok"]
        assert all(body["checks"][name]["ok"] for name in ("dicomweb", "model", "checkpointer"))
        assert "127.0.0.1" not in resp.text  # no URL in the details


REVIEW_SCOPES = f"launch openid fhirUser {SCOPES}"


@pytest.fixture(scope="module")
def behind_the_ehr(ehr_standin_factory: EhrStandinFactory) -> Iterator[tuple[LaunchedApp, str, str]]:
    """The real app on uvicorn behind the EHR stand-in; two patients of its FHIR server, the first
    summarized."""
    with launched_app(ehr_standin_factory) as launched:
        cohort = generate_cohort(2, 37)
        base = launched.ehr.upstream_fhir_url

        async def seed() -> None:
            async with FhirClient(base) as client:
                await seed_cohort(client, cohort)
                (outcome,) = await summarize_many(RunContext(fhir=client), [cohort.patients[0].id])
                assert outcome.status == "written", outcome

        asyncio.run(seed())
        yield launched, cohort.patients[0].id, cohort.patients[1].id


async def test_the_ehrs_patient_token_reviews_through_the_ehrs_fhir(
    behind_the_ehr: tuple[LaunchedApp, str, str],
) -> None:
    """The real path: the EHR's access token (validated by the service), FHIR reads and the review
    transaction relayed to the EHR's proxy, which enforces the token's scopes and compartment."""
    launched, patient, _ = behind_the_ehr
    token = launched.ehr.token_for(patient, REVIEW_SCOPES)
    headers = {"Authorization": f"Bearer {token.access_token.get_secret_value()}"}
    async with httpx.AsyncClient(base_url=launched.url, headers=headers, timeout=60) as client:
        view = (await client.get(f"/api/patients/{patient}/summary")).json()
        assert view["summary"]["status"] == "preliminary", view
        pdf = await client.get(view["pdf_values"][0]["url"])
        assert pdf.status_code == 200, pdf.text
        assert pdf.content.startswith(b"%PDF-")
        report = view["summary"]["reference"]
        approved = await client.post(f"/api/results/{report}/approve")
        assert approved.status_code == 200, approved.text
        value = view["pdf_values"][0]["reference"]
        rejected = await client.post(f"/api/results/{value}/reject", json={"reason": "transcription wrong"})
        assert rejected.status_code == 200, rejected.text
    upstream = launched.ehr.upstream_fhir_url
    assert (await get(f"{upstream}/{report}"))["status"] == "final"
    assert (await get(f"{upstream}/{value}"))["status"] == "entered-in-error"
    (provenance,) = await review_provenances(upstream, report)
    claims = jwt.decode(token.access_token.get_secret_value(), options={"verify_signature": False})
    assert provenance["agent"][0]["who"]["reference"] == claims["fhirUser"]


async def test_summarize_now_with_the_ehrs_token_writes_through_the_ehr(
    behind_the_ehr: tuple[LaunchedApp, str, str],
) -> None:
    launched, _, patient = behind_the_ehr
    # Without Device.c the run is refused before any work, not after it (the engine's Device is
    # written with the outputs); the app's default scopes include it.
    without_device = Settings().app_scopes.replace(" patient/Device.c", "")
    narrow = launched.ehr.token_for(patient, without_device).access_token.get_secret_value()
    async with httpx.AsyncClient(base_url=launched.url, timeout=60) as client:
        refused = await client.post(
            f"/api/patients/{patient}/summarize", headers={"Authorization": f"Bearer {narrow}"}
        )
        assert refused.status_code == 403
        assert "'c' on Device" in refused.json()["detail"]
        token = launched.ehr.token_for(patient, Settings().app_scopes).access_token.get_secret_value()
        client.headers["Authorization"] = f"Bearer {token}"
        started = await client.post(f"/api/patients/{patient}/summarize")
        assert started.status_code == 202, started.text
        run: dict[str, Any] = {"status": "running"}
        for _ in range(600):
            run = (await client.get(f"/api/runs/{started.json()['run_id']}")).json()
            if run["status"] != "running":
                break
            await asyncio.sleep(0.1)
        assert run["status"] == "done", run
        assert any(ref.startswith("DiagnosticReport/") for ref in run["written"]), run
        view = (await client.get(f"/api/patients/{patient}/summary")).json()
        assert view["summary"]["reference"] in run["written"]


def model_server(status_code: int) -> FastAPI:
    """An OpenAI-compatible server's `/v1/models`, answering `status_code`."""
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "medgemma"}]}, status_code=status_code)

    return app


@pytest.mark.parametrize(("status_code", "ready"), [(200, True), (503, False)])
async def test_readyz_asks_a_served_model_for_its_models(
    server: str, cohort: Cohort, tmp_path: Path, status_code: int, ready: bool
) -> None:
    with serve_on(model_server(status_code), free_port(), name="models") as url:
        settings = {"model_backend": "openai", "model_url": f"{url}/v1", "model": "medgemma"}
        async with client_for(server, principal(cohort.patients[0].id), tmp_path, **settings) as client:
            resp = await client.get("/readyz")
    model = resp.json()["checks"]["model"]
    assert model["ok"] is ready, model
    assert resp.status_code == (200 if ready else 503)
    assert model["detail"] == ("/models answered" if ready else "/models answered 503")
