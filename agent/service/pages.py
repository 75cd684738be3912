"""The SMART app's pages and the resource view its citations open.

    GET /app/                                        the one-page app (agent/service/web/index.html)
    GET /app/assets/{file}                           its scripts and styles (vanilla ES modules, no build)
    GET /api/patients/{id}/resources/{type}/{rid}    one resource of the patient's compartment, as JSON

The page reaches everything else through the JSON API with the session cookie; it reads the
patient and the CSRF token from `GET /api/session`, so no URL of the app carries either. Every
asset is a file (no inline script or style) because the Content-Security-Policy allows only
'self'.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from agent.service.authz import current_principal
from agent.service.fhir_access import fhir_for
from agent.service.principal import Principal
from fhir_adapters.error_tree import ServiceHttpError

WEB_DIR: Final = Path(str(files("agent.service") / "web"))
# The reference fields that put a resource in a patient's compartment (R4), per resource type;
# a type not listed here is not served (Provenance, Device, Binary: no patient of their own).
_PATIENT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "Observation": ("subject",),
    "DiagnosticReport": ("subject",),
    "DocumentReference": ("subject",),
    "ImagingStudy": ("subject",),
    "Condition": ("subject",),
    "Procedure": ("subject",),
    "Encounter": ("subject",),
    "MedicationRequest": ("subject",),
    "MedicationStatement": ("subject",),
    "Immunization": ("patient",),
    "AllergyIntolerance": ("patient",),
}
_NOT_FOUND: Final = "no such resource in this patient's record"
_FHIR_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def in_compartment(resource: dict[str, Any], patient_id: str) -> bool:
    """Whether `resource` belongs to `patient_id`'s record (pure)."""
    resource_type = resource.get("resourceType")
    if resource_type == "Patient":
        return resource.get("id") == patient_id
    wanted = f"Patient/{patient_id}"
    for field in _PATIENT_FIELDS.get(str(resource_type), ()):
        value = resource.get(field)
        ref = value.get("reference") if isinstance(value, dict) else None
        if isinstance(ref, str) and (ref == wanted or ref.endswith("/" + wanted)):
            return True
    return False


def without_inline_data(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource with each attachment's inline `data` (a whole PDF or PNG, base64) replaced by
    a note of its size: the view shows the resource, the attachment routes serve the files."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: strip(v) for k, v in node.items()}
            if isinstance(node.get("data"), str) and "contentType" in node:
                out["data"] = f"({len(node['data'])} base64 characters, not shown)"
            return out
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    stripped: dict[str, Any] = strip(resource)
    return stripped


async def patient_resource(
    request: Request,
    patient_id: str,
    resource_type: str,
    resource_id: str,
    principal: Annotated[Principal, Depends(current_principal)],
) -> JSONResponse:
    patient_id = principal.require_patient(patient_id)
    known_type = resource_type == "Patient" or resource_type in _PATIENT_FIELDS
    if not known_type or not _FHIR_ID.fullmatch(resource_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=_NOT_FOUND)
    principal.require(resource_type, "r")
    async with fhir_for(request, principal) as fhir:
        try:
            resource = await fhir.read(resource_type, resource_id)
        except ServiceHttpError as exc:
            # The EHR's 403 is its compartment check (the scope was checked above): answered
            # like a missing resource, as below.
            if exc.status in (status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND, status.HTTP_410_GONE):
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=_NOT_FOUND) from None
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail="the FHIR server failed") from None
    # Another patient's resource answers like a missing one: its existence is not revealed.
    if resource.get("resourceType") != resource_type or not in_compartment(resource, patient_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=_NOT_FOUND)
    return JSONResponse(without_inline_data(resource), headers={"Cache-Control": "no-store"})


async def app_page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-store"})


async def app_root() -> RedirectResponse:
    return RedirectResponse("/app/", status_code=status.HTTP_308_PERMANENT_REDIRECT)


def install(app: FastAPI) -> None:
    """Add the app's page, its assets and the resource view to `app`."""
    app.add_api_route("/app", app_root, methods=["GET"], include_in_schema=False)
    app.add_api_route("/app/", app_page, methods=["GET"], include_in_schema=False)
    app.mount("/app/assets", StaticFiles(directory=WEB_DIR), name="app-assets")
    app.add_api_route(
        "/api/patients/{patient_id}/resources/{resource_type}/{resource_id}",
        patient_resource,
        methods=["GET"],
        summary="One resource of the session's patient (what a citation opens)",
        tags=["app"],
    )
