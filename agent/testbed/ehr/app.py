"""The stand-in's FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from agent.testbed.ehr import authorize, discovery, launcher, proxy, token_endpoint
from agent.testbed.ehr.config import EhrConfig
from agent.testbed.ehr.state import EhrState


def create_app(config: EhrConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """`transport`: the FHIR server's, for unit tests (httpx.MockTransport); default: the network."""
    state = EhrState.create(config, transport=transport)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await state.upstream.aclose()

    app = FastAPI(title="ChartAgent EHR stand-in", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.ehr = state
    # discovery first: its /fhir/.well-known route must win over the proxy's catch-all.
    for module in (discovery, authorize, token_endpoint, launcher, proxy):
        app.include_router(module.router)
    return app
