"""Lab-report PDFs of the record -> grounded, deduplicated FHIR Observations (a thin I/O shell).

``ingest_lab_documents(record, fhir, now=...)`` goes through the record's DocumentReferences,
oldest first, and for each lab report:

1. fetches its PDF attachments (``tools.documents.attachments``: inline data, or a Binary on
   the FHIR server itself, size and hash checked);
2. reads the text layer (``tools.labs.pdf.extract_labs``; pages without one through OCR); pages
   without text go to the model when one is given, and what it reads is listed for review, never
   written (nothing in the document locates it); with a model, a value read by OCR is written
   only where the model reads the same, else it is listed for review;
3. drops what is not written: rows without a LOINC code, "see note", rows without a collection
   date, rows printed twice, rows already written from this document (same identifier), and
   duplicates of results already in the record or in a document read earlier in this run
   (``tools.labs.dedup``);
4. builds the rest into one pending write (``tools.writeback.pending``), its own transaction
   (``tools.writeback.lab_results``): the extractor's Device, the Observations, their
   Provenance; every entry a conditional create. Nothing is posted here: the write node
   (``agent.nodes.write_back``) posts it, and ``with_writes`` then reads back into the outcome
   of each document what its write did, and which Observations the server holds (with their
   ids): only those join the trends.

A document that fails (refused URL, encrypted, damaged, too many pages; or, once posted, a
refused or failed write) is reported with its reference and the problem and writes nothing;
the others go on. A document's results count as known for the documents read after it as soon
as they are built: should its write then fail, a rerun writes it, and the later ones still
need none of them. Which
DocumentReferences are lab reports: ``type`` or ``category`` coded LOINC 11502-2 "Laboratory
report", or ``category`` v2-0074 ``LAB``. AI-labelled documents are never read (AI output is
not source data), nor are superseded or entered-in-error ones.

On the wire, per lab report: ``GET {base}/Binary/<id>`` for each attachment given by URL; its
pending write is later one ``POST {base}`` (unless nothing is new, or a dry run). When that
answer is lost (timeout, cut, 500) the write is resent or the server read back
(``fhir_adapters.confirmed``): a document is reported written, not stored, or of unknown outcome
only as the server confirms.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Final, Literal

from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.observation import Observation
from pydantic import BaseModel, ConfigDict, Field

from fhir_adapters import FhirClient
from tools.documents.attachments import (
    DEFAULT_MAX_PDF_BYTES,
    DocumentFetchError,
    document_label,
    fetch_pdfs,
    pdf_attachments,
)
from tools.labs.dedup import DuplicateFinder, exact_key
from tools.labs.pdf import DEFAULT_MAX_PAGES, ExtractedLab, LabPdfError, LabPdfExtraction, extract_labs_async
from tools.labs.pdf.model_pages import ModelReadLab, extract_with_model, ocr_values_to_review
from tools.medgemma.errors import ModelError
from tools.medgemma.types import ModelBackend
from tools.record import PatientRecord
from tools.writeback import ModelIdentity, build_model_device, is_ai_asserted, is_document_extraction
from tools.writeback.identifiers import AI_OUTPUT_SYSTEM, Built
from tools.writeback.lab_results import (
    build_lab_document_transaction,
    build_lab_result_observation,
    lab_pdf_extractor_identity,
    unwritable_reason,
)
from tools.writeback.pending import PendingWrite, WriteKind, WriteOutcome

__all__ = [
    "LAB_REPORT_CODES",
    "DocumentIngest",
    "DocumentOutcome",
    "DocumentReading",
    "DocumentStatus",
    "NotWritten",
    "PrintedRow",
    "ingest_lab_documents",
    "is_lab_report",
    "read_document",
    "settle_readings",
    "skip_reason",
    "with_writes",
]

log = logging.getLogger(__name__)

# pending: its results are built into a pending write not posted yet (`with_writes` settles it).
# unknown: the write's answer was lost and the server could not be read back; it may hold them.
DocumentStatus = Literal[
    "pending", "written", "nothing-new", "failed", "unknown", "skipped-not-lab", "skipped"
]
LAB_REPORT_CODES: Final = frozenset(
    {
        ("http://loinc.org", "11502-2"),  # Laboratory report
        ("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB"),  # diagnostic service section
    }
)
_NOT_READ_STATUSES: Final = frozenset({"superseded", "entered-in-error"})


class NotWritten(BaseModel):
    """A printed result that was not written, and why (no value: outcomes may be shown widely)."""

    model_config = ConfigDict(frozen=True)

    page: int
    name: str  # the test name as printed
    reason: str


class DocumentOutcome(BaseModel):
    """What happened to one DocumentReference."""

    document: str  # "DocumentReference/<id>"
    status: DocumentStatus
    detail: str | None = None  # why a document was skipped
    extracted: int = 0  # results read from the text layer
    written: int = 0  # Observations created (in a dry run: that would be written)
    already_written: int = 0  # written from this very document by an earlier run
    # Stored, as a read of the server confirmed after the write's answer was lost (this run or
    # an earlier one wrote them).
    confirmed: int = 0
    duplicates: int = 0  # already in the record, or in a document read earlier in this run
    unknown_code: int = 0  # no LOINC code for the printed name: not written
    not_written: list[NotWritten] = Field(default_factory=list)
    pages_needing_model: list[int] = Field(default_factory=list)
    # What the model read from pages without text: unverified, listed for review, never written.
    model_values: list[ModelReadLab] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    error: str | None = None
    # Where a failed or unknown document stopped: reading the PDF, or writing its results.
    stage: Literal["read", "write"] | None = None
    # The key of its pending write (`PendingWrite.key`), when it has results to write.
    write: str | None = None


class DocumentIngest(BaseModel):
    """Outcomes per document, their pending writes, and (once posted: `with_writes`) the
    Observations written (or, in a dry run, to be written).

    ``observations[i]`` is the resource as written, with its server ``id`` and references to
    the server's ids; in a dry run without ``id``, its own ``urn:uuid`` in ``references[i]``.
    """

    # Set by `with_writes` when the outcomes were would-be (a dry run): nothing was sent.
    dry_run: bool = False
    documents: list[DocumentOutcome]
    # One per document with results to write, in document order.
    pending: list[PendingWrite] = Field(default_factory=list)
    observations: list[dict[str, Any]] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)  # "Observation/<id>" or "urn:uuid:..."

    @property
    def written(self) -> int:
        return sum(d.written for d in self.documents)

    @property
    def confirmed(self) -> int:
        return sum(d.confirmed for d in self.documents)

    @property
    def failed(self) -> list[DocumentOutcome]:
        """Documents that could not be read or written, and those whose write outcome is unknown."""
        return [d for d in self.documents if d.status in ("failed", "unknown")]


class PrintedRow(BaseModel):
    """One printed result that can be written, and the PDF (by its SHA-256) it was printed in."""

    model_config = ConfigDict(frozen=True)

    lab: ExtractedLab
    pdf_sha256: str


class DocumentReading(BaseModel):
    """One document read (the costly, parallel part): its outcome so far and its writable rows.
    `settle_readings` then deduplicates all readings in document order and builds the writes."""

    outcome: DocumentOutcome
    rows: list[PrintedRow] = Field(default_factory=list)
    # Oldest first: (date, id) as `_oldest_first` orders documents.
    order: tuple[datetime, str]


def _codings(doc: DocumentReference) -> list[tuple[str | None, str | None]]:
    concepts = [doc.type, *(doc.category or ())]
    return [(c.system, c.code) for concept in concepts if concept is not None for c in concept.coding or ()]


def is_lab_report(doc: DocumentReference) -> bool:
    """``type`` or ``category`` coded as a laboratory report."""
    return any(coding in LAB_REPORT_CODES for coding in _codings(doc))


def skip_reason(doc: DocumentReference, subject: str) -> tuple[DocumentStatus, str] | None:
    if is_ai_asserted(doc):
        return "skipped", "AI-labelled: AI output is not read as source data"
    if doc.status in _NOT_READ_STATUSES:
        return "skipped", f"status {doc.status}"
    if not is_lab_report(doc):
        return "skipped-not-lab", "not coded as a laboratory report (LOINC 11502-2 or category LAB)"
    ref = doc.subject.reference if doc.subject is not None else None
    if ref and not (ref == subject or ref.endswith("/" + subject)):
        return "skipped", "the document belongs to another subject"
    if not pdf_attachments(doc):
        return "skipped", "no PDF attachment"
    return None


def _as_aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def _oldest_first(doc: DocumentReference) -> tuple[datetime, str]:
    period = doc.context.period if doc.context is not None else None
    when = _as_aware(doc.date) or _as_aware(period.start if period is not None else None)
    return when or datetime.max.replace(tzinfo=UTC), str(doc.id or "")


def _comparable(record: PatientRecord) -> list[Observation]:
    """The record's results a printed result may duplicate: all but ChartAgent's computed output."""
    return [
        o
        for o in record.of_type("Observation")
        if isinstance(o, Observation) and (not is_ai_asserted(o) or is_document_extraction(o))
    ]


def _identifiers(record: PatientRecord) -> set[str]:
    return {
        str(i.value)
        for o in record.of_type("Observation")
        if isinstance(o, Observation)
        for i in o.identifier or ()
        if i.system == AI_OUTPUT_SYSTEM and i.value
    }


def _resolve(value: Any, refs: Mapping[str, str]) -> Any:
    """``value`` with every ``reference`` naming a fullUrl of the bundle replaced by the server's."""
    if isinstance(value, dict):
        return {
            k: refs.get(v, v) if k == "reference" and isinstance(v, str) else _resolve(v, refs)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolve(v, refs) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class _Candidate:
    lab: ExtractedLab
    built: Built[Observation]


@dataclass(frozen=True)
class _Run:
    """What every document of one run shares (no client when only settling what was read)."""

    fhir: FhirClient | None
    subject: str
    now: datetime
    tz: tzinfo
    model: ModelBackend | None
    max_pages: int
    max_bytes: int
    identity: ModelIdentity
    device: Built[Any]

    async def read(self, doc: DocumentReference, outcome: DocumentOutcome) -> list[PrintedRow]:
        """The writable rows of every PDF of ``doc``; fills ``outcome``'s counts."""
        label = outcome.document
        rows: list[PrintedRow] = []
        assert self.fhir is not None, "reading needs the FHIR client"
        for pdf in await fetch_pdfs(doc, self.fhir, max_bytes=self.max_bytes):
            extraction = await extract_labs_async(pdf.data, max_pages=self.max_pages, name=label)
            if extraction.repaired:
                raise _Damaged(label)
            if extraction.needs_model or any(lab.ocr for lab in extraction.results):
                extraction = await self._model_pages(pdf.data, extraction, outcome)
            outcome.warnings += extraction.warnings
            outcome.pages_needing_model += extraction.needs_model
            outcome.extracted += len(extraction.results)
            for lab in extraction.results:
                reason = unwritable_reason(lab)
                if reason is not None:
                    outcome.unknown_code += lab.loinc is None
                    outcome.not_written.append(NotWritten(page=lab.page, name=lab.name, reason=reason))
                    continue
                rows.append(PrintedRow(lab=lab, pdf_sha256=pdf.sha256))
        return rows

    def candidates(self, rows: Sequence[PrintedRow], document: str) -> list[_Candidate]:
        """The rows built into Observations (pure and cheap: the reading was the cost)."""
        return [
            _Candidate(
                lab=row.lab,
                built=build_lab_result_observation(
                    row.lab,
                    subject=self.subject,
                    document=document,
                    pdf_sha256=row.pdf_sha256,
                    device=self.device,
                    identity=self.identity,
                    issued=self.now,
                    tz=self.tz,
                ),
            )
            for row in rows
        ]

    async def _model_pages(
        self, pdf: bytes, extraction: LabPdfExtraction, outcome: DocumentOutcome
    ) -> LabPdfExtraction:
        """Pages without a text layer through the model, when one is configured: what it reads is
        listed for review, and a value read by OCR is kept only where the model reads the same
        (``extract_with_model``); without a model, OCR values stand on their confidence alone."""
        if self.model is None:
            outcome.warnings += [
                f"page {n} has no text layer; no model configured" for n in extraction.needs_model
            ]
            return extraction
        try:
            assisted = await extract_with_model(
                pdf, self.model, max_pages=self.max_pages, name=outcome.document, text=extraction
            )
        except ModelError as exc:
            outcome.warnings.append(f"the model could not read the pages without text ({type(exc).__name__})")
            return ocr_values_to_review(extraction)  # no reading to agree with
        outcome.model_values += [r for r in assisted.model_results if r.status == "unverified"]
        outcome.warnings += assisted.warnings
        return assisted.text

    def pending(self, fresh: Sequence[_Candidate], document: str) -> PendingWrite:
        """The transaction writing ``fresh`` (not posted here: the write node does)."""
        bundle = build_lab_document_transaction(
            document=document,
            observations=[c.built for c in fresh],
            identity=self.identity,
            issued=self.now,
        )
        return PendingWrite.of(
            WriteKind.DOCUMENT_TRANSCRIPTION,
            bundle,
            reason=f"{len(fresh)} lab result(s) printed in {document}, transcribed where printed",
            inputs=(document,),
        )


def _select(
    candidates: Sequence[_Candidate], outcome: DocumentOutcome, finder: DuplicateFinder, known_ids: set[str]
) -> list[_Candidate]:
    """The candidates to write: not printed twice, not written before, not duplicates of known results."""
    fresh: list[_Candidate] = []
    seen: set[Hashable] = set()
    for c in candidates:
        key = exact_key(c.lab)
        if key in seen:
            outcome.duplicates += 1
            outcome.not_written.append(NotWritten(page=c.lab.page, name=c.lab.name, reason="printed twice"))
            continue
        seen.add(key)
        if c.built.identifier.value in known_ids:
            outcome.already_written += 1
            continue
        copy = finder.find(c.lab)
        if copy is not None:
            outcome.duplicates += 1
            outcome.not_written.append(NotWritten(page=c.lab.page, name=c.lab.name, reason=f"same as {copy}"))
            continue
        fresh.append(c)
    return fresh


class _Damaged(LabPdfError):
    def __init__(self, document: str) -> None:
        super().__init__(
            f"{document}: the PDF is damaged (truncated?) and only partly readable; nothing written "
            "from it: attach a complete copy"
        )


def _run(
    patient_id: str,
    fhir: FhirClient | None,
    *,
    now: datetime,
    tz: tzinfo,
    model: ModelBackend | None,
    max_pages: int,
    max_bytes: int,
) -> _Run:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    identity = lab_pdf_extractor_identity()
    return _Run(
        fhir=fhir,
        subject=f"Patient/{patient_id}",
        now=now,
        tz=tz,
        model=model,
        max_pages=max_pages,
        max_bytes=max_bytes,
        identity=identity,
        device=build_model_device(identity),
    )


async def read_document(
    doc: DocumentReference,
    patient_id: str,
    fhir: FhirClient,
    *,
    now: datetime,
    tz: tzinfo = UTC,
    model: ModelBackend | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_bytes: int = DEFAULT_MAX_PDF_BYTES,
) -> DocumentReading:
    """Read one document (fetch, text layer, model pages); never raises for the document's own
    problems: a skipped or failed document is a reading whose outcome says why."""
    run = _run(patient_id, fhir, now=now, tz=tz, model=model, max_pages=max_pages, max_bytes=max_bytes)
    label = document_label(doc)
    order = _oldest_first(doc)
    skip = skip_reason(doc, run.subject)
    if skip is not None:
        return DocumentReading(
            outcome=DocumentOutcome(document=label, status=skip[0], detail=skip[1]), order=order
        )
    outcome = DocumentOutcome(document=label, status="nothing-new")
    try:
        rows = await run.read(doc, outcome)
    except (DocumentFetchError, LabPdfError) as exc:
        outcome.status, outcome.error, outcome.stage = "failed", str(exc), "read"
        return DocumentReading(outcome=outcome, order=order)
    return DocumentReading(outcome=outcome, rows=rows, order=order)


def settle_readings(
    record: PatientRecord, readings: Iterable[DocumentReading], *, now: datetime, tz: tzinfo = UTC
) -> DocumentIngest:
    """Deduplicate the readings in document order (oldest first) against the record and each
    other, and build one pending write per document with something new (pure)."""
    run = _run(record.patient_id, None, now=now, tz=tz, model=None, max_pages=0, max_bytes=0)
    finder = DuplicateFinder(_comparable(record), tz)
    known_ids = _identifiers(record)
    result = DocumentIngest(documents=[])
    for reading in sorted(readings, key=lambda r: r.order):
        outcome = reading.outcome.model_copy(deep=True)
        if outcome.status == "nothing-new":
            fresh = _select(run.candidates(reading.rows, outcome.document), outcome, finder, known_ids)
            if fresh:
                pending = run.pending(fresh, outcome.document)
                result.pending.append(pending)
                outcome.status, outcome.write = "pending", pending.key
                finder.add([c.lab for c in fresh], outcome.document)
        result.documents.append(outcome)
        log.info(
            "%s: %s, %d extracted, %d duplicates",
            outcome.document,
            outcome.status,
            outcome.extracted,
            outcome.duplicates,
        )
    return result


async def ingest_lab_documents(
    record: PatientRecord,
    fhir: FhirClient,
    *,
    now: datetime,
    tz: tzinfo = UTC,
    model: ModelBackend | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_bytes: int = DEFAULT_MAX_PDF_BYTES,
) -> DocumentIngest:
    """The pending writes of the lab results printed in the record's lab-report PDFs; see the
    module docstring. Nothing is written here.

    ``now`` is the run's clock (``issued``, ``recorded``); ``tz`` the zone of the wall-clock
    times printed on the reports. One document's failure never raises: it is reported in its
    outcome and the other documents go on.
    """
    docs = [d for d in record.of_type("DocumentReference") if isinstance(d, DocumentReference)]
    readings = [
        await read_document(
            d, record.patient_id, fhir, now=now, tz=tz, model=model, max_pages=max_pages, max_bytes=max_bytes
        )
        for d in docs
    ]
    return settle_readings(record, readings, now=now, tz=tz)


def _observations(pending: PendingWrite, written: WriteOutcome) -> tuple[list[dict[str, Any]], list[str]]:
    """The Observations of ``pending`` as the server holds them (its ids, references resolved to
    the server's), and their references; as built, with their ``urn:uuid``, when would-be."""
    entries = [e for e in pending.bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    refs = written.references
    observations: list[dict[str, Any]] = []
    references: list[str] = []
    for entry in entries:
        obs = _resolve(entry["resource"], refs)
        ref = refs.get(str(entry["fullUrl"]))
        if ref is not None:
            obs["id"] = ref.split("/", 1)[1]
        observations.append(obs)
        references.append(ref or str(entry["fullUrl"]))
    return observations, references


def _settled(doc: DocumentOutcome, pending: PendingWrite, written: WriteOutcome) -> DocumentOutcome:
    label = doc.document
    count = sum(e["resource"]["resourceType"] == "Observation" for e in pending.bundle["entry"])
    if written.status == "would-write":
        return doc.model_copy(update={"status": "written", "written": count})
    if written.status == "written":
        if written.read_back:  # the answer was lost; the server holds them (by this run or an earlier one)
            return doc.model_copy(update={"status": "written", "confirmed": count})
        created = written.created.get("Observation", 0)
        return doc.model_copy(
            update={
                "status": "written" if created else "nothing-new",
                "written": created,
                "already_written": doc.already_written + count - created,
            }
        )
    if written.status == "unknown":
        # Never "nothing written" on a guess: the server may hold them; a rerun settles it.
        error = (
            f"{label}: writing the results: outcome unknown ({written.cause}); the server may hold them, "
            "and a rerun completes the write without duplicates"
        )
    elif written.read_back:
        error = (
            f"{label}: writing the results failed ({written.cause}); a read of the server shows none stored"
        )
    else:  # refused: a transaction is all or nothing
        error = f"{label}: writing the results failed ({written.cause}); nothing written"
    return doc.model_copy(update={"status": written.status, "stage": "write", "error": error})


def with_writes(ingest: DocumentIngest, outcomes: Iterable[WriteOutcome]) -> DocumentIngest:
    """``ingest`` with what its pending writes did (pure): each document's status and counts, and
    the Observations stored with their ids (for a would-be outcome: as built, that would be).
    A document whose write has no outcome yet stays pending."""
    by_key = {o.key: o for o in outcomes}
    pending = {p.key: p for p in ingest.pending}
    documents: list[DocumentOutcome] = []
    observations: list[dict[str, Any]] = list(ingest.observations)
    references: list[str] = list(ingest.references)
    dry_run = ingest.dry_run
    for doc in ingest.documents:
        written = by_key.get(doc.write or "")
        if doc.status != "pending" or written is None:
            documents.append(doc)
            continue
        write = pending[written.key]
        documents.append(_settled(doc, write, written))
        dry_run = dry_run or written.status == "would-write"
        if written.status in ("written", "would-write"):
            obs, refs = _observations(write, written)
            observations += obs
            references += refs
    return ingest.model_copy(
        update={
            "documents": documents,
            "observations": observations,
            "references": references,
            "dry_run": dry_run,
        }
    )
