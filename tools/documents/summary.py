"""What the lab-report PDFs contributed, as lines for the longitudinal report (pure).

The lines describe the documents, not what this run happened to write: a rerun that finds
everything already written says the same, so the report's text (and with it its identifier)
stays the same and the rerun writes nothing. Messages carry references and counts only.
"""

from __future__ import annotations

from typing import Final

from tools.documents.ingest import DocumentIngest, DocumentOutcome
from tools.text_safety import safe_text

__all__ = ["document_lines", "document_problem"]

_PROBLEM_LIMIT: Final = 400


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def document_problem(doc: DocumentOutcome) -> str:
    """``DocumentReference/<id>: <problem>``, the reference named once, on one line: a problem
    may quote the document (a name, a parser's message), so it passes ``safe_text``."""
    error = doc.error or "unknown problem"
    line = error if error.startswith(f"{doc.document}:") else f"{doc.document}: {error}"
    return safe_text(line, limit=_PROBLEM_LIMIT)


def _page_lines(doc: DocumentOutcome) -> list[str]:
    if not doc.pages_needing_model:
        return []
    pages = ", ".join(str(p) for p in doc.pages_needing_model)
    where = f"{doc.document} page{'s' if len(doc.pages_needing_model) > 1 else ''} {pages}"
    if doc.model_values:
        return [
            f"{where}: no text layer; {_plural(len(doc.model_values), 'value')} read by the model "
            "await review (not written: nothing in the document locates them)."
        ]
    return [f"{where}: no text layer; not read (no model configured, or the model read nothing)."]


def document_lines(ingest: DocumentIngest | None) -> list[str]:
    """One summary line, then one line per document problem; empty when there was no lab report."""
    if ingest is None:
        return []
    docs = [d for d in ingest.documents if d.status in ("written", "nothing-new", "failed", "unknown")]
    if not docs:
        return []
    read = [d for d in docs if d.status in ("written", "nothing-new")]
    transcribed = sum(d.written + d.already_written + d.confirmed for d in read)
    duplicates = sum(d.duplicates for d in read)
    uncoded = sum(d.unknown_code for d in read)
    summary = (
        f"Lab-report PDFs: {_plural(len(read), 'document')} read; {_plural(transcribed, 'result')} "
        "transcribed with the page and position they are printed at"
    )
    if duplicates:
        summary += f"; {duplicates} already in the record (not written twice)"
    if uncoded:
        summary += f"; {uncoded} without a known LOINC code (not written)"
    lines = [summary + "."]
    for doc in docs:
        if doc.status == "unknown":
            lines.append(f"Write outcome unknown: {document_problem(doc)}")
        elif doc.status == "failed":
            lines.append(f"{'Not written' if doc.stage == 'write' else 'Not read'}: {document_problem(doc)}")
        lines += _page_lines(doc)
    return lines
