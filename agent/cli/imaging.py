"""`chartagent imaging prepare {ct,mri,cxr,wsi} SOURCE --out FILE.npz` and `chartagent imaging overlay`.

A whole-slide SOURCE is a slide file OpenSlide reads (TIFF, SVS...), a folder holding one DICOM
WSI series, or `dicomweb:STUDY[/SERIES]` (without SERIES: the study's only SM series).

Batch rules for `prepare` (a folder or a DICOMweb study can hold several series and bad files):
- Files that cannot be read, and series that cannot be prepared, are listed with the reason; the
  good series are still prepared. The exit code is then 1.
- Objects that are not images (SR, SEG, KO, PR, RTSTRUCT...) are skipped and listed; not an error.
- The series is the one named by `--series`, else the only series of the task's modality
  (a CT task ignores an MR series beside it). With several candidates, the command lists them and
  exits 2, unless `--all-series` asks for every candidate: `--out` is then a folder that gets one
  `<SeriesInstanceUID>.npz` per series.
- Nothing prepared at all (no such series, wrong modality, every file bad): exit 2.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import typer
from PIL import Image, UnidentifiedImageError

from agent.cli.app import app
from agent.cli.options import resolve_dicomweb_url
from agent.connections import open_dicomweb_client
from tools.imaging.dicomweb import DicomWebError
from tools.imaging.errors import ImagingError, SeriesSelectionError, WrongModalityError
from tools.imaging.geometry import Padding
from tools.imaging.overlay import draw_boxes, parse_boxes
from tools.imaging.prepared import PreparedImages, Task, load_npz
from tools.imaging.recipes import RECIPES, Preparer, prepare_volume
from tools.imaging.sources import (
    DicomSourceError,
    DicomWebRef,
    FolderSource,
    LoadResult,
    Source,
    load_source,
    parse_source,
)
from tools.imaging.volume import Assembly, SkippedObject, Volume, assemble
from tools.imaging.wsi import PreparedSlide, prepare_slide_dicom, prepare_slide_dicomweb, prepare_slide_file

imaging_app = typer.Typer(
    help="Prepare CT, MRI, chest X-ray and whole-slide images for MedGemma; draw boxes.", no_args_is_help=True
)
app.add_typer(imaging_app, name="imaging")


# Plain text: rich markup would read "[/SERIES_UID]" as a closing tag.
SOURCE_HELP = "a folder, a file, or dicomweb:STUDY_UID or dicomweb:STUDY_UID/SERIES_UID"


class TaskName(StrEnum):
    ct = "ct"
    mri = "mri"
    cxr = "cxr"
    wsi = "wsi"


# The recipes live in tools.imaging.recipes (shared with the imaging review); this view keys them by command.
TASKS: dict[TaskName, tuple[Preparer, tuple[str, ...]]] = {
    TaskName(task.value): (recipe.prepare, recipe.modalities) for task, recipe in RECIPES.items()
}


async def load(source: Source, dicomweb_url: str | None) -> LoadResult:
    if not isinstance(source, DicomWebRef):
        return await load_source(source)
    if dicomweb_url is None:
        raise DicomSourceError(
            str(source),
            "no DICOMweb server: pass --dicomweb-url, set CHARTAGENT_DICOMWEB_URL, "
            "or run `chartagent stack up`",
        )
    async with open_dicomweb_client(dicomweb_url) as client:
        return await load_source(source, client=client)


def candidates(assembly: Assembly, modalities: Sequence[str]) -> list[Volume]:
    return [v for v in assembly.volumes if v.modality in modalities]


def choose(
    assembly: Assembly, task: TaskName, source: str, series: str | None, all_series: bool
) -> list[Volume]:
    """The volumes to prepare under the batch rules in the module docstring."""
    _, modalities = TASKS[task]
    if series is not None:
        volume = assembly.select(source, series)
        volume.require_modality(task.value, modalities)
        return [volume]
    found = candidates(assembly, modalities)
    if all_series and found:
        return found
    if len(found) == 1:
        return found
    if len(found) > 1:
        raise SeriesSelectionError(
            source,
            f"{len(found)} {'/'.join(modalities)} series; choose one with --series or pass --all-series",
            tuple(v.series_uid for v in found),
        )
    others = [v for v in assembly.volumes if v.modality not in modalities]
    if others:
        v = others[0]
        if len(others) == 1:
            raise WrongModalityError(v.series_uid, v.modality, task.value, modalities)
        listed = tuple(f"{o.series_uid} ({o.modality})" for o in others)
        raise SeriesSelectionError(source, f"no {'/'.join(modalities)} series; found", listed)
    return [assembly.select(source)]  # raises: no usable series, with the reasons


def output_path(out: Path, volume: Volume, batch: bool) -> Path:
    return out / f"{volume.series_uid}.npz" if batch else out


def summary(prepared: PreparedImages, path: Path) -> dict[str, Any]:
    return {
        "series_uid": prepared.metadata.series_uid,
        "out": str(path),
        "shape": list(prepared.images.shape),
        "metadata": prepared.metadata.model_dump(mode="json"),
    }


def report(
    as_json: bool,
    done: list[tuple[PreparedImages, Path]],
    failures: list[dict[str, str]],
    skipped: Sequence[SkippedObject],
) -> None:
    if as_json:
        payload = {
            "prepared": [summary(p, path) for p, path in done],
            "failures": failures,
            "skipped": [s.model_dump(mode="json") for s in skipped],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    for prepared, path in done:
        meta = prepared.metadata
        n, h, w, _ = prepared.images.shape
        typer.echo(
            f"{meta.task} series {meta.series_uid}: {n} image(s) {h}x{w} "
            f"from {meta.series_slices} slice(s) -> {path}"
        )
        for warning in meta.warnings:
            typer.secho(f"  warning: {warning}", fg="yellow", err=True)
    for s in skipped:
        typer.echo(f"skipped {s.origin}: {s.reason}", err=True)
    for f in failures:
        typer.secho(f"failed {f['input']}: {f['reason']}", fg="red", err=True)


@imaging_app.command("prepare")
def prepare_command(
    task: Annotated[TaskName, typer.Argument(help="ct, mri, cxr or wsi")],
    source: Annotated[str, typer.Argument(help=SOURCE_HELP)],
    out: Annotated[Path, typer.Option("--out", help="the .npz to write (a folder with --all-series)")],
    series: Annotated[str | None, typer.Option("--series", help="SeriesInstanceUID to prepare")] = None,
    all_series: Annotated[
        bool, typer.Option("--all-series", help="prepare every series of the task's modality")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON report")] = False,
    dicomweb_url: Annotated[
        str | None, typer.Option("--dicomweb-url", help="DICOMweb base URL (or CHARTAGENT_DICOMWEB_URL)")
    ] = None,
) -> None:
    """Prepare images exactly as MedGemma's recipe feeds them, with the record of how."""
    if series is not None and all_series:
        fail("--series and --all-series exclude each other")
    if task is TaskName.wsi:
        prepare_wsi(source, out, series, as_json, dicomweb_url)
        return
    try:
        parsed = parse_source(source)
        url = resolve_dicomweb_url(dicomweb_url) if isinstance(parsed, DicomWebRef) else None
        loaded = asyncio.run(load(parsed, url))
    except (DicomSourceError, DicomWebError) as exc:
        fail(str(exc))
    failures = [{"input": f.origin, "reason": f.reason} for f in loaded.failures]
    assembly = assemble(loaded.instances)
    failures += [{"input": f"series {f.series_uid}", "reason": f.reason} for f in assembly.failures]
    try:
        volumes = choose(assembly, task, source, series, all_series)
    except ImagingError as exc:
        report(as_json, [], failures, assembly.skipped)
        fail(str(exc))
    batch = all_series
    if batch:
        out.mkdir(parents=True, exist_ok=True)
    done: list[tuple[PreparedImages, Path]] = []
    for volume in volumes:
        try:
            prepared = prepare_volume(Task(task.value), volume, assembly, source=source)
        except ImagingError as exc:
            failures.append({"input": f"series {volume.series_uid}", "reason": str(exc)})
            continue
        path = output_path(out, volume, batch)
        try:
            prepared.save_npz(path)
        except OSError as exc:
            fail(f"{path}: cannot write ({exc.strerror or exc})")
        done.append((prepared, path))
    report(as_json, done, failures, assembly.skipped)
    if not done:
        raise typer.Exit(2)
    if failures:
        raise typer.Exit(1)


async def sm_series(dicomweb_url: str, study_uid: str) -> str:
    """The study's only slide-microscopy series."""
    async with open_dicomweb_client(dicomweb_url) as client:
        found = await client.search_series(study_uid, {"Modality": "SM"})
    if len(found) != 1:
        listed = tuple(s.series_instance_uid for s in found)
        raise SeriesSelectionError(f"dicomweb:{study_uid}", f"{len(found)} SM series; choose one", listed)
    return found[0].series_instance_uid


def load_slide(source: str, series: str | None, dicomweb_url: str | None) -> PreparedSlide:
    """Whole-slide patches from a slide file, a DICOM WSI folder or `dicomweb:STUDY[/SERIES]`."""
    try:
        parsed = parse_source(source)
        if isinstance(parsed, DicomWebRef):
            url = resolve_dicomweb_url(dicomweb_url)
            if url is None:
                fail("no DICOMweb server: pass --dicomweb-url, set CHARTAGENT_DICOMWEB_URL or `stack up`")
            series_uid = series or parsed.series_uid or asyncio.run(sm_series(url, parsed.study_uid))
            return prepare_slide_dicomweb(url, parsed.study_uid, series_uid)
        if isinstance(parsed, FolderSource):
            return prepare_slide_dicom(parsed.path)
        return prepare_slide_file(parsed.path)
    except (ImagingError, DicomSourceError, DicomWebError) as exc:
        fail(str(exc))


def prepare_wsi(source: str, out: Path, series: str | None, as_json: bool, dicomweb_url: str | None) -> None:
    prepared = load_slide(source, series, dicomweb_url)
    try:
        prepared.save_npz(out)
    except OSError as exc:
        fail(f"{out}: cannot write ({exc.strerror or exc})")
    meta = prepared.metadata
    if as_json:
        payload = {
            "out": str(out),
            "shape": list(prepared.images.shape),
            "metadata": meta.model_dump(mode="json"),
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(
        f"wsi {meta.series_uid or source}: {prepared.images.shape[0]} patches of 896x896 "
        f"at level {meta.level} ({meta.level_mpp:.2f} um/px) -> {out}"
    )
    for warning in meta.warnings:
        typer.secho(f"  warning: {warning}", fg="yellow", err=True)


def read_image(path: Path) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], Padding]:
    """The first prepared image (padding cut away) or a PNG/JPEG as it is."""
    if path.suffix.lower() == ".npz":
        prepared = load_npz(path)
        image = prepared.images[0]
        padding = prepared.metadata.padding
        if padding is None:
            return image, Padding.centred(image.shape[0], image.shape[1])
        rows = slice(padding.top, padding.top + padding.height)
        cols = slice(padding.left, padding.left + padding.width)
        original = image[rows, cols]
        return original, padding
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise ImagingError(f"{path}: not a readable image ({exc})") from exc
    return array, Padding.centred(array.shape[0], array.shape[1])


@imaging_app.command("overlay")
def overlay_command(
    image: Annotated[Path, typer.Argument(help="a .npz from `imaging prepare` (first image) or a PNG")],
    boxes: Annotated[
        str,
        typer.Option("--boxes", help='JSON (or a JSON file): [{"box": [y0, x0, y1, x1], "label": "..."}]'),
    ],
    out: Annotated[Path, typer.Option("--out", help="the PNG to write")],
) -> None:
    """Draw labelled boxes (original pixel coordinates, or model `box_2d`) on an image."""
    try:
        inline = boxes.lstrip().startswith(("[", "{"))
        text = Path(boxes).read_text() if not inline and Path(boxes).is_file() else boxes
        array, padding = read_image(image)
        parsed = parse_boxes(text, padding)
        draw_boxes(array, parsed).save(out, format="PNG")
    except ImagingError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{out}: cannot write ({exc.strerror or exc})")
    typer.echo(f"{len(parsed)} box(es) drawn on {image} -> {out}")


def fail(message: str) -> NoReturn:
    typer.secho(message, fg="red", err=True)
    sys.stderr.flush()
    raise typer.Exit(2)


__all__ = ["TaskName", "choose", "imaging_app", "resolve_dicomweb_url"]
