"""The service's FastAPI application: one process serves the SMART app, its API, the AG-UI chat
endpoint, MCP and CDS Hooks. Each feature module installs its own routes (`install(app)`).
"""

from __future__ import annotations

from fastapi import FastAPI

from agent.collector import service_collection
from agent.metrics import RequestMetrics
from agent.service import (
    agui,
    cds_hooks,
    health,
    mcp_server,
    pages,
    patient_api,
    proposal_api,
    smart_launch,
)
from agent.service.lifespans import add_lifespan
from agent.service.runtime import ServiceRuntime
from agent.settings import Settings


def create_app(
    settings: Settings, *, public_url: str, fhir_url: str, dicomweb_url: str | None = None
) -> FastAPI:
    app = FastAPI(
        title="ChartAgent",
        summary="FHIR-native clinical data agent: SMART app, chat (AG-UI), MCP and CDS Hooks.",
        version="0.1.0",
    )
    app.state.runtime = ServiceRuntime(
        settings=settings,
        public_url=public_url.rstrip("/"),
        fhir_url=fhir_url.rstrip("/"),
        dicomweb_url=dicomweb_url.rstrip("/") if dicomweb_url else None,
    )
    for feature in (health, smart_launch, patient_api, proposal_api, agui, mcp_server, cds_hooks, pages):
        feature.install(app)
    add_lifespan(app, service_collection)  # last: the features' start-up heap is frozen with it
    # Outermost: every answer counted, those of the other middleware (CSRF, sessions) included.
    app.add_middleware(RequestMetrics, routes=app.router.routes)
    return app
