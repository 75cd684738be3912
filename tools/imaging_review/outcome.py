"""What the imaging review hands back: one outcome per comparison, and a line for the narrative (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from fhir.resources.R4B.resource import Resource

from tools.imaging_review.plan import ImagingKind
from tools.medgemma.tasks.cxr_comparison import CxrComparison
from tools.medgemma.tasks.volume_comparison import VolumeComparison
from tools.writeback.bundle import conditional_create_bundle
from tools.writeback.identifiers import Built
from tools.writeback.pending import PendingWrite, WriteKind
from tools.writeback.supersede import with_superseded

__all__ = ["AI_SUFFIX", "ComparisonOutcome", "ComparisonStatus", "ImagingReview", "summary_line"]

AI_SUFFIX: Final = "(AI-generated)"
_LINE_TEXT: Final = 160


class ComparisonStatus(StrEnum):
    READY = "ready"  # parsed; `built` holds what to write
    SKIPPED = "skipped"  # not attempted (the reason says why); nothing fetched for it
    FAILED = "failed"  # attempted; images or the model's answer not usable; nothing to write


def _short(text: str, limit: int = _LINE_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def summary_line(
    kind: ImagingKind,
    current_date: str,
    prior_date: str | None,
    status: ComparisonStatus,
    reason: str | None,
    result: CxrComparison | VolumeComparison | None,
) -> str:
    """One plain-text line, e.g. "CXR 2026-05-01 vs 2025-11-02: pleural effusion worsened (AI-generated)"."""
    when = f"{kind.label} {current_date}" + (f" vs {prior_date}" if prior_date is not None else "")
    if status is not ComparisonStatus.READY or result is None:
        return f"{when}: not analysed - {_short(reason or status.value)}"
    if isinstance(result, CxrComparison):
        changes = "; ".join(f"{c.finding} {c.change.value}" for c in result.comparisons)
        said = changes or _short(result.summary) or "no finding compared"
        return f"{when}: {said} {AI_SUFFIX}"
    current = _short(result.current.findings.impression)
    if result.prior is None:
        return f"{when} (no prior available): {current} {AI_SUFFIX}"
    prior = _short(result.prior.findings.impression)
    return f"{when}: current: {current}; prior: {prior} (AI-generated; each study read separately)"


@dataclass(frozen=True, eq=False)
class ComparisonOutcome:
    """One comparison (or one study skipped): what was compared, how it ended, and what to write."""

    kind: ImagingKind
    current: str  # ImagingStudy id
    prior: str | None  # ImagingStudy id
    current_date: str
    prior_date: str | None
    status: ComparisonStatus
    reason: str | None = None
    result: CxrComparison | VolumeComparison | None = None
    # [Device, DiagnosticReport, Provenance] when READY; empty otherwise.
    built: tuple[Built[Any], ...] = ()
    notes: tuple[str, ...] = ()
    # The model's whole answer when it could not be read, for audit (never for logs).
    raw_text: str | None = None
    # What a ready comparison read: its ImagingStudy references and ``urn:oid:`` study UIDs.
    inputs: tuple[str, ...] = ()
    summary: str = field(default="", init=False)

    def __post_init__(self) -> None:
        if (self.status is ComparisonStatus.READY) != bool(self.built):
            raise ValueError("a ready comparison has resources to write, and only a ready one")
        if self.status is not ComparisonStatus.READY and not self.reason:
            raise ValueError(f"a {self.status.value} comparison needs its reason")
        line = summary_line(
            self.kind, self.current_date, self.prior_date, self.status, self.reason, self.result
        )
        object.__setattr__(self, "summary", line)

    def pending_write(self, current: Iterable[Resource] = ()) -> PendingWrite | None:
        """Its report, Device and Provenance as one transaction of their own (None unless ready);
        it retires the older current report of the same pair of studies among ``current``."""
        if self.status is not ComparisonStatus.READY:
            return None
        studies = [f"ImagingStudy/{s}" for s in (self.current, self.prior) if s is not None]
        return PendingWrite.of(
            WriteKind.IMAGING_REPORT,
            with_superseded(conditional_create_bundle(self.built), current),
            reason=f"AI reading of {self.kind.label} " + " vs ".join(studies) + " (current vs prior)",
            inputs=self.inputs or tuple(studies),
        )


@dataclass(frozen=True, eq=False)
class ImagingReview:
    comparisons: tuple[ComparisonOutcome, ...]

    def with_status(self, status: ComparisonStatus) -> list[ComparisonOutcome]:
        return [c for c in self.comparisons if c.status is status]

    @property
    def built(self) -> list[Built[Any]]:
        """Everything to write, in order, each resource once (a shared Device appears once)."""
        seen: dict[str, Built[Any]] = {}
        for c in self.comparisons:
            for b in c.built:
                seen.setdefault(b.full_url, b)
        return list(seen.values())

    def pending_writes(self, current: Iterable[Resource] = ()) -> list[PendingWrite]:
        """One transaction per ready comparison (see `ComparisonOutcome.pending_write`)."""
        return [w for c in self.comparisons if (w := c.pending_write(current)) is not None]

    @property
    def summary_lines(self) -> list[str]:
        return [c.summary for c in self.comparisons]

    def lines(self, statuses: Sequence[ComparisonStatus] = (ComparisonStatus.READY,)) -> list[str]:
        """Summary lines of the comparisons with these statuses (default: the analysed ones)."""
        return [c.summary for c in self.comparisons if c.status in statuses]
