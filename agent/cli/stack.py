"""`chartagent stack up|down|status [--json]`."""

from __future__ import annotations

import json

import typer

from agent.cli.app import app
from agent.cli.options import state_dir_option
from agent.testbed import stack as embedded

stack_app = typer.Typer(help="Start, stop and inspect the embedded servers (FHIR and Orthanc on loopback).")
app.add_typer(stack_app, name="stack")


def _describe(st: embedded.StackStatus) -> None:
    services = (
        ("FHIR     ", st.fhir),
        ("DICOMweb ", st.dicomweb),
        ("EHR      ", st.ehr),
        ("App      ", st.app),
    )
    for label, svc in services:
        state = "healthy" if svc.healthy else ("running, not answering" if svc.running else "down")
        pid = f" (pid {svc.pid})" if svc.pid is not None and svc.running else ""
        typer.echo(f"{label}{svc.url or '-'}  {state}{pid}")


@stack_app.command("up")
def up(
    fhir_port: int | None = typer.Option(None, help="FHIR port (default 8090, or a free one)."),
    orthanc_port: int | None = typer.Option(None, help="Orthanc HTTP port (default 8042, or a free one)."),
    ehr_port: int | None = typer.Option(None, help="EHR stand-in port (default 8095, or a free one)."),
    app_port: int | None = typer.Option(None, help="ChartAgent service port (default 8100, or a free one)."),
    as_json: bool = typer.Option(False, "--json", help="Print service URLs as JSON."),
) -> None:
    """Start the embedded stack (no-op for services already healthy; unhealthy ones are restarted)."""
    try:
        st = embedded.up(
            state_dir_option(),
            fhir_port=fhir_port,
            orthanc_port=orthanc_port,
            ehr_port=ehr_port,
            app_port=app_port,
        )
    except embedded.StackError as exc:
        typer.secho(f"stack up failed: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(st.urls()))
    else:
        _describe(st)


@stack_app.command("down")
def down() -> None:
    """Stop the embedded stack."""
    embedded.down(state_dir_option())
    typer.echo("stack stopped")


@stack_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print service URLs as JSON.")) -> None:
    """Show what runs; exit code 1 when any server of the stack is not healthy."""
    st = embedded.status(state_dir_option())
    if as_json:
        typer.echo(json.dumps(st.urls()))
    else:
        _describe(st)
    if not st.healthy:
        raise typer.Exit(1)
