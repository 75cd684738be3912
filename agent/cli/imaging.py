"""`chartagent imaging prepare {ct,mri,cxr,wsi} SOURCE --out FILE.npz` and `chartagent imaging overlay`.

A whole-slide SOURCE is a slide file OpenSlide reads (TIFF, SVS...), a folder holding one DICOM
WSI series, or `dicomweb:STUDY[/SERIES]` (without SERIES: the study's only SM series).

Batch rules for `prepare` (a folder or a DICOMweb study can hold several series and bad files):
- Files that cannot be read, and series that cannot be prepared, are listed with the reason; the
  good series are still prepared. The exit code is then 1.
- Objects that are not images (SR, SEG, KO, PR, RTSTRUCT...) are skipped and listed; not an error.
- The series is the one named by `--series`, else the only series of the task's modality
  (a CT task ignores an MR series beside it). With several candidates, the command lists them
  (in the selection policy's order) and exits 2, unless `--all-series` asks for every candidate:
  `--out` is then a folder that gets one `<SeriesInstanceUID>.npz` per series.
- Nothing prepared at all (no such series, wrong modality, every file bad): exit 2.

The work is `tools.imaging.prepare` (the entry point the agent and the review use too) and the
series-selection policy of `tools.imaging.selection` (with `Several.REFUSE`: a person can name
the series); this module parses options, calls them and prints.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from agent.cli.app import app
from agent.cli.options import resolve_dicomweb_url

# Imaging code (numpy, pydicom, wsidicom) is imported by the commands that run it: `--help` stays fast.
if TYPE_CHECKING:
    import numpy as np

    from tools.imaging.geometry import Padding
    from tools.imaging.prepare import Preparation, PreparedSeries
    from tools.imaging.selection import Several
    from tools.imaging.volume import SkippedObject

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


def prepare_source(
    source: str, task: TaskName, series: str | None, several: Several, dicomweb_url: str | None
) -> Preparation:
    """`tools.imaging.prepare.prepare` on a CLI SOURCE, with the configured DICOMweb client when needed.

    Raises the tools' errors (ImagingError, DicomSourceError, DicomWebError); the callers say them.
    """
    from agent.connections import open_dicomweb_client
    from tools.imaging.prepare import prepare
    from tools.imaging.selection import ImagingTask
    from tools.imaging.sources import DicomSourceError, DicomWebRef, parse_source

    parsed = parse_source(source)
    if not isinstance(parsed, DicomWebRef):
        return asyncio.run(prepare(source, ImagingTask(task.value), series=series, several=several))
    url = resolve_dicomweb_url(dicomweb_url)
    if url is None:
        raise DicomSourceError(
            str(parsed),
            "no DICOMweb server: pass --dicomweb-url, set CHARTAGENT_DICOMWEB_URL, "
            "or run `chartagent stack up`",
        )

    async def run() -> Preparation:
        async with open_dicomweb_client(url) as client:
            return await prepare(
                source, ImagingTask(task.value), dicomweb=client, series=series, several=several
            )

    return asyncio.run(run())


def prepared_or_fail(
    source: str, task: TaskName, series: str | None, several: Several, dicomweb_url: str | None
) -> Preparation:
    from tools.imaging.dicomweb import DicomWebError
    from tools.imaging.errors import ImagingError
    from tools.imaging.sources import DicomSourceError

    try:
        return prepare_source(source, task, series, several, dicomweb_url)
    except (ImagingError, DicomSourceError, DicomWebError) as exc:
        fail(str(exc))


def summary(done: PreparedSeries, path: Path) -> dict[str, Any]:
    prepared = done.images
    return {
        "series_uid": prepared.metadata.series_uid,
        "out": str(path),
        "shape": list(prepared.images.shape),
        "metadata": prepared.metadata.model_dump(mode="json"),
    }


def report(
    as_json: bool,
    done: list[tuple[PreparedSeries, Path]],
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
    for series, path in done:
        meta = series.images.metadata
        n, h, w, _ = series.images.images.shape
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
    from tools.imaging.selection import Several

    if series is not None and all_series:
        fail("--series and --all-series exclude each other")
    if task is TaskName.wsi:
        prepare_wsi(source, out, series, as_json, dicomweb_url)
        return
    several = Several.ALL if all_series else Several.REFUSE
    result = prepared_or_fail(source, task, series, several, dicomweb_url)
    failures = [{"input": f.input, "reason": f.reason} for f in result.failures]
    if result.problem is not None:
        report(as_json, [], failures, result.skipped)
        fail(str(result.problem))
    if all_series:
        out.mkdir(parents=True, exist_ok=True)
    done: list[tuple[PreparedSeries, Path]] = []
    for prepared in result.prepared:
        path = out / f"{prepared.images.metadata.series_uid}.npz" if all_series else out
        try:
            prepared.images.save_npz(path)
        except OSError as exc:
            fail(f"{path}: cannot write ({exc.strerror or exc})")
        done.append((prepared, path))
    report(as_json, done, failures, result.skipped)
    if not done:
        raise typer.Exit(2)
    if failures:
        raise typer.Exit(1)


def prepare_wsi(source: str, out: Path, series: str | None, as_json: bool, dicomweb_url: str | None) -> None:
    from tools.imaging.selection import Several

    prepared = prepared_or_fail(source, TaskName.wsi, series, Several.REFUSE, dicomweb_url).one().slide
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
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from tools.imaging.errors import ImagingError
    from tools.imaging.geometry import Padding
    from tools.imaging.prepared import load_npz

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
    from tools.imaging.errors import ImagingError
    from tools.imaging.overlay import draw_boxes, parse_boxes

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


__all__ = ["TaskName", "imaging_app", "prepare_source", "resolve_dicomweb_url"]
