"""The launcher: `GET {ehr}/launch?patient=ID[&user=Practitioner/x]` starts an EHR launch of the
app (302 to `{app}/app/launch?iss={ehr}/fhir&launch=<id>`), as SMART Health IT's launcher does;
`GET {ehr}/frame?patient=ID` runs the same launch inside an iframe of an EHR page; `GET {ehr}/`
lists the patients with both links each; `GET /healthz`."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from agent.testbed.ehr.compartment import parse_reference
from agent.testbed.ehr.grants import Launch
from agent.testbed.ehr.pages import error_page, frame_page, launcher_page
from agent.testbed.ehr.patients import ensure_demo_practitioner, patient_list
from agent.testbed.ehr.state import ehr_of

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/launch")
async def launch(request: Request, patient: str = Query(), user: str | None = Query(None)) -> Response:
    ehr = ehr_of(request)
    if user is not None and (parse_reference(user) or ("", ""))[0] != "Practitioner":
        return error_page("user must be a Practitioner reference.")
    check = await ehr.upstream.get(f"{ehr.config.upstream_fhir_url}/Patient/{patient}")
    if check.status_code != 200:
        return error_page("No such patient on the FHIR server.")
    fhir_user = user or await ensure_demo_practitioner(ehr)
    launch_id = ehr.grants.launches.issue(Launch(patient_id=patient, fhir_user=fhir_user))
    query = urlencode({"iss": ehr.config.fhir_url, "launch": launch_id})
    return RedirectResponse(f"{ehr.config.app_url.rstrip('/')}/app/launch?{query}", status_code=302)


@router.get("/")
async def index(request: Request) -> Response:
    return launcher_page(await patient_list(ehr_of(request)))


@router.get("/frame")
async def frame(request: Request, patient: str = Query()) -> Response:
    app = urlsplit(ehr_of(request).config.app_url)
    return frame_page(patient, f"{app.scheme}://{app.netloc}")
