"""The one write node: post each pending write as its own atomic transaction (the only write).

Pending writes are taken in `posting_order` (transcriptions, imaging reports, the summary), each
one posted once per run: the node runs after the documents are read (their values must be stored
before the trends use them) and again at the end, and posts only what no earlier pass did. Every
create is conditional (plus, where a newer report replaces an older current one, a version-checked
update retiring it: `tools.writeback.supersede`), so a rerun with the same inputs creates nothing
new and a failure leaves nothing of that write half-written.

A write that fails or whose outcome stays unknown is reported in its own outcome and the others
go on. In a dry run nothing is sent: each pending write is reported as would-be.

On the wire, per pending write: ``POST {base}`` its transaction Bundle; when the answer is lost,
the reads and the one resend of `fhir_adapters.confirmed`.
"""

from __future__ import annotations

from collections.abc import Iterable

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.state import SummarizeState
from fhir_adapters import FhirClient, FhirError, FhirHttpError
from fhir_adapters.confirmed import WriteNotStored, WriteOutcomeUnknown, post_transaction
from tools.writeback.pending import PendingWrite, WriteOutcome, posting_order
from tools.writeback.run_tag import tagged_with_run


def _refusal(exc: FhirError) -> str:
    # The server's diagnostics may quote the resource sent: only the status goes into the message.
    return f"HTTP {exc.status}" if isinstance(exc, FhirHttpError) else type(exc).__name__


async def post_write(fhir: FhirClient, pending: PendingWrite, *, job_run: str | None = None) -> WriteOutcome:
    """Post one pending write; its outcome, never an exception of ours (a bug still propagates).
    ``job_run``: what it creates carries that job run's tag."""
    bundle = pending.bundle if job_run is None else tagged_with_run(pending.bundle, job_run)
    try:
        # A lost answer is resent or read back: WriteNotStored / WriteOutcomeUnknown, never a guess.
        result = await post_transaction(fhir, bundle)
    except WriteOutcomeUnknown as exc:
        return WriteOutcome.problem(pending, "unknown", cause=exc.cause, error=str(exc), read_back=True)
    except WriteNotStored as exc:
        return WriteOutcome.problem(pending, "failed", cause=exc.cause, error=str(exc), read_back=True)
    except FhirError as exc:  # refused: a transaction is all or nothing
        cause = _refusal(exc)
        error = f"the server refused the write ({cause}); nothing of it stored"
        return WriteOutcome.problem(pending, "failed", cause=cause, error=error, read_back=False)
    return WriteOutcome.posted(pending, result)


def unposted(pending: Iterable[PendingWrite], done: Iterable[WriteOutcome]) -> list[PendingWrite]:
    """The pending writes without an outcome yet, each key once, in posting order."""
    seen = {o.key for o in done}
    todo: dict[str, PendingWrite] = {}
    for p in pending:
        if p.key not in seen:
            todo.setdefault(p.key, p)
    return sorted(todo.values(), key=posting_order)


async def post_writes(
    fhir: FhirClient,
    pending: Iterable[PendingWrite],
    *,
    dry_run: bool,
    done: Iterable[WriteOutcome] = (),
    job_run: str | None = None,
) -> list[WriteOutcome]:
    """Post (or, in a dry run, only list) each pending write not in ``done``, one after another."""
    outcomes: list[WriteOutcome] = []
    for p in unposted(pending, done):
        outcomes.append(
            WriteOutcome.would_write(p) if dry_run else await post_write(fhir, p, job_run=job_run)
        )
    return outcomes


async def write_back(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    ctx = runtime.context
    outcomes = await post_writes(
        ctx.fhir,
        state.get("pending", []),
        dry_run=ctx.dry_run,
        done=state.get("writes", []),
        job_run=ctx.job_run,
    )
    return {"writes": outcomes}
