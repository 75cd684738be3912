#!/usr/bin/env python3
"""Benchmark: MedGemma whole-slide patches, read at the 10X level vs one level-0 read per patch.

Writes a synthetic 40X slide (0.25 um/px, pyramid 1/4/16, H&E-like islands; default 32768 px
square, about 8 x 8 mm) with `agent.testbed.cohort.imaging.wsi_synth`, then prepares it twice through
OpenSlide, both from a warm page cache and with the same tissue mask and patch plan:

- ours (`tools.imaging.wsi.prepare_slide_file`): the level nearest 10X (1.0 um/px) is read
  directly, one region per run of adjacent patches, then cut into 896 x 896 patches;
- baseline (the naive approach): for every planned patch, `read_region` at level 0 of the
  3584 x 3584 px that the 10X patch covers, then a 4x box downsample to 896 x 896.

Both include opening the slide, the thumbnail, the tissue mask and the plan. The patches of the
two must agree (the 10X level is itself a box average of level 0, JPEG-compressed).

With `--dicomweb`, a second comparison over DICOMweb: a smaller synthetic slide (`--web-size`,
JPEG tiles at 0.5 um/px, levels 1/2/8) is dicomized and stored in a fresh embedded Orthanc, then
prepared through

- ours (`tools.imaging.wsi_web.prepare_slide_dicomweb`): wsidicom fed by the one async
  `DicomWebClient` (auth, retries, bounded concurrency) from a worker thread;
- baseline: wsidicom's own synchronous client (`WsiDicomWebClient.create_client`, dicomweb-client
  over requests), the path ChartAgent used before, without the configured credentials.

The two must give the same patches (same JPEG frames, no transcoding).

    .venv/bin/python bench/bench_wsi_patches.py [--size 32768] [--islands 9] [--repeats 3] [--slide PATH]
        [--dicomweb [--web-size 12288]]

Last line: `bench wsi-patches: <ratio>x (<ours> vs <baseline>)`, ratio = baseline / ours; with
`--dicomweb` then `bench wsi-dicomweb: <ratio>x (<ours> vs <baseline>)`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom.uid import UID, generate_uid

from agent.testbed.cohort.imaging.wsi_synth import dicomize, make_slide_tiff
from agent.testbed.stack import OrthancServer, OrthancSpec
from agent.testbed.stack.ports import free_port
from tools.imaging.dicomweb import DicomWebClient
from tools.imaging.tissue import tissue_mask
from tools.imaging.wsi import (
    WEB_TRANSFER_SYNTAXES,
    OpenSlideReader,
    PatchPlan,
    PreparedSlide,
    WsiDicomReader,
    choose_mask_level,
    plan_patches,
    prepare_slide,
    prepare_slide_file,
)
from tools.imaging.wsi_web import prepare_slide_dicomweb


def naive_patches(path: Path) -> tuple[PatchPlan, npt.NDArray[np.uint8]]:
    """Same mask and plan as ours, then one level-0 read per patch and a downsample."""
    reader = OpenSlideReader(path)
    try:
        levels = reader.levels()
        mask_level, factor = choose_mask_level(levels)
        thumb = reader.read(mask_level, 0, 0, mask_level.width, mask_level.height)
        if factor > 1:
            thumb = np.asarray(Image.fromarray(thumb).reduce(factor))
        mask = tissue_mask(thumb, mpp=mask_level.mpp * factor)
        plan = plan_patches(levels, mask.mask, mask_level.downsample * factor, origin=str(path))
        base = levels[0]
        scale = round(plan.level.downsample)
        side = 896 * scale
        images = np.empty((len(plan.patches), 896, 896, 3), dtype=np.uint8)
        for i, patch in enumerate(plan.patches):
            region = reader.read(base, patch.x0, patch.y0, side, side)
            images[i] = np.asarray(Image.fromarray(region).reduce(scale))
        return plan, images
    finally:
        reader.close()


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs


def run(slide: Path, repeats: int) -> None:
    ours = prepare_slide_file(slide)
    plan, naive = naive_patches(slide)
    meta = ours.metadata
    assert [(p.row, p.col) for p in meta.patches] == [(p.row, p.col) for p in plan.patches], "plans differ"
    diff = np.abs(ours.images.astype(np.int16) - naive.astype(np.int16))
    print(
        f"level {meta.level} at {meta.level_mpp:g} um/px, grid {meta.grid[0]}x{meta.grid[1]}, "
        f"{meta.candidates} tissue patches, {len(meta.patches)} prepared; "
        f"ours vs naive pixels: mean |diff| {diff.mean():.2f}, max {int(diff.max())}"
    )
    side0 = round(meta.patches[0].size0)
    print(
        f"pixels read per patch: ours 896x896 at level {meta.level}, "
        f"naive {side0}x{side0} at level 0 ({(side0 / 896) ** 2:.0f}x as many)"
    )
    t_ours, runs_ours = timed(lambda: prepare_slide_file(slide), repeats)
    t_base, runs_base = timed(lambda: naive_patches(slide), repeats)
    print(f"ours     {t_ours:.3f} s median, runs {[round(r, 3) for r in runs_ours]}")
    print(f"baseline {t_base:.3f} s median, runs {[round(r, 3) for r in runs_base]}")
    print(f"bench wsi-patches: {t_base / t_ours:.1f}x ({t_ours:.3f} s vs {t_base:.3f} s)")


def library_client_slide(url: str, study: str, series: str) -> PreparedSlide:
    """The baseline: wsidicom's own synchronous DICOMweb client (dicomweb-client over requests)."""
    from wsidicom import WsiDicom, WsiDicomWebClient

    client = WsiDicomWebClient.create_client(url)
    wsi = WsiDicom.open_web(
        client, study, series, requested_transfer_syntax=[UID(t) for t in WEB_TRANSFER_SYNTAXES]
    )
    reader = WsiDicomReader(wsi, url)
    try:
        return prepare_slide(reader, study_uid=study, series_uid=series)
    finally:
        reader.close()


def ours_slide(url: str, study: str, series: str) -> PreparedSlide:
    async def run() -> PreparedSlide:
        async with DicomWebClient(url) as client:
            return await prepare_slide_dicomweb(client, study, series)

    return asyncio.run(run())


def run_dicomweb(tmp: Path, size: int, repeats: int) -> None:
    slide = make_slide_tiff(
        tmp / "web.tif", seed=3, size=(size, size * 2 // 3), mpp=0.5, downsamples=(1, 2, 8), n_islands=4
    )
    study, series = str(generate_uid()), str(generate_uid())
    files = dicomize(slide.path, tmp / "dcm", patient_id="bench-wsi", study_uid=study, series_uid=series)
    server = OrthancServer(OrthancSpec(port=free_port(), state_dir=tmp / "orthanc"))
    server.start()
    try:
        url = server.dicomweb_url

        async def store() -> None:
            async with DicomWebClient(url) as client:
                assert (await client.store(f.read_bytes() for f in files)).ok

        asyncio.run(store())
        ours, base = ours_slide(url, study, series), library_client_slide(url, study, series)
        assert np.array_equal(ours.images, base.images), "patches differ"
        print(
            f"DICOMweb slide {size}x{size * 2 // 3} px at 0.5 um/px, {len(files)} instances; "
            f"{len(ours.metadata.patches)} patches, identical both ways"
        )
        t_ours, runs_ours = timed(lambda: ours_slide(url, study, series), repeats)
        t_base, runs_base = timed(lambda: library_client_slide(url, study, series), repeats)
    finally:
        server.stop()
    print(f"ours (async DicomWebClient)      {t_ours:.3f} s median, runs {[round(r, 3) for r in runs_ours]}")
    print(f"baseline (wsidicom's own client) {t_base:.3f} s median, runs {[round(r, 3) for r in runs_base]}")
    print(f"bench wsi-dicomweb: {t_base / t_ours:.1f}x ({t_ours:.3f} s vs {t_base:.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=int, default=32768, help="level-0 width and height in pixels")
    parser.add_argument("--islands", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slide", type=Path, help="reuse this slide file (written there if missing)")
    parser.add_argument("--dicomweb", action="store_true", help="also compare the DICOMweb readers")
    parser.add_argument("--web-size", type=int, default=12288, help="level-0 width of the DICOMweb slide")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-wsi-") as tmp:
        slide = args.slide or Path(tmp) / "slide.tif"
        if not slide.exists():
            start = time.perf_counter()
            make_slide_tiff(
                slide,
                seed=7,
                size=(args.size, args.size),
                mpp=0.25,
                downsamples=(1, 4, 16),
                n_islands=args.islands,
            )
            print(
                f"synthetic slide {args.size}x{args.size} at 0.25 um/px (40X), levels 1/4/16: "
                f"{slide.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - start:.1f} s"
            )
        run(slide, args.repeats)
        if args.dicomweb:
            run_dicomweb(Path(tmp), args.web_size, args.repeats)


if __name__ == "__main__":
    main()
