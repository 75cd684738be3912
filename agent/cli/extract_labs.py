"""`chartagent extract-labs FILE.pdf [--json] [--max-pages N]`: lab results from a report's text layer.

Prints one record per result (value, unit, flag, reference range, effective date, and the page
and bbox it is printed at); warnings go to stderr. Exit codes: 0 every page read, 1 partial
(pages without a text layer need the model, or rows were not read), 2 unreadable input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.app import app
from tools.labs.pdf import DEFAULT_MAX_PAGES, LabPdfError, LabPdfExtraction, extract_labs

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


def exit_code(extraction: LabPdfExtraction) -> int:
    return EXIT_PARTIAL if extraction.partial else EXIT_OK


@app.command("extract-labs")
def extract_labs_command(
    file: Annotated[Path, typer.Argument(help="the lab-report PDF")],
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list of results")] = False,
    max_pages: Annotated[
        int, typer.Option("--max-pages", min=1, help="refuse longer PDFs")
    ] = DEFAULT_MAX_PAGES,
) -> None:
    """Extract lab results (with page and bbox) from a PDF's text layer; scanned pages are listed."""
    try:
        extraction = extract_labs(file, max_pages=max_pages)
    except LabPdfError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_UNREADABLE) from exc
    for warning in extraction.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if extraction.needs_model:
        pages = ", ".join(str(p) for p in extraction.needs_model)
        typer.echo(f"warning: pages needing the model (no text layer): {pages}", err=True)
    if as_json:
        json.dump([r.to_json() for r in extraction.results], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        typer.echo(render_table(extraction))
    raise typer.Exit(exit_code(extraction))
