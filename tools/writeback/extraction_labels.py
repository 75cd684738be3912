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

__all__ = ["DOCUMENT_EXTRACTION_TAG", "OCR_ENGINE_URL", "OCR_TAG", "is_document_extraction", "is_ocr_reading"]

DOCUMENT_EXTRACTION_TAG: Final[dict[str, str]] = {
    "system": "urn:chartagent:ai-output-kind",
    "code": "document-extraction",
    "display": "Transcribed from a document",
}
# A transcription read by OCR from a scanned page (no text layer) carries this tag as well: how the
# value was read, beside what it is. The OCR engine and its version are named in the Observation's
# source location and in its Provenance (an extension with this URL).
OCR_TAG: Final[dict[str, str]] = {
    "system": "urn:chartagent:extraction-method",
    "code": "ocr",
    "display": "Read by OCR from a scanned page",
}
OCR_ENGINE_URL: Final = "urn:chartagent:ocr-engine"


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _tagged(resource: Any, label: dict[str, str]) -> bool:
    meta = _get(resource, "meta")
    tags = (_get(meta, "tag") if meta is not None else None) or []
    return any(_get(tag, "system") == label["system"] and _get(tag, "code") == label["code"] for tag in tags)


def is_document_extraction(resource: Any) -> bool:
    """True for a resource tagged as transcribed from a document (a parsed resource or its JSON)."""
    return _tagged(resource, DOCUMENT_EXTRACTION_TAG)


def is_ocr_reading(resource: Any) -> bool:
    """True for a transcription read by OCR from a scanned page (a parsed resource or its JSON)."""
    return _tagged(resource, OCR_TAG)
