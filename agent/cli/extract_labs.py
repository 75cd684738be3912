"""`chartagent extract-labs FILE.pdf [--json] [--max-pages N] [--model [--cross-check]]`: lab results.

Prints one record per result read from the text layer (value, unit, flag, reference range,
effective date, and the page and bbox it is printed at); warnings go to stderr.

With `--model`, pages without a text layer are rendered and read by the configured MedGemma
(`CHARTAGENT_MODEL_BACKEND`); with `--cross-check` every page is, and each model value is compared
with the text layer. Model values follow the text-layer records with `"source": "model"`, a
`status` (`unverified`: nothing in the document locates it; `agrees`; `disagrees` / `not in text`:
flagged, the text layer wins) and `bbox: null`. They are for review: `summarize` never writes them.

Exit codes: 0 every page read from the text layer, 1 partial (pages without a text layer, rows
not read, or model values flagged), 2 unreadable input or `--model` without a configured model.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from agent.cli import analyze
from agent.cli.app import app
from tools.labs.pdf import DEFAULT_MAX_PAGES, LabPdfError, LabPdfExtraction, extract_labs
from tools.labs.pdf.model_pages import ModelAssistedExtraction, ModelReadLab, extract_with_model
from tools.medgemma.errors import ModelError

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_UNREADABLE = 2


def render_table(extraction: LabPdfExtraction) -> str:
    """A plain-text table, one result a line."""
    lines = []
    for r in extraction.results:
        value = r.value_text  # as printed, comparator included
        lines.append(
            f"p{r.page:<3} {r.name[:32]:<32} {value:>10} {r.unit or '':<16} {r.flag or '':<3} "
            f"{r.reference_text or '':<14} {r.loinc or '-':<8} {r.effective or ''}"
        )
    return "\n".join(lines)


def exit_code(extraction: LabPdfExtraction, assisted: ModelAssistedExtraction | None = None) -> int:
    flagged = assisted is not None and bool(assisted.flagged)
    return EXIT_PARTIAL if extraction.partial or flagged else EXIT_OK


def model_record(read: ModelReadLab) -> dict[str, Any]:
    """A model value in the CLI's record shape; never grounded, so ``bbox`` is null."""
    return {
        "name": read.name,
        "loinc": read.loinc,
        "value": read.value,
        "unit": read.unit,
        "comparator": None,
        "reference_low": None,
        "reference_high": None,
        "reference_text": read.reference_range,
        "flag": read.flag.value if read.flag else None,
        "effective": None,
        "page": read.page,
        "bbox": None,
        "source": "model",
        "status": read.status,
        "detail": read.detail,
    }


async def _with_model(file: Path, max_pages: int, cross_check: bool) -> ModelAssistedExtraction:
    backend = analyze.backend_factory()
    if backend is None:
        typer.echo(f"error: --model: {analyze.NO_MODEL}", err=True)
        raise typer.Exit(EXIT_UNREADABLE)
    try:
        return await extract_with_model(file, backend, cross_check=cross_check, max_pages=max_pages)
    finally:
        await backend.aclose()


@app.command("extract-labs")
def extract_labs_command(
    file: Annotated[Path, typer.Argument(help="the lab-report PDF")],
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list of results")] = False,
    max_pages: Annotated[
        int, typer.Option("--max-pages", min=1, help="refuse longer PDFs")
    ] = DEFAULT_MAX_PAGES,
    model: Annotated[
        bool, typer.Option("--model", help="read pages without a text layer with the configured MedGemma")
    ] = False,
    cross_check: Annotated[
        bool, typer.Option("--cross-check", help="with --model: every page, compared with the text layer")
    ] = False,
) -> None:
    """Extract lab results (with page and bbox) from a PDF's text layer; scanned pages are listed."""
    if cross_check and not model:
        typer.echo("error: --cross-check needs --model", err=True)
        raise typer.Exit(EXIT_UNREADABLE)
    assisted: ModelAssistedExtraction | None = None
    try:
        if model:
            assisted = asyncio.run(_with_model(file, max_pages, cross_check))
            extraction = assisted.text
        else:
            extraction = extract_labs(file, max_pages=max_pages)
    except LabPdfError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_UNREADABLE) from exc
    except ModelError as exc:
        typer.echo(f"error: the model call failed: {exc}", err=True)
        raise typer.Exit(EXIT_PARTIAL) from exc
    model_reads = assisted.model_results if assisted else ()
    for warning in assisted.warnings if assisted else ():
        typer.echo(f"warning: {warning}", err=True)
    for warning in extraction.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if extraction.needs_model:
        pages = ", ".join(str(p) for p in extraction.needs_model)
        read = " (read by the model: values unverified)" if model else ""
        typer.echo(f"warning: pages needing the model (no text layer): {pages}{read}", err=True)
    if as_json:
        records = [r.to_json() for r in extraction.results] + [model_record(r) for r in model_reads]
        json.dump(records, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        typer.echo(render_table(extraction))
        for r in model_reads:
            typer.echo(f"p{r.page:<3} {r.name[:32]:<32} {r.value!s:>10} {r.unit or '':<16} model: {r.status}")
    raise typer.Exit(exit_code(extraction, assisted))
