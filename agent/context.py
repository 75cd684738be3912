"""Per-run context of the agent graphs (LangGraph `context_schema`): what a run is allowed
to touch and how. Per-run values win over deployment settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from agent.planning.change_marks import ChangeIndex, ChangeMarks
from fhir_adapters import FhirClient
from tools.imaging.dicomweb import DicomWebClient
from tools.medgemma.types import ModelBackend


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RunContext:
    fhir: FhirClient
    # Compute and build everything, write nothing.
    dry_run: bool = False
    # The clock of this run (issued/recorded times); injectable for reproducible output.
    now: datetime = field(default_factory=_utc_now)
    # The model that writes the narrative (tools.medgemma.factory.create_backend); None: the
    # templated narrative, and the run says that model findings were skipped.
    model: ModelBackend | None = None
    # The PACS that imaging comparisons read from (the configured DICOMweb base only); None:
    # imaging comparisons are reported as skipped.
    dicomweb: DicomWebClient | None = None
    # The zone of the wall-clock times printed on lab-report PDFs.
    lab_timezone: tzinfo = UTC
    # Fan-out branches of one patient's run (documents, imaging studies) that may run at once.
    max_concurrency: int = 4
    # Where complete runs leave their change marks; None: every run reads the whole record.
    change_marks: ChangeMarks | None = None
    # False: read every record anyway (the marks are still left for the next run).
    check_changes: bool = True
    # A batch's cohort-level change check (`change_marks.check_cohort`): the patients it found
    # unchanged skip their own searches; None or absent: the patient checks its own.
    change_index: ChangeIndex | None = None
    # The job run this patient's run belongs to (`chartagent jobs run`): what it creates carries
    # the run's tag (`tools.writeback.run_tag`); None outside jobs.
    job_run: str | None = None

    @property
    def checked_marks(self) -> ChangeMarks | None:
        """The change marks a run checks before reading the record; None when it reads it anyway
        (no marks kept, a dry run, or changes not checked)."""
        if self.dry_run or not self.check_changes:
            return None
        return self.change_marks

    @property
    def can_read_images(self) -> bool:
        """A model and a PACS: imaging work runs instead of being deferred."""
        return self.model is not None and self.dicomweb is not None
