"""A note proposed in the chat, or by an MCP client, and confirmed by a person: an AI-labelled
DocumentReference (pure).

The note's text came from a model (or from retrieval); the person who confirmed it is not
recorded here (the CLI has no user identity; the SMART app will add the practitioner). Its
attachment starts with a line that says where it came from (`NoteOrigin`). It cites
what it rests on: the references the answer cited, as Provenance sources. Conditional create on a
business identifier of (patient, text, sources): confirming the same note twice writes it once.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Literal

from fhir.resources.R4B.documentreference import DocumentReference

from fhir_adapters.confirmed import ConfirmedTransaction
from tools.writeback.ai_labels import ModelIdentity, ai_meta, build_model_device
from tools.writeback.builders import build_provenance, check_subject, check_time
from tools.writeback.bundle import conditional_create_bundle
from tools.writeback.identifiers import Built, InputRef, business_identifier

__all__ = ["NOTE_TYPE", "NoteOrigin", "build_note_transaction", "note_reference"]

# LOINC 51855-5 "Patient Note".
NOTE_TYPE: Final = {"system": "http://loinc.org", "code": "51855-5", "display": "Patient Note"}
# "chat": the app's or the CLI's chat; "mcp": an MCP client's `propose_note`, written from the app.
NoteOrigin = Literal["chat", "mcp"]
# Per origin: the attachment's first line, the document's description and the attachment's title.
_WORDING: Final[dict[NoteOrigin, tuple[str, str, str]]] = {
    "chat": (
        "AI-generated note from a ChartAgent chat, confirmed for saving; verify before clinical use.",
        "AI-generated chat note",
        "ChartAgent chat note",
    ),
    "mcp": (
        "AI-generated note proposed by a tool connected to ChartAgent (MCP), confirmed for saving; "
        "verify before clinical use.",
        "AI-generated note proposed over MCP",
        "ChartAgent note proposed over MCP",
    ),
}


def build_note_transaction(
    *,
    subject: str,
    text: str,
    sources: Sequence[str],
    identity: ModelIdentity,
    created: datetime,
    origin: NoteOrigin = "chat",
) -> tuple[dict[str, Any], str]:
    """The transaction Bundle, and the business identifier token of the note."""
    check_subject(subject)
    check_time("created", created)
    header, description, title = _WORDING[origin]
    body = f"{header}\n\n{text.strip()}\n".encode()
    sources = sorted(set(sources)) or [subject]
    ident = business_identifier(
        engine=identity.key(),
        task="chat-note",
        inputs=[InputRef(reference=subject), *(InputRef(reference=s) for s in sources)],
        parameters={"text": text.strip()},
    )
    doc = DocumentReference.model_validate(
        {
            "resourceType": "DocumentReference",
            "meta": ai_meta(),
            "identifier": [ident.as_fhir()],
            "status": "current",
            "docStatus": "preliminary",
            "type": {"coding": [dict(NOTE_TYPE)]},
            "subject": {"reference": subject},
            "date": created.isoformat(),
            "description": description,
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain; charset=utf-8",
                        "data": base64.b64encode(body).decode("ascii"),
                        "title": title,
                    }
                }
            ],
        }
    )
    note = Built(resource=doc, resource_type="DocumentReference", identifier=ident)
    device = build_model_device(identity)
    provenance = build_provenance(
        targets=[note], device=device, sources=sources, identity=identity, recorded=created
    )
    return conditional_create_bundle([note, device, provenance]), ident.token


def note_reference(written: ConfirmedTransaction, token: str) -> str:
    """What a posted note transaction stored the note as (its first entry, the DocumentReference);
    when the answer named none (a read-back), the search that finds it by its identifier."""
    first = written.entries[0].reference if written.entries else None
    return first or f"DocumentReference?identifier={token}"
