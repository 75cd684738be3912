"""The progress of a run whose patients run elsewhere (Temporal workers), followed through the ledger."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.jobs.ledger import PatientResult, open_ledger
from agent.jobs.progress import follow_ledger
from agent.settings import Settings


async def test_the_followed_counts_are_the_ledgers_finished_of_all(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    async with open_ledger(Settings(state_dir=tmp_path, checkpoint_url=None)) as ledger:
        await ledger.create_run("r", cohort="all", since=None, executor="temporal", fhir_url="http://f")
        await ledger.add_patients("r", ["a", "b", "c", "d"])
        follower = asyncio.create_task(follow_ledger(ledger, "r", lambda *n: seen.append(n), every_s=0.01))
        try:
            for patient, status in (("a", "done"), ("b", "unchanged"), ("c", "failed")):
                await asyncio.sleep(0.05)
                # As a worker elsewhere records its patients.
                await ledger.take_lease("r", patient, "w", 60)
                await ledger.mark("r", PatientResult(patient_id=patient, status=status, reason="x"))
            await asyncio.sleep(0.05)
        finally:
            follower.cancel()
    assert seen[0] == (0, 4)
    assert seen[-1] == (3, 4)  # done, unchanged and failed are finished; "d" is not
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
