"""Pending writes: one analysis's transaction, why it exists and what it was computed from (pure).

Every analysis ChartAgent writes is one atomic transaction of its own: a lab-report document's
transcription, an imaging comparison's report, the longitudinal summary. Nodes produce them as
`PendingWrite`s; one write step posts them, each with its own `WriteOutcome`, so that a failed
or unknown write never hides the others, and a reviewer (the SMART app's approval step) or a
resumed run can name each one by its `key`.

The key is the business identifier of the write's main resource: its DiagnosticReport, or
(a transcription has none) its Provenance's tag, which names every Observation it writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Final, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fhir_adapters.confirmed import ConfirmedTransaction
from tools.writeback.identifiers import AI_OUTPUT_SYSTEM

__all__ = [
    "PendingWrite",
    "WriteKind",
    "WriteOutcome",
    "WriteStatus",
    "main_key",
    "of_kind",
    "posting_order",
]


class WriteKind(StrEnum):
    DOCUMENT_TRANSCRIPTION = "document-transcription"
    IMAGING_REPORT = "imaging-report"
    LONGITUDINAL_SUMMARY = "longitudinal-summary"


# Transcriptions first: the summary's trends use their values; then the reports it mentions.
_RANK: Final = {
    WriteKind.DOCUMENT_TRANSCRIPTION: 0,
    WriteKind.IMAGING_REPORT: 1,
    WriteKind.LONGITUDINAL_SUMMARY: 2,
}

# written: the server holds it (created now, already there, or confirmed by a read-back);
# would-write: a dry run, nothing sent; failed: not stored; unknown: the server may hold it.
WriteStatus = Literal["written", "would-write", "failed", "unknown"]


def main_key(bundle: Mapping[str, Any]) -> str:
    """The business identifier of the bundle's main resource: its created DiagnosticReport's,
    else its Provenance's tag. Raises ``ValueError`` when it has neither."""
    entries = [e for e in bundle.get("entry") or [] if (e.get("request") or {}).get("method") == "POST"]
    for rtype in ("DiagnosticReport", "Provenance"):
        for entry in entries:
            resource = entry["resource"]
            if resource.get("resourceType") != rtype:
                continue
            marks = resource.get("identifier") or [] if rtype == "DiagnosticReport" else []
            marks += [
                {"system": t.get("system"), "value": t.get("code")}
                for t in (resource.get("meta") or {}).get("tag") or []
            ]
            for mark in marks:
                if mark.get("system") == AI_OUTPUT_SYSTEM and mark.get("value"):
                    return str(mark["value"])
    raise ValueError("a pending write needs a DiagnosticReport or a Provenance with our identifier")


class PendingWrite(BaseModel):
    """One analysis's transaction, not yet posted."""

    model_config = ConfigDict(frozen=True)

    kind: WriteKind
    # The business identifier of its main resource (`main_key`): stable across runs on the same inputs.
    key: str = Field(pattern=r"^[0-9a-f]{64}$")
    # Why it exists, for a reviewer: references and counts, never patient data.
    reason: str = Field(min_length=1, max_length=300)
    # What it was computed from: FHIR references, and ``urn:oid:`` DICOM study UIDs.
    inputs: tuple[str, ...] = Field(min_length=1)
    # The transaction Bundle, JSON-ready; every create conditional, so posting it twice is harmless.
    bundle: dict[str, Any]

    @model_validator(mode="after")
    def _a_transaction(self) -> Self:
        if self.bundle.get("resourceType") != "Bundle" or self.bundle.get("type") != "transaction":
            raise ValueError("a pending write is a transaction Bundle")
        if not self.bundle.get("entry"):
            raise ValueError("a pending write writes something")
        return self

    @classmethod
    def of(cls, kind: WriteKind, bundle: Mapping[str, Any], *, reason: str, inputs: tuple[str, ...]) -> Self:
        return cls(kind=kind, key=main_key(bundle), reason=reason, inputs=inputs, bundle=dict(bundle))

    @property
    def label(self) -> str:
        """How a problem names it: ``summary``, ``imaging report of ImagingStudy/a vs ...``,
        ``DocumentReference/d``."""
        if self.kind is WriteKind.LONGITUDINAL_SUMMARY:
            return "summary"
        if self.kind is WriteKind.IMAGING_REPORT:
            studies = [i for i in self.inputs if i.startswith("ImagingStudy/")]
            return "imaging report of " + " vs ".join(studies or self.inputs)
        return self.inputs[0]

    def superseded(self) -> list[str]:
        """The reports its transaction retires (``DiagnosticReport/<id>``)."""
        return [
            str(e["request"]["url"])
            for e in self.bundle["entry"]
            if (e.get("request") or {}).get("method") == "PUT"
        ]


def posting_order(pending: PendingWrite) -> tuple[int, str]:
    """Transcriptions, then imaging reports, then the summary; by key within a kind (however
    parallel branches appended them)."""
    return _RANK[pending.kind], pending.key


Written = TypeVar("Written", "PendingWrite", "WriteOutcome")


def of_kind(items: Iterable[Written], kind: WriteKind) -> list[Written]:
    """The pending writes (or outcomes) of one kind, in the order given."""
    return [i for i in items if i.kind is kind]


class WriteOutcome(BaseModel):
    """What posting one pending write did."""

    model_config = ConfigDict(frozen=True)

    key: str
    kind: WriteKind
    status: WriteStatus
    # Per resource type: created by this transaction vs already there; found by a read-back after
    # the answer was lost (this run or an earlier one created it: the server cannot tell).
    created: dict[str, int] = Field(default_factory=dict)
    existing: dict[str, int] = Field(default_factory=dict)
    confirmed: dict[str, int] = Field(default_factory=dict)
    # Earlier current reports retired ("DiagnosticReport/<id>"); in a dry run, those it would retire.
    superseded: list[str] = Field(default_factory=list)
    # fullUrl -> "Type/id" on the server, for every entry the server named.
    references: dict[str, str] = Field(default_factory=dict)
    # The answer was lost and the server was read back (written: found there; failed: none stored).
    read_back: bool = False
    # Failed or unknown: what went wrong on the wire ("HTTP 500", "ReadTimeout") and a PHI-free message.
    cause: str | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _problem_named(self) -> Self:
        if (self.status in ("failed", "unknown")) != (self.error is not None):
            raise ValueError("a failed or unknown write says why, and only such a write")
        return self

    @property
    def stored(self) -> bool:
        return self.status == "written"

    @classmethod
    def would_write(cls, pending: PendingWrite) -> Self:
        return cls(key=pending.key, kind=pending.kind, status="would-write", superseded=pending.superseded())

    @classmethod
    def problem(
        cls,
        pending: PendingWrite,
        status: Literal["failed", "unknown"],
        *,
        cause: str,
        error: str,
        read_back: bool,
    ) -> Self:
        return cls(
            key=pending.key, kind=pending.kind, status=status, cause=cause, error=error, read_back=read_back
        )

    @classmethod
    def posted(cls, pending: PendingWrite, result: ConfirmedTransaction) -> Self:
        """Per resource type: entries the server created (201) vs found already there (200), or,
        when the answer was lost, found by reading the server back; and the reports retired."""
        created: Counter[str] = Counter()
        existing: Counter[str] = Counter()
        confirmed: Counter[str] = Counter()
        superseded: list[str] = []
        references: dict[str, str] = {}
        for sent, got in zip(pending.bundle["entry"], result.entries, strict=True):
            rtype = str(sent["resource"]["resourceType"])
            if got.reference is not None and got.reference.split("/", 1)[0] == rtype and "fullUrl" in sent:
                references[str(sent["fullUrl"])] = got.reference
            if sent["request"]["method"] == "PUT":
                superseded.append(str(sent["request"]["url"]))
            elif got.created is None:
                confirmed[rtype] += 1
            else:
                (created if got.created else existing)[rtype] += 1
        return cls(
            key=pending.key,
            kind=pending.kind,
            status="written",
            created=dict(created),
            existing=dict(existing),
            confirmed=dict(confirmed),
            superseded=superseded,
            references=references,
            read_back=result.read_back,
        )
