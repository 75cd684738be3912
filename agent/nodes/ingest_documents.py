"""Lab-report PDFs in the record -> grounded Observations, before the trends are computed.

The Observations written (or, in a dry run, those that would be) join the record, so that the
trend engine sees the transcribed values next to the lab feed's. In a dry run they have no
server id yet: each gets its own ``urn:uuid`` as id, which only ever appears in dry-run output.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.state import SummarizeState
from tools.documents.ingest import ingest_lab_documents
from tools.record import with_resources

_URN_UUID = "urn:uuid:"


async def ingest_documents(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    ctx = runtime.context
    record = state["record"]
    result = await ingest_lab_documents(
        record, ctx.fhir, now=ctx.now, tz=ctx.lab_timezone, model=ctx.model, dry_run=ctx.dry_run
    )
    if not result.observations:
        return {"documents": result}
    added: list[dict[str, Any]] = []
    for resource, reference in zip(result.observations, result.references, strict=True):
        if "id" not in resource and reference.startswith(_URN_UUID):
            resource = {**resource, "id": reference.removeprefix(_URN_UUID)}
        added.append(resource)
    return {"documents": result, "record": with_resources(record, added)}
