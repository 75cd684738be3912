"""Imaging inputs prepared for a task, from any source: one async entry point per source kind.

    await prepare_folder(path, task)                   a folder of DICOM files (or one DICOM WSI series)
    await prepare_file(path, task)                     one DICOM file, or a slide file OpenSlide reads
    await prepare_dicomweb(ref, task, client=client)   `dicomweb:STUDY[/SERIES]` on the client's server
    await prepare(source, task, dicomweb=client)       any of them (a `Source` or its CLI text)

Each returns a `Preparation`: the prepared series (`PreparedImages` for CT, MRI and chest X-ray,
`PreparedSlide` for whole-slide images) with what was selected (study, series and instance UIDs,
and the rule of `tools.imaging.selection` that chose the series, for citations), plus the inputs
that could not be used and the non-image objects skipped. `Preparation.one()` is the prepared
series or the error that explains why there is none.

Batch rules (CT, MRI, chest X-ray): a file that cannot be read, or a series that cannot be
prepared, is a failure naming it; the others are still prepared. Errors about the source as a
whole (no such folder, the DICOMweb server refusing) are raised. Which series: the policy of
`tools.imaging.selection`, with the caller's `several`; when it refuses, the refusal is kept in
`Preparation.problem` next to the failures that explain it. Whole-slide images are one series
each: any error is raised.

CPU-bound preparation runs in a worker thread; the event loop stays free.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tools.imaging.dicomweb import DicomWebClient
from tools.imaging.errors import ImagingError
from tools.imaging.prepared import PreparedImages, Task
from tools.imaging.recipes import prepare_volume
from tools.imaging.selection import ImagingTask, SeriesCandidate, SeriesChoice, Several, select_series
from tools.imaging.sources import (
    DicomSourceError,
    DicomWebRef,
    FileSource,
    FolderSource,
    LoadResult,
    Source,
    load_source,
    parse_source,
)
from tools.imaging.volume import Assembly, SkippedObject, Volume, assemble
from tools.imaging.wsi import PreparedSlide, prepare_slide_dicom, prepare_slide_file
from tools.imaging.wsi_web import prepare_slide_dicomweb

__all__ = [
    "InputFailure",
    "Preparation",
    "PreparedSeries",
    "Selected",
    "prepare",
    "prepare_dicomweb",
    "prepare_file",
    "prepare_folder",
]


class Selected(BaseModel):
    """What a prepared series is, for citations: UIDs and the selection rule that chose it."""

    model_config = ConfigDict(frozen=True)

    study_uid: str | None
    series_uid: str | None
    instance_uids: tuple[str, ...] = ()  # the SOP instances of the prepared images (CT, MRI, CXR)
    rule: str
    candidates: tuple[str, ...] = ()  # the series the choice was made among, in rank order


@dataclass(frozen=True, eq=False)
class PreparedSeries:
    task: ImagingTask
    source: str
    prepared: PreparedImages | PreparedSlide = field(repr=False)
    selected: Selected

    @property
    def images(self) -> PreparedImages:
        """The CT, MRI or chest X-ray images; an error for a slide."""
        if not isinstance(self.prepared, PreparedImages):
            raise TypeError(f"{self.task.value}: a slide, not series images")
        return self.prepared

    @property
    def slide(self) -> PreparedSlide:
        if not isinstance(self.prepared, PreparedSlide):
            raise TypeError(f"{self.task.value}: series images, not a slide")
        return self.prepared


@dataclass(frozen=True)
class InputFailure:
    """An input (a file, an instance, a series) that gave nothing, and why."""

    input: str
    reason: str
    kind: Literal["input", "series"] = "input"  # a file or instance not read; a series not assembled/prepared
    error: ImagingError | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Preparation:
    prepared: tuple[PreparedSeries, ...] = ()
    failures: tuple[
        InputFailure, ...
    ] = ()  # unreadable inputs, series that could not be assembled or prepared
    skipped: tuple[SkippedObject, ...] = ()  # non-image objects (SR, SEG, ...): not an error
    problem: ImagingError | None = field(default=None, repr=False)  # why no series was selected

    def one(self) -> PreparedSeries:
        """The (first) prepared series, else the error that explains why none was."""
        if self.prepared:
            return self.prepared[0]
        if self.problem is not None:
            raise self.problem
        for failure in self.failures:
            if failure.error is not None:
                raise failure.error
        raise ImagingError("nothing was prepared")  # pragma: no cover  (a selection always decides)


# ---------------------------------------------------------------------------- CT, MRI, chest X-ray


def _volume_choice(
    assembly: Assembly, task: ImagingTask, source: str, series: str | None, several: Several
) -> SeriesChoice:
    if series is not None and series not in assembly.series_uids():
        assembly.select(source, series)  # raises: a series that failed to assemble, or none such
    if not assembly.volumes:
        assembly.select(source)  # raises: no usable image series, with the reasons
    candidates = [SeriesCandidate.from_volume(v) for v in assembly.volumes]
    return select_series(candidates, task, source=source, requested=series, several=several)


def _selected(volume: Volume, prepared: PreparedImages, choice: SeriesChoice) -> Selected:
    first = volume.slices[0].dataset if volume.slices else None
    study = str(first.get("StudyInstanceUID", "") or "") or None if first is not None else None
    instances = dict.fromkeys(
        str(volume.slices[s.index].dataset.get("SOPInstanceUID", "")) for s in prepared.metadata.slices
    )
    return Selected(
        study_uid=study,
        series_uid=volume.series_uid,
        instance_uids=tuple(uid for uid in instances if uid),
        rule=choice.rule,
        candidates=tuple(c.uid for c in choice.candidates),
    )


async def _prepare_volumes(
    loaded: LoadResult,
    task: ImagingTask,
    source: str,
    series: str | None,
    several: Several,
    listed: SeriesChoice | None = None,
) -> Preparation:
    """Assemble, select and prepare; `listed` is a choice already made on the server's listing."""
    failures = [InputFailure(f.origin, f.reason) for f in loaded.failures]
    assembly = await asyncio.to_thread(assemble, loaded.instances)
    failures += [InputFailure(f"series {f.series_uid}", f.reason, kind="series") for f in assembly.failures]
    if listed is not None:  # only the listed choice was loaded: each of its series must be there
        several = Several.ALL if len(listed.chosen) > 1 else several
        series = listed.first.uid if len(listed.chosen) == 1 else None
    try:
        choice = _volume_choice(assembly, task, source, series, several)
    except ImagingError as exc:
        return Preparation(failures=tuple(failures), skipped=assembly.skipped, problem=exc)
    by_uid = {v.series_uid: v for v in assembly.volumes}
    done: list[PreparedSeries] = []
    for uid in choice.uids:
        volume = by_uid[uid]
        try:
            prepared = await asyncio.to_thread(
                prepare_volume, Task(task.value), volume, assembly, source=source
            )
        except ImagingError as exc:
            failures.append(InputFailure(f"series {uid}", str(exc), kind="series", error=exc))
            continue
        done.append(PreparedSeries(task, source, prepared, _selected(volume, prepared, listed or choice)))
    return Preparation(tuple(done), tuple(failures), assembly.skipped)


async def _volumes_dicomweb(
    ref: DicomWebRef,
    task: ImagingTask,
    client: DicomWebClient,
    series: str | None,
    several: Several,
    label: str | None,
) -> Preparation:
    if ref.series_uid is not None:  # the series named in the reference is retrieved, then checked
        loaded = await load_source(ref, client=client)
        return await _prepare_volumes(loaded, task, label or str(ref), series, several)
    # A study: the policy chooses on the server's series list (QIDO-RS); only the chosen are retrieved.
    found = await client.search_series(ref.study_uid)
    try:
        listed = select_series(
            [SeriesCandidate.from_qido(m) for m in found],
            task,
            source=label or str(ref),
            requested=series,
            several=several,
        )
    except ImagingError as exc:
        return Preparation(problem=exc)
    loaded = LoadResult()
    for uid in listed.uids:
        loaded += await load_source(DicomWebRef(study_uid=ref.study_uid, series_uid=uid), client=client)
    one = len(listed.uids) == 1
    source = label or (f"dicomweb:{ref.study_uid}/{listed.first.uid}" if one else str(ref))
    return await _prepare_volumes(loaded, task, source, None, several, listed)


# ---------------------------------------------------------------------------- whole-slide images


def _slide(source: str, slide: PreparedSlide, rule: str, candidates: tuple[str, ...] = ()) -> Preparation:
    meta = slide.metadata
    selected = Selected(
        study_uid=meta.study_uid, series_uid=meta.series_uid, rule=rule, candidates=candidates
    )
    return Preparation(prepared=(PreparedSeries(ImagingTask.WSI, source, slide, selected),))


async def _slide_dicomweb(
    ref: DicomWebRef, client: DicomWebClient, series: str | None, several: Several
) -> Preparation:
    found = await client.search_series(ref.study_uid)
    choice = select_series(
        [SeriesCandidate.from_qido(m) for m in found],
        ImagingTask.WSI,
        source=f"dicomweb:{ref.study_uid}",
        requested=series or ref.series_uid,
        several=Several.REFUSE if several is Several.ALL else several,
    )
    slide = await prepare_slide_dicomweb(client, ref.study_uid, choice.first.uid)
    return _slide(str(ref), slide, choice.rule, tuple(c.uid for c in choice.candidates))


# ---------------------------------------------------------------------------- entry points


async def prepare_folder(
    path: Path,
    task: ImagingTask,
    *,
    series: str | None = None,
    several: Several = Several.FIRST,
    label: str | None = None,
) -> Preparation:
    """The task's series among the DICOM files under `path`; for WSI, the DICOM WSI series in `path`.

    `label` names the source in the metadata and errors (default: the path).
    """
    source = label or str(path)
    if task is ImagingTask.WSI:
        slide = await asyncio.to_thread(prepare_slide_dicom, path)
        return _slide(source, slide, "the folder's series")
    loaded = await load_source(FolderSource(path=path))
    return await _prepare_volumes(loaded, task, source, series, several)


async def prepare_file(
    path: Path, task: ImagingTask, *, series: str | None = None, label: str | None = None
) -> Preparation:
    """One DICOM file (CT, MRI, chest X-ray), or for WSI a slide file OpenSlide reads (TIFF, SVS, ...)."""
    source = label or str(path)
    if task is ImagingTask.WSI:
        slide = await asyncio.to_thread(prepare_slide_file, path)
        return _slide(source, slide, "the slide file")
    loaded = await load_source(FileSource(path=path))
    return await _prepare_volumes(loaded, task, source, series, Several.FIRST)


async def prepare_dicomweb(
    ref: DicomWebRef,
    task: ImagingTask,
    *,
    client: DicomWebClient,
    series: str | None = None,
    several: Several = Several.FIRST,
    label: str | None = None,
) -> Preparation:
    """`dicomweb:STUDY[/SERIES]` from `client`'s server (its auth, retries and limits, frames included).

    CT, MRI and chest X-ray: the study's series (or the one named) are retrieved, then selected.
    WSI: the study's series are listed (QIDO-RS) and selected, then the slide is read tile by tile.
    """
    if task is ImagingTask.WSI:
        return await _slide_dicomweb(ref, client, series, several)
    return await _volumes_dicomweb(ref, task, client, series, several, label)


async def prepare(
    source: Source | str,
    task: ImagingTask,
    *,
    dicomweb: DicomWebClient | None = None,
    series: str | None = None,
    several: Several = Several.FIRST,
) -> Preparation:
    """Any source (a `Source`, or CLI text: a path or `dicomweb:STUDY[/SERIES]`) prepared for `task`.

    A DICOMweb source needs `dicomweb`, the client of the configured server; the source text goes
    to errors as given.
    """
    parsed = parse_source(source) if isinstance(source, str) else source
    label = source if isinstance(source, str) else None
    if isinstance(parsed, DicomWebRef):
        if dicomweb is None:
            raise DicomSourceError(str(parsed), "a DICOMweb source needs a DICOMweb server (client)")
        return await prepare_dicomweb(
            parsed, task, client=dicomweb, series=series, several=several, label=label
        )
    if isinstance(parsed, FolderSource):
        return await prepare_folder(parsed.path, task, series=series, several=several, label=label)
    return await prepare_file(parsed.path, task, series=series, label=label)
