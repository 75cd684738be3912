"""Liveness, readiness and the offline API docs.

    GET /healthz       200 {"status": "ok"}: the process answers (no I/O)
    GET /readyz        200 / 503 {"status": "ready"|"not ready", "checks": {name: {"ok", "detail"}}}
    GET /docs          the API's operations, listed from /openapi.json by a page of our own
    GET /openapi.json  the OpenAPI document (FastAPI's)

Readiness checks FHIR (`metadata`), DICOMweb (a QIDO of one study), the model server (its
`/models`; no model configured counts as ready) and the checkpointer (one read), at once, each
with its own short timeout and no retries: a load balancer polls this, it must answer quickly.
Details name the check's outcome, never a URL (a URL may carry credentials) or a payload.

Why our own /docs: FastAPI's page loads Swagger UI from a CDN, and the service works offline
under a strict Content-Security-Policy (no CDN, no inline script). The page here is plain HTML
rendered on the server from the same OpenAPI document; `/openapi.json` stays the full spec for
any client or a Swagger UI of one's own.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable
from typing import Any, Final

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from agent.checkpoints import open_checkpointer
from agent.connections import auth_from_settings, open_dicomweb_client
from agent.service.runtime import ServiceRuntime, runtime_of
from fhir_adapters import FhirClient
from fhir_adapters.error_tree import ChartAgentError
from fhir_adapters.retry import RetryPolicy

# Each check's own limit: one slow dependency reports itself instead of stalling the others.
CHECK_TIMEOUT_S: Final = 3.0
_NO_RETRY: Final = RetryPolicy(max_attempts=1)


class CheckResult(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, CheckResult]


async def _fhir_ready(runtime: ServiceRuntime) -> str:
    settings = runtime.settings
    async with FhirClient(
        runtime.fhir_url,
        auth=auth_from_settings(settings),
        flavour=settings.fhir_flavour,
        retry=_NO_RETRY,
        timeout=CHECK_TIMEOUT_S,
    ) as client:
        await client.capabilities()
    return "metadata answered"


async def _dicomweb_ready(runtime: ServiceRuntime) -> str:
    if runtime.dicomweb_url is None:
        return "not configured"
    async with open_dicomweb_client(runtime.dicomweb_url, runtime.settings) as client:
        client.retry = _NO_RETRY
        await client.search_studies(limit=1)
    return "QIDO answered"


async def _model_ready(runtime: ServiceRuntime) -> str:
    settings = runtime.settings
    if settings.model_backend == "none":
        return "not configured (deterministic results only)"
    if settings.model_backend == "transformers":
        # Loaded in-process by the jobs that use it; nothing to reach.
        return "in-process (transformers)"
    if not settings.model_url:
        raise _NotReady("openai backend without CHARTAGENT_MODEL_URL")
    headers = {}
    if settings.model_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.model_api_key.get_secret_value()}"
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S) as http:
        resp = await http.get(f"{settings.model_url.rstrip('/')}/models", headers=headers)
    if resp.status_code != 200:
        raise _NotReady(f"/models answered {resp.status_code}")
    return "/models answered"


async def _checkpointer_ready(runtime: ServiceRuntime) -> str:
    async with open_checkpointer(runtime.settings) as saver:
        await saver.aget_tuple({"configurable": {"thread_id": "chartagent-readyz"}})
    return "read answered"


class _NotReady(ChartAgentError):
    """A check's own PHI-free, URL-free reason."""


Check = Callable[[ServiceRuntime], Awaitable[str]]
CHECKS: Final[dict[str, Check]] = {
    "fhir": _fhir_ready,
    "dicomweb": _dicomweb_ready,
    "model": _model_ready,
    "checkpointer": _checkpointer_ready,
}


async def _run_check(check: Check, runtime: ServiceRuntime) -> CheckResult:
    try:
        detail = await asyncio.wait_for(check(runtime), CHECK_TIMEOUT_S)
    except TimeoutError:
        return CheckResult(ok=False, detail=f"no answer within {CHECK_TIMEOUT_S:g} s")
    except _NotReady as exc:
        return CheckResult(ok=False, detail=str(exc))
    except Exception as exc:  # any failure means not ready
        # The exception's text may hold a URL or a server's payload: its class name says enough.
        return CheckResult(ok=False, detail=f"failed ({type(exc).__name__})")
    return CheckResult(ok=True, detail=detail)


async def readiness(runtime: ServiceRuntime) -> Readiness:
    results = await asyncio.gather(*(_run_check(check, runtime) for check in CHECKS.values()))
    checks = dict(zip(CHECKS, results, strict=True))
    return Readiness(status="ready" if all(c.ok for c in results) else "not ready", checks=checks)


def docs_page(spec: dict[str, Any]) -> str:
    """The operations of `spec`, one row each, as a self-contained page (no script, no CDN)."""
    rows = []
    for path, operations in sorted(spec.get("paths", {}).items()):
        for method, op in operations.items():
            summary = op.get("summary") or op.get("operationId") or ""
            rows.append(
                f"<tr><td><code>{html.escape(method.upper())}</code></td>"
                f"<td><code>{html.escape(path)}</code></td><td>{html.escape(summary)}</td></tr>"
            )
    title = html.escape(str(spec.get("info", {}).get("title", "API")))
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} API</title></head>'
        f"<body><h1>{title} API</h1>"
        '<p>The full OpenAPI document: <a href="openapi.json">openapi.json</a>.</p>'
        f"<table><thead><tr><th>method</th><th>path</th><th>summary</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></body></html>"
    )


def install(app: FastAPI) -> None:
    """Add /healthz, /readyz and the offline /docs (FastAPI's CDN-backed pages are switched off)."""
    # FastAPI added its pages when the app was built: take them out (ours replaces /docs).
    cdn_pages = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url} - {None}
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in cdn_pages]
    app.docs_url = app.redoc_url = app.swagger_ui_oauth2_redirect_url = None

    @app.get("/healthz", tags=["health"], summary="The process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="FHIR, DICOMweb, the model and the checkpointer are reachable",
        response_model=Readiness,
        responses={503: {"model": Readiness}},
    )
    async def readyz(request: Request) -> JSONResponse:
        result = await readiness(runtime_of(request))
        code = 200 if result.status == "ready" else 503
        return JSONResponse(result.model_dump(mode="json"), status_code=code)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))
