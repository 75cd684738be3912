"""Run the summarization graph over many patients: bounded concurrency, one failure never
stops the batch, and what each patient's run did is reported."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore
from pydantic import BaseModel, ValidationError

from agent.context import RunContext
from agent.graphs.summarize import build_summarize_graph, summarize_graph
from agent.planning.change_marks import mark_after_run
from agent.planning.worklist import WorkKind
from agent.state import SummarizeState
from fhir_adapters import FhirClient
from fhir_adapters.confirmed import WriteNotStored, WriteOutcomeUnknown
from fhir_adapters.error_tree import ChartAgentError, defect_text, raised_at
from tools.documents.summary import document_problem
from tools.writeback.pending import WriteKind

# unknown: the write's answer was lost and the server could not be read back: it may hold it.
Status = Literal["written", "unchanged", "dry-run", "no-labs", "failed", "unknown"]

log = logging.getLogger(__name__)

# The store namespace of the outcomes of a checkpointed batch's finished patients.
_OUTCOMES: Final = ("chartagent", "summarize-outcomes")


class PatientOutcome(BaseModel):
    patient_id: str
    status: Status
    series: int = 0
    # Resources of the record that failed R4B parsing: reported (ids in the facts), not used.
    rejected: int = 0
    created: dict[str, int] = {}
    existing: dict[str, int] = {}
    # Found on the server by a read-back after the write's answer was lost (created by this run
    # or an earlier one: which, the server cannot tell).
    confirmed: dict[str, int] = {}
    # Earlier current reports that this run's reports replaced ("DiagnosticReport/<id>").
    superseded: list[str] = []
    # Observations transcribed from lab-report PDFs by this run (in a dry run: that would be).
    from_documents: int = 0
    # Lab-report documents that could not be read: "DocumentReference/<id>: <problem>".
    document_errors: list[str] = []
    # One line per imaging comparison (analysed, skipped or failed, with the reason).
    imaging: list[str] = []
    # Names the failing step and the problem; carries no patient data.
    error: str | None = None


async def list_patient_ids(client: FhirClient) -> list[str]:
    patients = await client.search("Patient", [("_elements", "id")], count=500)
    return sorted(str(p["id"]) for p in patients if "id" in p)


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(total)


def outcome_of(patient_id: str, state: SummarizeState, *, dry_run: bool) -> PatientOutcome:
    """The patient's outcome from the outcomes of its writes. The analyses' (summary, imaging
    reports) give the status and the counts; the lab-report transcriptions are counted in
    ``from_documents`` and their problems listed in ``document_errors``, as before."""
    trends = state.get("trends") or []
    rejected = len(state["record"].rejected) if "record" in state else 0
    documents = state.get("documents")
    analyses = [w for w in state.get("writes") or [] if w.kind is not WriteKind.DOCUMENT_TRANSCRIPTION]
    common = {
        "patient_id": patient_id,
        "rejected": rejected,
        "series": len(trends),
        "from_documents": documents.written + documents.confirmed if documents else 0,
        "document_errors": [document_problem(d) for d in documents.failed] if documents else [],
        "imaging": list(state.get("imaging_lines") or []),
    }
    if state.get("unchanged_since"):
        # Nothing changed since the last complete run: the record was not even read.
        return PatientOutcome.model_validate({**common, "status": "unchanged"})
    worklist = state.get("worklist")
    if worklist is not None and not worklist.items and worklist.previous_reports:
        # Nothing new since the last run: nothing recomputed, nothing written.
        return PatientOutcome.model_validate({**common, "status": "unchanged"})
    if not analyses:
        # Nothing analysed was written: transcriptions only, no lab series at all, or (the labs
        # unchanged, an imaging read failed) nothing new.
        labs_due = worklist is None or bool(worklist.of_kind(WorkKind.LAB_SUMMARY))
        status: Status = "no-labs" if labs_due and not trends else "unchanged"
        if common["from_documents"] and not dry_run:
            status = "written"
        return PatientOutcome.model_validate({**common, "status": status})
    if dry_run:
        return PatientOutcome.model_validate({**common, "status": "dry-run"})
    pending = {p.key: p for p in state.get("pending") or []}
    problems = [w for w in analyses if w.status in ("failed", "unknown")]
    counts = {
        "created": _summed([w.created for w in analyses]),
        "existing": _summed([w.existing for w in analyses]),
        "confirmed": _summed([w.confirmed for w in analyses]),
        "superseded": [ref for w in analyses for ref in w.superseded],
    }
    if problems:
        # Each analysis is its own transaction: what the others wrote is counted, the failed one named.
        status = "failed" if any(w.status == "failed" for w in problems) else "unknown"
        error = "; ".join(
            f"{pending[w.key].label if w.key in pending else w.kind.value}: {w.error}" for w in problems
        )
        return PatientOutcome.model_validate({**common, **counts, "status": status, "error": error})
    changed = any((counts["created"], counts["confirmed"], counts["superseded"], common["from_documents"]))
    return PatientOutcome.model_validate(
        {**common, **counts, "status": "written" if changed else "unchanged"}
    )


@dataclass(frozen=True)
class Checkpointing:
    """A batch that keeps checkpoints: each patient's run is the thread `<run_id>/<patient id>`.
    Run the same `run_id` again after a crash: a finished patient is reported from its saved
    outcome, an interrupted one resumes where it stopped, the rest start.

    A patient's finished thread is replaced by its outcome (`settle`): the thread's checkpoints
    hold the patient's record and every step's writes (about 2 MB a patient run on the bench
    cohort), and once the patient is finished only its outcome is read again. So a long batch
    keeps the current patient's checkpoints and a few hundred bytes for each patient before it.
    A failure of the checkpoint database itself (reading an outcome, settling) stops the batch:
    the same run id resumes it."""

    saver: BaseCheckpointSaver[Any]
    store: BaseStore
    run_id: str

    def thread_id(self, patient_id: str) -> str:
        return f"{self.run_id}/{patient_id}"

    @property
    def _namespace(self) -> tuple[str, ...]:
        # A store's namespace labels may not hold a period; a run id (`--run-id`) may.
        return (*_OUTCOMES, hashlib.sha256(self.run_id.encode()).hexdigest()[:16])

    async def finished(self, patient_id: str) -> PatientOutcome | None:
        """The outcome saved when the patient finished earlier in this run; None: it did not."""
        item = await self.store.aget(self._namespace, patient_id)
        return None if item is None else PatientOutcome.model_validate(item.value)

    async def settle(self, patient_id: str, outcome: PatientOutcome) -> None:
        """The patient's run finished: keep its outcome, delete its checkpoints (saved first, so a
        crash in between leaves both, never neither)."""
        await self.store.aput(self._namespace, patient_id, outcome.model_dump(mode="json"), index=False)
        await self.saver.adelete_thread(self.thread_id(patient_id))

    async def forget(self, patient_ids: Sequence[str]) -> None:
        """Delete what the run kept of these patients (outcomes, and the checkpoints of any not
        settled): once the whole run is reported they served only a resume after a crash."""
        for patient_id in patient_ids:
            await self.saver.adelete_thread(self.thread_id(patient_id))
            await self.store.adelete(self._namespace, patient_id)


async def summarize_patient(
    ctx: RunContext, patient_id: str, checkpointing: Checkpointing | None = None
) -> SummarizeState:
    config: RunnableConfig = {"max_concurrency": ctx.max_concurrency}
    if checkpointing is None:
        graph = summarize_graph
        start: SummarizeState | None = {"patient_id": patient_id}
    else:
        graph = build_summarize_graph().compile(checkpointer=checkpointing.saver, name="summarize")
        config["configurable"] = {"thread_id": checkpointing.thread_id(patient_id)}
        snapshot = await graph.aget_state(config)
        if snapshot.values and not snapshot.next:
            return snapshot.values  # type: ignore[return-value]  # finished, not settled (a crash between)
        # Interrupted earlier in this run: None resumes from the last checkpoint.
        start = None if snapshot.next else {"patient_id": patient_id}
    result = cast(SummarizeState, await graph.ainvoke(start, config=config, context=ctx))
    await _leave_mark(ctx, patient_id, result)
    return result


async def _leave_mark(ctx: RunContext, patient_id: str, state: SummarizeState) -> None:
    """A complete run (every write stored) marks the patient; any other leaves no trusted mark."""
    if ctx.change_marks is None or ctx.dry_run or "record" not in state:
        return
    mark = mark_after_run(
        state["record"],
        state.get("pending") or (),
        state.get("writes") or (),
        can_read_images=ctx.can_read_images,
        due=worklist.items if (worklist := state.get("worklist")) is not None else (),
    )
    if mark is None:
        await ctx.change_marks.forget(patient_id)
    else:
        await ctx.change_marks.put(patient_id, mark)


async def summarize_many(
    ctx: RunContext,
    patient_ids: Sequence[str],
    *,
    on_done: Callable[[PatientOutcome, SummarizeState | None], None] | None = None,
    checkpointing: Checkpointing | None = None,
) -> list[PatientOutcome]:
    """Summarise each patient in turn; the FHIR client bounds request concurrency within one."""
    outcomes: list[PatientOutcome] = []
    for patient_id in patient_ids:
        state: SummarizeState | None = None
        saved = await checkpointing.finished(patient_id) if checkpointing is not None else None
        if saved is not None:  # finished earlier in this run
            outcome = saved
        else:
            outcome, state = await _run_one(ctx, patient_id, checkpointing)
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome, state)
    return outcomes


async def _run_one(
    ctx: RunContext, patient_id: str, checkpointing: Checkpointing | None
) -> tuple[PatientOutcome, SummarizeState | None]:
    """The per-patient boundary: whatever one patient's record does, the batch goes on and the
    patient is reported. Only cancellation (and interpreter exits) pass through. A run that
    raised keeps its checkpoints: the same run id resumes it."""
    try:
        state = await summarize_patient(ctx, patient_id, checkpointing)
        outcome = outcome_of(patient_id, state, dry_run=ctx.dry_run)
    except WriteOutcomeUnknown as exc:
        return PatientOutcome(patient_id=patient_id, status="unknown", error=f"summary: {exc}"), None
    except Exception as exc:
        return PatientOutcome(patient_id=patient_id, status="failed", error=describe_failure(exc)), None
    if checkpointing is not None:
        await checkpointing.settle(patient_id, outcome)
    return outcome, state


def describe_failure(exc: Exception) -> str:
    """Our own errors (`ChartAgentError`: a service failed, the input is bad, ...) carry PHI-free
    messages; pydantic's would echo input values, so only the failing fields are named."""
    if isinstance(exc, ValidationError):
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        return f"invalid data in {exc.title}: {', '.join(fields[:5])}"
    if isinstance(exc, WriteNotStored):
        return f"summary: {exc}"
    if isinstance(exc, ChartAgentError):
        return f"{type(exc).__name__}: {exc}"
    # Anything else is a defect of ours. Its message may quote record data, so only the type and
    # where it was raised are reported (and logged).
    log.error("unexpected %s at %s", type(exc).__name__, raised_at(exc))
    return f"{defect_text(exc)}; please report it"
