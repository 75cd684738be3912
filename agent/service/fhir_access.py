"""The FHIR client a request works with: the caller's own grant, never more.

A session or a patient token reaches FHIR at the launch's `iss` with its own tokens, so the EHR
enforces the same scopes again; a system caller (service key) uses the service's FHIR settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request

from agent.connections import open_fhir_client
from agent.service.principal import Principal
from agent.service.runtime import runtime_of
from fhir_adapters import FhirClient


def fhir_base_of(request: Request, principal: Principal) -> str:
    """The FHIR server `principal`'s patient ids belong to: its launch's `iss`, else the service's."""
    return (principal.fhir_base_url or runtime_of(request).fhir_url).rstrip("/")


@asynccontextmanager
async def fhir_for(request: Request, principal: Principal) -> AsyncIterator[FhirClient]:
    runtime = runtime_of(request)
    settings = runtime.settings
    if principal.fhir_base_url is not None:
        client = FhirClient(
            principal.fhir_base_url,
            auth=principal.fhir_auth,
            flavour=settings.fhir_flavour,
            max_concurrency=settings.fhir_max_concurrency,
            timeout=settings.fhir_timeout_s,
        )
    else:
        client = open_fhir_client(runtime.fhir_url, settings)
    async with client:
        yield client
