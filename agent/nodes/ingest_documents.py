"""Lab-report PDFs -> grounded Observations, before the trends are computed.

`read_document` is one fan-out branch per new document (fetch, text layer, model pages: the cost);
`settle_documents` then deduplicates every reading in document order and produces one pending write
per document (nothing is posted there). Once the write node has posted them, `join_transcriptions`
settles each document's outcome and adds the Observations the server holds (or, in a dry run,
those that would be written) to the record, so that the trend engine sees the transcribed values
next to the lab feed's. A write that failed, or whose outcome is unknown, adds nothing.

In a dry run they have no server id yet: each gets its own ``urn:uuid`` as id, which only ever
appears in dry-run output.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.documentreference import DocumentReference
from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.nodes.plan_work import DocumentTask
from agent.state import SummarizeState
from tools.documents.ingest import read_document as read_one
from tools.documents.ingest import settle_readings, with_writes
from tools.record import with_resources

_URN_UUID = "urn:uuid:"


async def read_document(state: DocumentTask, runtime: Runtime[RunContext]) -> SummarizeState:
    ctx = runtime.context
    doc = DocumentReference.model_validate(state["document"])
    reading = await read_one(
        doc, state["patient_id"], ctx.fhir, now=ctx.now, tz=ctx.lab_timezone, model=ctx.model
    )
    return {"readings": [reading]}


def settle_documents(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    ctx = runtime.context
    result = settle_readings(state["record"], state.get("readings") or [], now=ctx.now, tz=ctx.lab_timezone)
    return {"documents": result, "pending": result.pending}


def join_transcriptions(state: SummarizeState) -> SummarizeState:
    documents = state.get("documents")
    if documents is None:
        return {}
    settled = with_writes(documents, state.get("writes", []))
    if not settled.observations:
        return {"documents": settled}
    added: list[dict[str, Any]] = []
    for resource, reference in zip(settled.observations, settled.references, strict=True):
        if "id" not in resource and reference.startswith(_URN_UUID):
            resource = {**resource, "id": reference.removeprefix(_URN_UUID)}
        added.append(resource)
    return {"documents": settled, "record": with_resources(state["record"], added)}
