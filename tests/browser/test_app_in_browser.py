"""The SMART app in headless Chromium, launched the way a clinician launches it: from the EHR
stand-in's launcher (EHR launch) or its patient picker (standalone launch), against the real
service, the stand-in's SMART server and FHIR proxy, and sekmet behind it.

What is checked is what the browser shows and what lands on the FHIR server: the banner and
the AI summary; Approve makes the result `final` with a Provenance naming the fhirUser; Reject
makes it `entered-in-error` with the reason; the chat streams a scripted model's answer whose
citation opens the resource; a session outlives its 2 s access tokens through the refresh token;
no token, code or patient id in any URL the browser visits after the callback; the CSP is sent and
nothing violates it.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import httpx2
import pytest
from browser_stack import NOTE_TEXT, SAVE_NOTE, Deployment, Patients, Recorder, screenshot
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from playwright.sync_api import Locator, Page, expect

from agent.service.mcp_server import PROPOSE_NOTE
from agent.testbed.ehr.config import DEMO_PRACTITIONER_ID
from tools.writeback.approval import ReviewAction, review_tag

pytestmark = [pytest.mark.integration, pytest.mark.browser]

FHIR_USER = f"Practitioner/{DEMO_PRACTITIONER_ID}"
# The pending-list title of the planning graph's lab summary (the report's code text).
SUMMARY_TITLE = "Automated laboratory trend summary"
# What must never be in a URL after the callback: an OAuth code, state or token, a JWT.
SECRET_IN_URL = re.compile(
    r"[?&#](code|state|access_token|refresh_token|id_token|launch|iss)=|eyJ[\w-]{8,}\."
)


def fhir_get(base: str, path: str, **params: str) -> Any:
    resp = httpx.get(f"{base}/{path}", params=params or None, timeout=30)
    resp.raise_for_status()
    return resp.json()


def reviews(deployment: Deployment, reference: str, action: ReviewAction) -> list[Any]:
    """The review Provenances of `reference` (found by the tag the review derives from it)."""
    bundle = fhir_get(deployment.fhir_url, "Provenance", _tag=review_tag(reference, action))
    return [e["resource"] for e in bundle.get("entry", [])]


def open_app(page: Page, url: str) -> None:
    """Follow a launch to the app and wait until it shows the patient's view."""
    page.goto(url)
    expect(page.locator("#main")).to_have_attribute("data-loaded", "", timeout=60_000)


def ehr_launch(page: Page, deployment: Deployment, patient_id: str) -> None:
    open_app(page, deployment.launch_url(patient_id))
    assert page.url == f"{deployment.app_url}/app/"


def pending_report(page: Page, title: str) -> tuple[Locator, str]:
    """The pending AI DiagnosticReport titled `title` and its reference."""
    approve = page.get_by_role("button", name="Approve", exact=True)
    reports = page.locator("[data-testid=pending-item][data-reference^='DiagnosticReport/']")
    item = reports.filter(has=approve, has_text=title).first
    expect(item).to_be_visible()
    reference = item.get_attribute("data-reference")
    assert reference
    return item, reference


def assert_clean_urls(recorder: Recorder, deployment: Deployment, patient_id: str) -> None:
    """After the callback: no secret in any URL; the patient id only in the app's own API paths
    (the API's routes name the patient, and the session checks it), never in a page's URL."""
    requests, navigations = recorder.after("/app/callback")
    assert f"{deployment.app_url}/app/" in navigations, "the callback did not lead to the app"
    for url in requests + navigations:
        assert not SECRET_IN_URL.search(url), "a code, state or token in a URL after the callback"
    for url in navigations:
        assert patient_id not in url, "the patient id in a page URL"
    api = f"{deployment.app_url}/api/patients/{patient_id}/"
    for url in requests:
        assert patient_id not in url or url.startswith(api), "the patient id outside the app's API"


def assert_no_csp_violation(recorder: Recorder) -> None:
    violations = [m for m in recorder.console if "Content Security Policy" in m or "Refused to" in m]
    assert violations == []
    assert recorder.page_errors == []


def test_ehr_launch_shows_banner_and_summary_and_approve_makes_it_final(
    page: Page, deployment: Deployment, patients: Patients, recorder: Recorder
) -> None:
    patient = fhir_get(deployment.fhir_url, f"Patient/{patients.approve}")
    with page.expect_response(f"{deployment.app_url}/app/") as app_page:
        ehr_launch(page, deployment, patients.approve)
    csp = app_page.value.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp
    assert "frame-ancestors" in csp
    assert "unsafe-inline" not in csp

    banner = page.get_by_test_id("patient-banner")
    expect(banner).to_be_visible()
    expect(page.get_by_test_id("banner-name")).to_contain_text(patient["name"][0]["family"])
    expect(page.get_by_test_id("banner-birthdate")).to_have_text(patient["birthDate"])
    expect(page.get_by_test_id("banner-sex")).to_have_text(patient["gender"])
    summary = page.get_by_test_id("summary")
    expect(summary.get_by_test_id("status")).to_have_text("preliminary")
    expect(summary.get_by_test_id("ai-label")).to_have_text("AI-generated")
    expect(summary.get_by_test_id("summary-text")).not_to_be_empty()
    screenshot(page, "app-ehr-launch")

    # A trend point shows its value on hover and opens its Observation.
    point = page.get_by_test_id("trend-point").first
    point.scroll_into_view_if_needed()
    point.hover()
    expect(page.get_by_test_id("chart-tip")).to_be_visible()
    screenshot(page, "app-lab-trends")
    observation = point.get_attribute("data-reference")
    assert observation
    assert observation.startswith("Observation/")
    point.click()
    expect(page.get_by_test_id("resource-title")).to_have_text(observation)
    expect(page.get_by_test_id("resource-json")).to_contain_text(f'"id": "{observation.split("/")[1]}"')
    page.get_by_role("button", name="Close").click()

    # A value read from a PDF links to its page of the document, which the API serves as PDF.
    pdf_link = page.get_by_test_id("pdf-link").first
    href = pdf_link.get_attribute("href")
    assert href
    attachments = f"/api/patients/{re.escape(patients.approve)}/attachments"
    assert re.fullmatch(rf"{attachments}/DocumentReference/[\w.-]+/\d+#page=\d+", href)
    attachment = page.request.get(f"{deployment.app_url}{href.split('#')[0]}")
    assert attachment.status == 200
    assert attachment.headers["content-type"].startswith("application/pdf")

    # The chest X-ray read: its overlay PNG (boxes drawn on the image read) and the boxes listed.
    imaging = page.get_by_test_id("imaging-report").first
    overlay = imaging.get_by_test_id("imaging-overlay")
    expect(overlay).to_be_visible()
    assert overlay.evaluate("img => img.complete && img.naturalWidth > 0")
    expect(imaging.locator(".boxes li")).to_have_count(2)
    expect(imaging.get_by_test_id("ai-label")).to_be_visible()
    screenshot(page, "app-imaging", show=imaging)

    item, reference = pending_report(page, SUMMARY_TITLE)
    item.get_by_role("button", name="Approve", exact=True).click()
    outcome = page.locator(f"[data-testid=pending-item][data-reference='{reference}']")
    expect(outcome.get_by_test_id("pending-outcome")).to_have_text("Approved")
    screenshot(page, "app-approved", show=page.get_by_test_id("pending"))

    report = fhir_get(deployment.fhir_url, reference)
    assert report["status"] == "final"
    (provenance,) = reviews(deployment, reference, "approve")
    assert [a["who"]["reference"] for a in provenance["agent"]] == [FHIR_USER]
    assert provenance["target"][0]["reference"].startswith(f"{reference}/_history/")

    assert_clean_urls(recorder, deployment, patients.approve)
    assert_no_csp_violation(recorder)


def test_reject_asks_for_a_reason_and_marks_the_result_entered_in_error(
    page: Page, deployment: Deployment, patients: Patients, recorder: Recorder
) -> None:
    ehr_launch(page, deployment, patients.reject)
    item, reference = pending_report(page, SUMMARY_TITLE)
    # The session's cookie alone (a cross-site form could send it) does not reject anything.
    forged = page.request.post(f"{deployment.app_url}/api/results/{reference}/reject", data={"reason": "x"})
    assert forged.status == 403
    assert fhir_get(deployment.fhir_url, reference)["status"] == "preliminary"
    item.get_by_role("button", name="Reject", exact=True).click()
    dialog = page.get_by_test_id("reject-dialog")
    expect(dialog).to_be_visible()
    reason = "Summary omits the latest creatinine result"
    page.get_by_test_id("reject-reason").fill(reason)
    screenshot(page, "app-reject-reason")
    page.get_by_test_id("reject-confirm").click()
    outcome = page.locator(f"[data-testid=pending-item][data-reference='{reference}']")
    expect(outcome.get_by_test_id("pending-outcome")).to_have_text("Rejected")

    assert fhir_get(deployment.fhir_url, reference)["status"] == "entered-in-error"
    (provenance,) = reviews(deployment, reference, "reject")
    assert provenance["reason"] == [{"text": reason}]
    assert [a["who"]["reference"] for a in provenance["agent"]] == [FHIR_USER]
    assert_clean_urls(recorder, deployment, patients.reject)
    assert_no_csp_violation(recorder)


def test_standalone_launch_from_the_patient_picker(
    page: Page, deployment: Deployment, patients: Patients, recorder: Recorder
) -> None:
    page.goto(f"{deployment.app_url}/app/launch")
    picker = page.get_by_test_id(f"pick-{patients.fresh}")
    expect(picker).to_be_visible()
    screenshot(page, "ehr-patient-picker")
    picker.click()
    expect(page.locator("#main")).to_have_attribute("data-loaded", "", timeout=60_000)
    assert page.url == f"{deployment.app_url}/app/"
    patient = fhir_get(deployment.fhir_url, f"Patient/{patients.fresh}")
    expect(page.get_by_test_id("banner-birthdate")).to_have_text(patient["birthDate"])
    assert_clean_urls(recorder, deployment, patients.fresh)
    assert_no_csp_violation(recorder)


def test_chat_streams_the_answer_and_its_citation_opens_the_resource(
    page: Page, deployment: Deployment, patients: Patients, recorder: Recorder
) -> None:
    ehr_launch(page, deployment, patients.chat)
    page.get_by_test_id("chat-input").fill("What is the latest HbA1c?")
    with page.expect_response(f"{deployment.app_url}/api/agent") as streamed:
        page.get_by_test_id("chat-send").click()
    assert streamed.value.headers["content-type"].startswith("text/event-stream")
    answer = page.locator("[data-testid=chat-answer][data-done]").last
    expect(answer).to_contain_text(f"{patients.a1c_value:g} %")
    tool = page.locator("[data-testid=tool-call][data-tool=lab_trend]").first
    expect(tool).to_have_attribute("data-done", "")

    tool.locator("summary").click()
    screenshot(page, "app-chat")
    citation = answer.get_by_test_id("citation")
    expect(citation).to_have_count(1)
    expect(citation).to_have_attribute("data-reference", patients.a1c_reference)
    citation.click()
    expect(page.get_by_test_id("resource-title")).to_have_text(patients.a1c_reference)
    expect(page.get_by_test_id("resource-json")).to_contain_text('"resourceType": "Observation"')
    assert_clean_urls(recorder, deployment, patients.chat)
    assert_no_csp_violation(recorder)


def chat_notes(deployment: Deployment, patient_id: str) -> list[str]:
    """The texts of the chat notes on the FHIR server for `patient_id`."""
    bundle = fhir_get(deployment.fhir_url, "DocumentReference", subject=f"Patient/{patient_id}")
    return [
        base64.b64decode(e["resource"]["content"][0]["attachment"]["data"]).decode()
        for e in bundle.get("entry", [])
        if e["resource"].get("description") == "AI-generated chat note"
    ]


def test_a_note_proposed_in_the_chat_is_written_only_after_save(
    page: Page, deployment: Deployment, patients: Patients, recorder: Recorder
) -> None:
    ehr_launch(page, deployment, patients.chat)
    before = chat_notes(deployment, patients.chat)
    page.get_by_test_id("chat-input").fill(f"Please {SAVE_NOTE}.")
    page.get_by_test_id("chat-send").click()
    expect(page.get_by_test_id("chat-answer").last).to_contain_text(NOTE_TEXT)
    proposal = page.get_by_test_id("chat-interrupt")
    expect(proposal).to_have_attribute("aria-description", re.compile(re.escape(NOTE_TEXT)))
    assert chat_notes(deployment, patients.chat) == before  # proposed, nothing written
    screenshot(page, "app-chat-note", show=proposal)
    proposal.get_by_role("button", name="Save", exact=True).click()
    saved = page.locator("[data-testid=chat-answer][data-done]").last
    expect(saved).to_contain_text("Saved the note as DocumentReference/")
    after = chat_notes(deployment, patients.chat)
    assert len(after) == len(before) + 1
    assert sum(NOTE_TEXT in text for text in after) == sum(NOTE_TEXT in text for text in before) + 1
    assert_no_csp_violation(recorder)


# What an MCP client's token grants: reading the record and proposing notes.
MCP_SCOPES = (
    "launch openid fhirUser patient/*.rs patient/DocumentReference.c patient/Device.c patient/Provenance.c"
)


async def _propose_over_mcp(url: str, token: str, text: str, sources: list[str]) -> dict[str, Any]:
    """`propose_note` through the `mcp` package's own client, as an outside AI tool calls it."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool(PROPOSE_NOTE, {"text": text, "sources": sources})
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def propose_over_mcp(deployment: Deployment, patient_id: str, text: str, sources: list[str]) -> str:
    """Proposes `text` for `patient_id` over MCP with a patient token of the stand-in; its id."""
    token = deployment.ehr.token_for(patient_id, MCP_SCOPES).access_token.get_secret_value()
    # On a thread of its own: Playwright's sync API keeps an event loop running on this one.
    with ThreadPoolExecutor(1) as pool:
        coro = _propose_over_mcp(f"{deployment.app_url}/mcp", token, text, sources)
        proposal = pool.submit(asyncio.run, coro).result()
    assert proposal["written"] is False
    ident: str = proposal["identifier"]
    return ident


def notes_with(deployment: Deployment, identifier: str) -> list[Any]:
    bundle = fhir_get(deployment.fhir_url, "DocumentReference", identifier=identifier)
    return [e["resource"] for e in bundle.get("entry", [])]


def test_a_note_proposed_over_mcp_waits_in_the_app_until_a_person_writes_or_discards_it(
    page: Page, deployment: Deployment, patients: Patients, recorder: Recorder
) -> None:
    """Two proposals wait at launch; while the app is open a third arrives and another person
    discards one: coming back to the app (focus) shows both. Write and Discard decide the rest."""
    keep = "Recheck HbA1c in three months (proposed over MCP)."
    drop = "Stop metformin (proposed over MCP)."
    kept = propose_over_mcp(deployment, patients.chat, keep, [patients.a1c_reference])
    dropped = propose_over_mcp(deployment, patients.chat, drop, [])
    assert notes_with(deployment, kept) == notes_with(deployment, dropped) == []  # nothing written yet

    ehr_launch(page, deployment, patients.chat)
    to_write = page.locator(f"[data-testid=proposal][data-proposal='{kept}']")
    to_drop = page.locator(f"[data-testid=proposal][data-proposal='{dropped}']")
    expect(to_write.get_by_test_id("proposal-text")).to_have_text(keep)
    expect(to_write.get_by_test_id("citation")).to_have_text(patients.a1c_reference)
    expect(to_drop.get_by_test_id("proposal-text")).to_have_text(drop)
    screenshot(page, "app-mcp-proposal", show=to_write)

    late = "Repeat the urine albumin test (proposed over MCP)."
    arrived = propose_over_mcp(deployment, patients.chat, late, [])
    token = deployment.ehr.token_for(patients.chat, MCP_SCOPES).access_token.get_secret_value()
    elsewhere = httpx.post(
        f"{deployment.app_url}/api/proposals/{dropped}/discard",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert elsewhere.status_code == 200, elsewhere.text
    page.evaluate("window.dispatchEvent(new Event('focus'))")  # the clinician comes back to the app
    to_late = page.locator(f"[data-testid=proposal][data-proposal='{arrived}']")
    expect(to_late.get_by_test_id("proposal-text")).to_have_text(late)
    expect(to_drop.get_by_test_id("proposal-outcome")).to_have_text(
        "No longer waiting: decided elsewhere, or expired"
    )
    expect(to_drop.get_by_role("button")).to_have_count(0)

    to_write.get_by_role("button", name="Write to chart", exact=True).click()
    expect(to_write.get_by_test_id("proposal-outcome")).to_contain_text(
        "Written to the chart as DocumentReference/"
    )
    to_late.get_by_role("button", name="Discard", exact=True).click()
    expect(to_late.get_by_test_id("proposal-outcome")).to_have_text("Discarded: nothing was written")

    written = notes_with(deployment, kept)
    assert len(written) == 1
    assert written[0]["docStatus"] == "preliminary"
    assert f"DocumentReference/{written[0]['id']}" in (
        to_write.get_by_test_id("proposal-outcome").text_content() or ""
    )
    assert keep in base64.b64decode(written[0]["content"][0]["attachment"]["data"]).decode()
    assert notes_with(deployment, dropped) == notes_with(deployment, arrived) == []
    # Decided: none waits any more.
    open_app(page, deployment.launch_url(patients.chat))
    expect(page.get_by_test_id("proposals-card")).to_be_hidden()
    assert page.locator("[data-testid=proposal]").count() == 0
    assert_no_csp_violation(recorder)


def test_summarize_now_shows_the_runs_progress(
    page: Page, deployment: Deployment, patients: Patients
) -> None:
    ehr_launch(page, deployment, patients.fresh)
    page.get_by_test_id("summarize").click()
    run = page.get_by_test_id("run-progress")
    expect(run).to_have_attribute("data-status", re.compile("done|failed"), timeout=120_000)
    expect(run).to_have_attribute("data-status", "done")
    expect(run.locator(".run-steps li").first).to_be_visible()
    expect(page.get_by_test_id("summary").get_by_test_id("status")).to_have_text("preliminary")
    screenshot(page, "app-summarize-now")


def test_a_run_the_server_no_longer_knows_says_so_and_that_its_writes_stay(
    page: Page, deployment: Deployment, patients: Patients
) -> None:
    """A restarted service (or another replica) answers a run's progress with 404: the run lived in
    the process that started it. The page says what is true then, not "no such run"."""
    ehr_launch(page, deployment, patients.fresh)  # summarized by the run above: nothing new to write
    unknown = page.request.get(f"{deployment.app_url}/api/runs/run-of-a-process-that-is-gone")
    assert (unknown.status, unknown.json()) == (404, {"detail": "no such run"})
    # That answer, for this run's progress, as the restarted process would give it.
    page.route(
        "**/api/runs/*",
        lambda route: route.fulfill(
            status=404, content_type="application/json", body='{"detail": "no such run"}'
        ),
    )
    page.get_by_test_id("summarize").click()
    run = page.get_by_test_id("run-progress")
    expect(run).to_have_attribute("data-status", "failed", timeout=60_000)
    expect(page.get_by_test_id("run-status")).to_contain_text("this server no longer knows the run")
    expect(page.get_by_test_id("run-status")).to_contain_text("Summarize now again completes it")
    expect(page.get_by_test_id("notice")).to_be_hidden()


def test_a_session_outlives_its_access_token_through_the_refresh_token(
    page: Page, deploy: Any, patients: Patients, recorder: Recorder
) -> None:
    short = deploy(access_token_lifetime_s=2)
    ehr_launch(page, short, patients.approve)
    expect(page.get_by_test_id("patient-banner")).to_be_visible()
    time.sleep(3)  # the session's access token has expired
    with page.expect_response(re.compile(r"/api/patients/[^/]+/summary$")) as reloaded:
        page.reload()
    assert reloaded.value.status == 200
    expect(page.locator("#main")).to_have_attribute("data-loaded", "")
    expect(page.get_by_test_id("notice")).to_be_hidden()
    time.sleep(3)  # and again: the rotated refresh token works too
    page.get_by_test_id("trend-point").first.click()
    expect(page.get_by_test_id("resource-json")).to_contain_text('"resourceType": "Observation"')
    assert_clean_urls(recorder, short, patients.approve)


def test_the_resource_view_serves_the_sessions_patient_only(
    page: Page, deployment: Deployment, patients: Patients
) -> None:
    assert patients.reject != patients.chat
    ehr_launch(page, deployment, patients.reject)
    own = f"{deployment.app_url}/api/patients/{patients.reject}/resources"
    answer = page.request.get(f"{own}/Patient/{patients.reject}")
    assert answer.status == 200
    assert answer.json()["id"] == patients.reject
    # Another patient named in the path: refused before any FHIR call.
    other = f"{deployment.app_url}/api/patients/{patients.chat}/resources/Patient/{patients.chat}"
    assert page.request.get(other).status == 403
    # Another patient's Observation under this patient's path, and a type outside the compartment:
    # answered as missing, without the resource.
    foreign = page.request.get(f"{own}/{patients.a1c_reference}")
    assert foreign.status == 404
    assert patients.a1c_reference.split("/")[1] not in foreign.text()
    assert page.request.get(f"{own}/Provenance/anything").status == 404
    # A report's view leaves its inline attachments (PNG plots, text) out: the attachment route
    # serves them.
    bundle = fhir_get(deployment.fhir_url, "DiagnosticReport", subject=f"Patient/{patients.reject}")
    report = next(e["resource"] for e in bundle["entry"] if e["resource"].get("presentedForm"))
    view = page.request.get(f"{own}/DiagnosticReport/{report['id']}").json()
    assert view["id"] == report["id"]
    assert [form["data"] for form in view["presentedForm"]] == [
        f"({len(form['data'])} base64 characters, not shown)" for form in report["presentedForm"]
    ]
    # No session: 401.
    assert httpx.get(f"{own}/Patient/{patients.reject}", timeout=30).status_code == 401


def test_the_app_works_in_the_ehrs_frame_and_no_other_site_may_frame_it(
    page: Page, deployment: Deployment, patients: Patients, recorder: Recorder, planner_url: str
) -> None:
    page.goto(f"{deployment.ehr_url}/frame?patient={patients.approve}")
    app = page.frame_locator("[data-testid=ehr-frame]")
    expect(app.locator("#main")).to_have_attribute("data-loaded", "", timeout=60_000)
    expect(app.get_by_test_id("patient-banner")).to_be_visible()
    expect(app.get_by_test_id("summary").get_by_test_id("ai-label")).to_be_visible()
    screenshot(page, "app-in-ehr-frame")
    assert_clean_urls(recorder, deployment, patients.approve)
    assert_no_csp_violation(recorder)

    # Another origin (the model server's) framing the app: frame-ancestors refuses it.
    page.goto(planner_url.removesuffix("/v1") + "/health")
    page.evaluate(
        """url => {
            const frame = document.createElement("iframe");
            frame.src = url;
            frame.dataset.testid = "foreign-frame";
            document.body.replaceChildren(frame);
        }""",
        f"{deployment.app_url}/app/",
    )
    for _ in range(100):  # Chromium reports the refusal on the console
        if any("frame-ancestors" in message for message in recorder.console):
            break
        page.wait_for_timeout(100)
    assert any("frame-ancestors" in message for message in recorder.console)
    expect(page.frame_locator("[data-testid=foreign-frame]").locator("#main")).to_have_count(0)
