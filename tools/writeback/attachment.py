"""FHIR R4 Attachments (pure): data, size and the SHA-1 hash FHIR defines, in one shape everywhere."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any

from tools.writeback.identifiers import fhir_datetime

__all__ = ["attachment", "attachment_hash"]


def attachment_hash(data: bytes) -> str:
    """R4 ``Attachment.hash``: the base64 of the SHA-1 of the data."""
    return base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode("ascii")


def attachment(content_type: str, data: bytes, title: str, created: datetime) -> dict[str, Any]:
    """An inline Attachment; text is labelled English (everything ChartAgent writes is)."""
    # Keys in R4B's element order: the JSON is byte for byte what validating it would dump.
    out: dict[str, Any] = {"contentType": content_type}
    if content_type.startswith("text/"):
        out["language"] = "en"
    return out | {
        "data": base64.b64encode(data).decode("ascii"),
        "size": len(data),
        "hash": attachment_hash(data),
        "title": title,
        "creation": fhir_datetime(created),
    }
