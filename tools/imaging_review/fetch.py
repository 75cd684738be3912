"""Fetch one study's series from the configured DICOMweb server and prepare it (the I/O shell).

`tools.imaging.prepare.prepare_dicomweb` does the work, as for every other caller. On the wire,
per study:
    GET {dicomweb}/studies/{study}/series                   (only when the ImagingStudy lists no series:
                                                             the selection policy chooses on the answer)
    GET {dicomweb}/studies/{study}/series/{series}          (multipart; per instance if refused)
then the task's recipe (CT: 85 slices, three windows; MRI: min-max; CXR: padded square), off the
event loop since it is CPU-bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.imaging.dicomweb import DicomWebClient
from tools.imaging.errors import SeriesSelectionError
from tools.imaging.prepare import Selected, prepare_dicomweb
from tools.imaging.prepared import PreparedImages
from tools.imaging.selection import ImagingTask, Several
from tools.imaging.sources import DicomWebRef
from tools.imaging_review.plan import ImagingKind, StudyEntry

__all__ = ["FetchedStudy", "fetch_and_prepare"]


@dataclass(frozen=True, eq=False)
class FetchedStudy:
    prepared: PreparedImages
    notes: tuple[str, ...]  # e.g. instances that could not be read (ids and counts only)
    selected: Selected | None = None  # study, series and instance UIDs read, and the selection rule

    @property
    def series_uid(self) -> str:
        return self.prepared.metadata.series_uid


async def fetch_and_prepare(
    client: DicomWebClient, study: StudyEntry, series_uid: str | None, kind: ImagingKind
) -> FetchedStudy:
    """Fetch and prepare one series of `study`; raises DicomWebError, DicomSourceError or ImagingError."""
    if study.study_uid is None:  # the plan skips such studies
        raise SeriesSelectionError(study.reference, "no StudyInstanceUID")
    ref = DicomWebRef(study_uid=study.study_uid, series_uid=series_uid)
    result = await prepare_dicomweb(
        ref, ImagingTask(kind.value), client=client, series=series_uid, several=Several.FIRST
    )
    done = result.one()
    unread = [f for f in result.failures if f.kind == "input"]
    notes = (
        (f"{len(unread)} instance(s) of series {done.selected.series_uid} could not be read",)
        if unread
        else ()
    )
    return FetchedStudy(prepared=done.images, notes=notes, selected=done.selected)
