"""Lab-report PDFs in the record -> grounded Observations, before the trends are computed.

Two nodes around the write node: `ingest_documents` reads the PDFs and produces one pending write
per document (nothing is posted there); once the write node has posted them, `join_transcriptions`
settles each document's outcome and adds the Observations the server holds (or, in a dry run,
those that would be written) to the record, so that the trend engine sees the transcribed values
next to the lab feed's. A write that failed, or whose outcome is unknown, adds nothing.

In a dry run they have no server id yet: each gets its own ``urn:uuid`` as id, which only ever
appears in dry-run output.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.state import SummarizeState
from tools.documents.ingest import ingest_lab_documents, with_writes
from tools.record import with_resources

_URN_UUID = "urn:uuid:"


async def ingest_documents(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    ctx = runtime.context
    result = await ingest_lab_documents(
        state["record"], ctx.fhir, now=ctx.now, tz=ctx.lab_timezone, model=ctx.model
    )
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
