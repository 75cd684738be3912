"""The progress bar of a job on a terminal: patients finished of the run's total, the rate and the ETA.

The local executor advances it as each patient's result comes in; an executor whose patients run
elsewhere (Temporal workers) is followed through the ledger, which every worker writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from agent.jobs.ledger import Ledger

__all__ = ["RateColumn", "follow_ledger", "job_progress"]

# How often a followed run's counts are read (one small query).
FOLLOW_EVERY_S: Final = 0.5


class RateColumn(ProgressColumn):
    """Patients per second, over rich's recent samples."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text("-- patients/s" if speed is None else f"{speed:.1f} patients/s")


def job_progress(*, enabled: bool) -> Progress:
    """On stderr, so stdout keeps the results; `enabled` False (off a terminal) draws nothing."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


async def follow_ledger(
    ledger: Ledger, run_id: str, show: Callable[[int, int], None], *, every_s: float = FOLLOW_EVERY_S
) -> None:
    """Until cancelled: `show(finished, total)` from the run's ledger counts every `every_s`."""
    while True:
        counts = await ledger.counts(run_id)
        total = sum(counts.values())
        show(total - counts["pending"] - counts["running"], total)
        await asyncio.sleep(every_s)
