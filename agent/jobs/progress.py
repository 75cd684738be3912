"""The progress bar of a job on a terminal: patients finished of the run's total, the rate and the ETA."""

from __future__ import annotations

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

__all__ = ["RateColumn", "job_progress"]


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
