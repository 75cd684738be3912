"""Starting a job run: the run recorded in the ledger and its cohort resolved into pending patients,
the same for every executor. Started again with the same run id, the run is found and kept."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from agent.jobs.cohorts import CohortSpec, resolve_cohort
from agent.jobs.ledger import Ledger, RunRow
from fhir_adapters import FhirClient
from fhir_adapters.bulk_export import BulkExportClient, fhir_instant
from fhir_adapters.error_tree import BadInputError

__all__ = ["JobInputError", "prepare_run"]


class JobInputError(BadInputError):
    """A job command that cannot be carried out as asked (unknown run, another server, ...)."""


def _since_instant(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise JobInputError(
            "--since: give an ISO date or date-time (e.g. 2026-12-01T00:00:00Z) or last"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def prepare_run(
    ledger: Ledger,
    fhir: FhirClient,
    run_id: str,
    *,
    cohort: str,
    since: str | None,
    executor: str,
    fhir_url: str,
    on_export_progress: Callable[[str], None] | None = None,
) -> RunRow:
    """Create the run (or find it, to resume) and resolve its cohort into pending patients.

    A resumed run keeps its cohort and patients: it is resolved again only when no patient was
    recorded (a crash during the resolution: an export resumes polling its saved status URL).
    `on_export_progress`: the server's `X-Progress` text of each status poll of an export."""
    spec = CohortSpec.parse(cohort)
    existing = await ledger.get_run(run_id)
    if existing is not None and existing.fhir_url != fhir_url:
        raise JobInputError(f"run {run_id} is on another FHIR server; resume it against that one")
    if existing is not None and await ledger.patients(run_id, limit=1):
        return existing
    if existing is None and since not in (None, "last"):
        _since_instant(since)  # a bad --since creates no run
    if existing is None and since == "last":
        # No earlier successful run of the cohort: every patient of it.
        since = await ledger.last_transaction_time(str(spec), fhir_url)
    run = await ledger.create_run(run_id, cohort=str(spec), since=since, executor=executor, fhir_url=fhir_url)

    async def save_status_url(url: str) -> None:
        await ledger.set_export_status(run_id, url)

    resolution = await resolve_cohort(
        fhir,
        spec,
        since=_since_instant(run.since) if run.since else None,
        saved_status_url=run.export_status_url,
        on_status_url=save_status_url,
        bulk=BulkExportClient(fhir, on_progress=on_export_progress) if on_export_progress else None,
    )
    when = resolution.transaction_time
    await ledger.set_transaction_time(run_id, fhir_instant(when) if when else None)
    await ledger.add_patients(run_id, resolution.patient_ids)
    return run
