"""Browser tests: the whole stack on loopback, driven in real headless Chromium.

The stack is the one `chartagent stack up` runs: sekmet-fhir holding a small synthetic cohort
(two patients summarized by the planning graph beforehand, so AI results wait for review), the
EHR stand-in in front of it (SMART authorization server, scope-enforcing FHIR proxy, launcher),
and the ChartAgent service as its own `chartagent serve` process, configured by the stand-in's
settings (agent.testbed.stack.app_server). The chat's planner is a scripted model behind the
OpenAI-compatible test server (tools.medgemma.serve_app).

Each test gets a fresh browser context that records every request and navigation and every
console message, and saves a screenshot to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from browser_stack import NOTE_TEXT, SAVE_NOTE, Deployment, Patients, Recorder
from ehr_fixtures import EhrStandin
from fhir_reads import search, server_with
from live_server import LiveServer

from agent.context import RunContext
from agent.jobs.summarize import summarize_many
from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.stack.app_server import AppServer, AppServerSpec, app_environment
from agent.testbed.stack.ehr_server import EhrServer, ehr_config
from agent.testbed.stack.ports import free_port
from fhir_adapters import FhirClient
from tools.imaging.geometry import Padding
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.serve_app import create_app as model_server_app
from tools.medgemma.tasks import cxr_localization
from tools.medgemma.types import ModelRequest, TextPart
from tools.writeback.ai_labels import ModelIdentity
from tools.writeback.bundle import conditional_create_bundle
from tools.writeback.study_read import ReadStudy, build_study_read

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
A1C = "4548-4"
T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the app in headless Chromium (the stack on loopback)")


def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on a fresh thread (asyncio.run refuses to start inside a running loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


@pytest.fixture(scope="session")
def cohort() -> Cohort:
    return generate_cohort(4, 5)  # a cohort the leak guard knows (tests/leak_guard.py COHORTS)


async def _newest_a1c(base: str, patient: str) -> tuple[str, float] | None:
    found = await search(base, "Observation", patient=patient, code=f"http://loinc.org|{A1C}")
    if not found:
        return None
    newest = max(found, key=lambda o: o["effectiveDateTime"])
    return f"Observation/{newest['id']}", float(newest["valueQuantity"]["value"])


@pytest.fixture(scope="session")
def seeded(fhir_server_factory: Callable[..., str], cohort: Cohort) -> tuple[str, Patients]:
    """sekmet with the cohort; two patients summarized once (their AI results are preliminary)."""
    # On a thread of its own: Playwright's sync API keeps an event loop running on this one.
    base = off_loop(server_with, fhir_server_factory, cohort)
    ids = [p.id for p in cohort.patients]

    async def prepare() -> Patients:
        async with FhirClient(base) as client:
            outcomes = await summarize_many(RunContext(fhir=client), ids[:2])
            await client.transaction(chest_xray_read(ids[0]))
        assert [o.status for o in outcomes] == ["written", "written"]
        # The chat's patient: a summarized one (the page then shows everything), never the one
        # whose results are rejected.
        for patient in [ids[0], *ids[2:]]:
            a1c = await _newest_a1c(base, patient)
            if a1c is not None:
                return Patients(ids[0], ids[1], ids[2], patient, *a1c)
        raise AssertionError("no cohort patient has HbA1c results")

    return base, off_loop(asyncio.run, prepare())


@pytest.fixture(scope="session")
def fhir_url(seeded: tuple[str, Patients]) -> str:
    return seeded[0]


@pytest.fixture(scope="session")
def patients(seeded: tuple[str, Patients]) -> Patients:
    return seeded[1]


def chest_xray_image(height: int = 700, width: int = 600) -> npt.NDArray[np.uint8]:
    """A synthetic frontal chest radiograph: a bright body, two dark lungs, a bright spine."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.full((height, width), 20, dtype=np.uint8)
    image[((x - width / 2) / (width * 0.46)) ** 2 + ((y - height * 0.55) / (height * 0.5)) ** 2 < 1] = 170
    for cx in (0.3, 0.7):
        lung = ((x - width * cx) / (width * 0.16)) ** 2 + ((y - height * 0.5) / (height * 0.3)) ** 2 < 1
        image[lung] = 60
    image[:, int(width * 0.47) : int(width * 0.53)] = np.maximum(
        image[:, int(width * 0.47) : int(width * 0.53)], 200
    )
    return np.stack([image] * 3, axis=-1)


def chest_xray_read(patient_id: str) -> dict[str, Any]:
    """The transaction of a chest X-ray localization read (the real write-back builder, a scripted
    model answer) of a study added for `patient_id`: an AI imaging report with its box overlay."""
    subject = f"Patient/{patient_id}"
    study_id = f"{patient_id}-cxr-1"
    image = chest_xray_image()
    boxes = [
        {"box_2d": [200, 191, 800, 466], "label": "right lung"},
        {"box_2d": [200, 534, 800, 809], "label": "left lung"},
    ]
    result = cxr_localization.parse(
        f"Final Answer: ```json {json.dumps(boxes)} ```", Padding.centred(*image.shape[:2])
    )
    study = ReadStudy(
        imaging_study_id=study_id,
        study_uid="2.25.40510001",
        series_uid="2.25.40510001.1",
        instance_uids=("2.25.40510001.1.1",),
        started="2026-05-01T10:00:00+00:00",
    )
    built = build_study_read(
        subject=subject,
        result=result,
        study=study,
        identity=ModelIdentity(
            name="medgemma-scripted", version="1", prompt_version=cxr_localization.PROMPT_VERSION
        ),
        issued=datetime.now(UTC),
        image=image,
    )
    bundle = conditional_create_bundle(built)
    bundle["entry"].insert(
        0,
        {
            "fullUrl": f"ImagingStudy/{study_id}",
            "resource": {
                "resourceType": "ImagingStudy",
                "id": study_id,
                "status": "available",
                "subject": {"reference": subject},
                "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study.study_uid}"}],
                "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "DX"}],
            },
            "request": {"method": "PUT", "url": f"ImagingStudy/{study_id}"},
        },
    )
    return bundle


def _text_of(request: ModelRequest) -> str:
    return "\n".join(p.text for m in request.messages for p in m.content if isinstance(p, TextPart))


@pytest.fixture(scope="session")
def planner_url(patients: Patients) -> Iterator[str]:
    """A scripted model planning with JSON actions: first the HbA1c trend, then an answer citing
    the newest HbA1c (once the tool's result, which names it, is in the conversation); asked to
    save a note, it proposes NOTE_TEXT."""

    def answer(request: ModelRequest) -> str:
        if SAVE_NOTE in _text_of(request):
            return json.dumps({"action": "propose_note", "text": NOTE_TEXT})
        if patients.a1c_reference not in _text_of(request):
            return json.dumps({"action": "call", "tool": "lab_trend", "input": {"analyte": "HbA1c"}})
        text = f"The latest HbA1c is {patients.a1c_value:g} % [{patients.a1c_reference}]."
        return json.dumps({"action": "answer", "answer": text})

    server = LiveServer(model_server_app(ScriptedBackend([answer], cycle=True)), name="planner").start()
    yield f"{server.base_url}/v1"
    server.stop()


@pytest.fixture(scope="session")
def deploy(
    tmp_path_factory: pytest.TempPathFactory, fhir_url: str, dicomweb_base_url: str, planner_url: str
) -> Iterator[Callable[..., Deployment]]:
    """Start a stand-in and a service configured for it; `access_token_lifetime_s` short makes
    every session's FHIR access need its refresh token within the test."""
    running: list[EhrServer | AppServer] = []

    def start(*, access_token_lifetime_s: int = 3600) -> Deployment:
        root = tmp_path_factory.mktemp("deployment")
        app_port, ehr_port = free_port(), free_port()
        app_url = f"http://127.0.0.1:{app_port}"
        config = ehr_config(
            port=ehr_port,
            state_dir=root / "ehr",
            upstream_fhir_url=fhir_url,
            app_url=app_url,
            access_token_lifetime_s=access_token_lifetime_s,
        )
        ehr = EhrServer(root / "ehr")
        running.append(ehr)
        ehr.start(config)
        env = app_environment(
            config, state_dir=root / "app-state", fhir_url=fhir_url, dicomweb_url=dicomweb_base_url
        )
        env |= {
            "CHARTAGENT_PLANNER_URL": planner_url,
            "CHARTAGENT_PLANNER_MODEL": "scripted-fake",
            "CHARTAGENT_PLANNER_PROTOCOL": "json",
            "CHARTAGENT_MODEL_BACKEND": "none",
        }
        app = AppServer(AppServerSpec(port=app_port, state_dir=root / "app"))
        running.append(app)
        app.start(env)
        return Deployment(
            fhir_url=fhir_url,
            ehr_url=config.base_url,
            app_url=app_url,
            ehr=EhrStandin(config=config, server=ehr),
        )

    yield start
    for server in reversed(running):
        server.stop()


@pytest.fixture(scope="session")
def deployment(deploy: Callable[..., Deployment]) -> Deployment:
    """The stack most tests share (hour-long access tokens)."""
    return deploy()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: playwright's sync API keeps an event loop running in this thread
    # while it is open, and every later test that calls asyncio.run() would fail.
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def page(browser: Browser, recorder: Recorder) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("request", recorder.on_request)
    page.on("framenavigated", recorder.on_navigation)
    page.on("console", recorder.on_console)
    page.on("pageerror", lambda error: recorder.page_errors.append(str(error)))
    page.set_default_timeout(30_000)
    yield page
    context.close()
