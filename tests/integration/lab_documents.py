"""A patient's lab-report DocumentReferences on the real FHIR server, for the ingest tests."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from fhir_adapters import FhirClient

LOINC = "http://loinc.org"


def lab_doc(
    doc_id: str, pid: str, *, pdf: bytes | None = None, url: str | None = None, day: str = "2024-03-05"
) -> dict[str, Any]:
    """A current lab-report DocumentReference (LOINC 11502-2) with the PDF inline or by URL."""
    attachment: dict[str, Any] = {"contentType": "application/pdf", "title": "Lab report"}
    if pdf is not None:
        attachment |= {
            "data": base64.b64encode(pdf).decode(),
            "size": len(pdf),
            "hash": base64.b64encode(hashlib.sha1(pdf).digest()).decode(),
        }
    if url is not None:
        attachment["url"] = url
    return {
        "resourceType": "DocumentReference",
        "id": doc_id,
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": "11502-2", "display": "Laboratory report"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "date": f"{day}T09:00:00Z",
        "content": [{"attachment": attachment}],
    }


async def seed(client: FhirClient, pid: str, *resources: dict[str, Any]) -> None:
    """The patient and `resources`, PUT in one transaction."""
    everything = [{"resourceType": "Patient", "id": pid}, *resources]
    await client.transaction(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in everything
            ],
        }
    )
