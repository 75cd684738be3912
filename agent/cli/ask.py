"""`chartagent ask --patient ID "QUESTION" [--thread T] [--json]`, and `--approve`/`--reject` of a
note the thread proposed."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

from agent.cli.app import app

if TYPE_CHECKING:
    from agent.chat.actions import AskResult


@app.command("ask")
def ask_command(
    question: Annotated[str, typer.Argument(help="The question about the patient.")] = "",
    patient: Annotated[str, typer.Option("--patient", help="The patient's FHIR id.")] = ...,  # type: ignore[assignment]
    thread: Annotated[
        str | None,
        typer.Option("--thread", help="Conversation id: memory across questions (kept in the state dir)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    approve: Annotated[bool, typer.Option("--approve", help="Write the note this thread proposed.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Drop the note this thread proposed.")] = False,
    fhir_url: Annotated[str | None, typer.Option("--fhir-url", help="FHIR base URL.")] = None,
) -> None:
    """Ask a question about one patient; every statement cites the resources it rests on."""
    from agent.cli.options import resolve_fhir_url

    if approve and reject:
        typer.secho("--approve and --reject exclude each other", fg="red", err=True)
        raise typer.Exit(2)
    if (approve or reject) and thread is None:
        typer.secho("--approve/--reject answer a proposal on a thread: pass --thread", fg="red", err=True)
        raise typer.Exit(2)
    decision = True if approve else False if reject else None
    if decision is None and not question.strip():
        typer.secho("Ask a question (or --approve/--reject a proposal on --thread).", fg="red", err=True)
        raise typer.Exit(2)
    url = resolve_fhir_url(fhir_url)
    result = asyncio.run(_ask(url, patient, question, thread, decision))
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2))
        return
    typer.echo(result.answer)
    for flag in result.flags:
        typer.secho(f"flag: {flag}", fg="yellow", err=True)


async def _ask(url: str, patient: str, question: str, thread: str | None, decision: bool | None) -> AskResult:
    from contextlib import AsyncExitStack

    from langgraph.checkpoint.memory import InMemorySaver

    from agent.chat.context import ChatContext
    from agent.chat.planners import choose_planner
    from agent.chat.session import ask
    from agent.checkpoints import open_checkpointer
    from agent.cli.options import resolve_dicomweb_url
    from agent.connections import open_dicomweb_client, open_fhir_client
    from agent.settings import load_settings
    from tools.medgemma.factory import open_backend
    from tools.registry import ToolContext, read_tools

    settings = load_settings()
    async with AsyncExitStack() as stack:
        fhir = await stack.enter_async_context(open_fhir_client(url, settings))
        model = await stack.enter_async_context(open_backend(settings))
        # Pixels are fetched only when a model can read them.
        pacs_url = resolve_dicomweb_url(None) if model is not None else None
        pacs = await stack.enter_async_context(open_dicomweb_client(pacs_url, settings)) if pacs_url else None
        # A thread's memory lives with the runs' checkpoints; a one-off question needs none.
        saver = await stack.enter_async_context(open_checkpointer(settings)) if thread else InMemorySaver()
        tools = ToolContext(
            fhir=fhir, patient_id=patient, dicomweb=pacs, model=model, lab_timezone=settings.lab_zone
        )
        ctx = ChatContext(tools=tools, registry=read_tools(), planner=choose_planner(settings, model))
        return await ask(ctx, question, saver=saver, thread_id=thread, decision=decision)
