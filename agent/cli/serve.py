"""`chartagent serve [--host 127.0.0.1] [--port 8100] [--public-url URL]`: the service (SMART app,
its API, chat, MCP, CDS Hooks) in one uvicorn process.

Everything heavy (FastAPI, uvicorn, the service's modules) is imported inside the command: the
CLI's start time is benchmarked and `chartagent --help` needs none of it.
"""

from __future__ import annotations

import typer

from agent.cli.app import app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8100


@app.command("serve")
def serve(
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Interface to listen on."),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="Port to listen on."),
    public_url: str | None = typer.Option(
        None,
        "--public-url",
        help="The service's URL as browsers and the EHR reach it (default: http://HOST:PORT).",
    ),
    fhir_url: str | None = typer.Option(
        None, "--fhir-url", help="FHIR base URL (default: CHARTAGENT_FHIR_URL, else the embedded stack)."
    ),
    dicomweb_url: str | None = typer.Option(
        None,
        "--dicomweb-url",
        help="DICOMweb base URL (default: CHARTAGENT_DICOMWEB_URL, else the embedded stack).",
    ),
) -> None:
    """Serve the SMART app, its API, the chat endpoint, MCP and CDS Hooks over HTTP."""
    import logging

    import uvicorn

    from agent.cli.options import resolve_dicomweb_url, resolve_fhir_url
    from agent.metrics import MetricsPortUnavailable, serve_metrics
    from agent.service.app import create_app
    from agent.settings import load_settings

    fhir = resolve_fhir_url(fhir_url)
    pacs = resolve_dicomweb_url(dicomweb_url)
    url = (public_url or f"http://{host}:{port}").rstrip("/")
    settings = load_settings()
    service = create_app(settings, public_url=url, fhir_url=fhir, dicomweb_url=pacs)
    try:
        metrics = serve_metrics(settings)
    except MetricsPortUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"ChartAgent app: {url}/app/", err=False)
    if metrics is not None:
        typer.echo(f"Metrics: http://{settings.metrics_address}:{metrics}/metrics", err=False)
    # uvicorn's access log writes each request line, query strings included: a launch's `code`
    # and `state` would land in the log. Off; the service logs what it needs without them.
    # httpx logs every request's URL at INFO: FHIR search URLs carry patient ids.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    uvicorn.run(service, host=host, port=port, access_log=False, log_level="info")
