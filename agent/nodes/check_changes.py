"""Before the record is read: has anything changed since the last complete run? (`agent.planning.
change_marks`). Nothing changed: the run ends here, at the cost of one round of searches, or of
none when the batch's cohort-level check (`RunContext.change_index`) found the patient unchanged.
A batch whose check took a server instant (`ChangeIndex.as_of`) but left this patient to its own
searches (it gave up, or the patient's mark is newer) moves the mark's `since` on when they find
nothing, so that the next night's cohort window starts there."""

from __future__ import annotations

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.planning.change_marks import find_change
from agent.state import SummarizeState
from fhir_adapters.error_tree import ServiceError


async def check_changes(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    ctx = runtime.context
    marks = ctx.checked_marks
    if marks is None:
        return {}
    patient_id = state["patient_id"]
    mark = await marks.get(patient_id)
    if mark is None:
        return {}
    index = ctx.change_index
    if index is not None and index.settles(patient_id, mark, can_read_images=ctx.can_read_images):
        return {"unchanged_since": mark.through.isoformat()}
    try:
        reason = await find_change(ctx.fhir, patient_id, mark, can_read_images=ctx.can_read_images)
    except ServiceError:
        return {}  # the full path reads the record and reports the server's problem itself
    if reason is not None:
        return {}
    if index is not None and index.as_of is not None:
        # Its searches began after the batch's instant and found nothing: unchanged as of then.
        await marks.verify({patient_id: mark}, index.as_of)
    return {"unchanged_since": mark.through.isoformat()}
