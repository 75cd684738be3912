"""Fetch one study's series from the configured DICOMweb server and prepare it (the I/O shell).

On the wire, per study:
    GET {dicomweb}/studies/{study}/series?Modality=...      (only when the ImagingStudy lists no series)
    GET {dicomweb}/studies/{study}/series/{series}          (multipart; per instance if refused)
then `tools.imaging.recipes.prepare_volume` (CT: 85 slices, three windows; MRI: min-max; CXR:
padded square), off the event loop since it is CPU-bound.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from tools.imaging.dicomweb import DicomWebClient
from tools.imaging.errors import SeriesSelectionError
from tools.imaging.prepared import PreparedImages, Task
from tools.imaging.recipes import RECIPES, prepare_volume
from tools.imaging.sources import DICOMWEB_SCHEME, LoadResult, load_dicomweb
from tools.imaging.volume import assemble
from tools.imaging_review.plan import ImagingKind, StudyEntry

__all__ = ["TASK_OF", "FetchedStudy", "fetch_and_prepare", "prepare_loaded"]

TASK_OF: Final = {ImagingKind.CXR: Task.CXR, ImagingKind.CT: Task.CT, ImagingKind.MRI: Task.MRI}


@dataclass(frozen=True, eq=False)
class FetchedStudy:
    prepared: PreparedImages
    notes: tuple[str, ...]  # e.g. instances that could not be read (ids and counts only)

    @property
    def series_uid(self) -> str:
        return self.prepared.metadata.series_uid


async def _series_on_server(client: DicomWebClient, study_uid: str, task: Task) -> str:
    """The lowest-numbered series of the task's modalities that the server holds for the study."""
    modalities = RECIPES[task].modalities
    found = [m for m in await client.search_series(study_uid) if (m.modality or "").upper() in modalities]
    if not found:
        raise SeriesSelectionError(f"{DICOMWEB_SCHEME}{study_uid}", f"no {'/'.join(modalities)} series")
    found.sort(
        key=lambda m: (m.series_number if m.series_number is not None else 2**31, m.series_instance_uid)
    )
    return found[0].series_instance_uid


def prepare_loaded(loaded: LoadResult, task: Task, study_uid: str, series_uid: str) -> PreparedImages:
    """The series `series_uid` among the loaded instances, prepared by the task's recipe (pure)."""
    source = f"{DICOMWEB_SCHEME}{study_uid}/{series_uid}"
    assembly = assemble(loaded.instances)
    volume = assembly.select(source, series_uid)
    return prepare_volume(task, volume, assembly, source=source)


async def fetch_and_prepare(
    client: DicomWebClient, study: StudyEntry, series_uid: str | None, kind: ImagingKind
) -> FetchedStudy:
    """Fetch and prepare one series of `study`; raises DicomWebError, DicomSourceError or ImagingError."""
    task = TASK_OF[kind]
    if study.study_uid is None:  # the plan skips such studies
        raise SeriesSelectionError(study.reference, "no StudyInstanceUID")
    series = series_uid or await _series_on_server(client, study.study_uid, task)
    loaded = await load_dicomweb(client, study.study_uid, series)
    prepared = await asyncio.to_thread(prepare_loaded, loaded, task, study.study_uid, series)
    notes = (
        (f"{len(loaded.failures)} instance(s) of series {series} could not be read",)
        if loaded.failures
        else ()
    )
    return FetchedStudy(prepared=prepared, notes=notes)
