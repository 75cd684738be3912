"""The label that tells a transcription of source data from ChartAgent's computed output.

Both carry ``meta.security`` AIAST (a machine wrote them). A value transcribed from a document
(a lab-report PDF) additionally carries ``meta.tag`` ``DOCUMENT_EXTRACTION_TAG``: it is the
lab's result, read by a machine, and may feed trends; a trend or summary is not, and may not
(``tools.writeback.is_ai_asserted``). Kept apart from the builders so that readers of the
label (trend computation) do not import the PDF stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["DOCUMENT_EXTRACTION_TAG", "is_document_extraction"]

DOCUMENT_EXTRACTION_TAG: Final[dict[str, str]] = {
    "system": "urn:chartagent:ai-output-kind",
    "code": "document-extraction",
    "display": "Transcribed from a document",
}


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def is_document_extraction(resource: Any) -> bool:
    """True for a resource tagged as transcribed from a document (a parsed resource or its JSON)."""
    meta = _get(resource, "meta")
    tags = (_get(meta, "tag") if meta is not None else None) or []
    return any(
        _get(tag, "system") == DOCUMENT_EXTRACTION_TAG["system"]
        and _get(tag, "code") == DOCUMENT_EXTRACTION_TAG["code"]
        for tag in tags
    )
