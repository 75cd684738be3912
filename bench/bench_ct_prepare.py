#!/usr/bin/env python3
"""Benchmark: preparing a 300-slice 512x512 CT for MedGemma, ours vs Google's notebook recipe.

A synthetic series (a body-like phantom in HU, int16, rescale intercept -1024) is written to a temp
folder and read once to warm the page cache. Both sides start from that folder and end with the 85
windowed RGB slices in memory:

- baseline, the notebook: read every header, sort by InstanceNumber, sample 85, then per slice a
  full read, `apply_rescale`, the three float windows, round to uint8, PIL JPEG encode and base64
  (what the notebook sends to the model);
- ours, the headline: what `chartagent imaging prepare ct FOLDER` runs (`tools.imaging.prepare.
  prepare_folder`: load, assemble, the series-selection policy, `prepare_ct`), short of writing
  the .npz. Headers are read by sources' own reader with pixel data left in the files; only the
  85 sampled slices' pixels are read, straight into arrays, and windowed through a packed lookup
  table (by worker threads where CPUs are to spare: one fewer than the CPUs, at most
  `tools.imaging.ct.MAX_WORKERS`; serially on two CPUs);
- ours with every file read whole (`load_folder(defer_pixels=False)`, the CLI's reads before), to
  show what deferring the pixel data buys.

Ours is checked to be bit-identical to the notebook's uint8 slices before any timing. Each figure
is the best of `--repeats` rounds; a round runs every side once, in turn, so that a shared
machine's changing load meets all of them alike.

    .venv/bin/python bench/bench_ct_prepare.py [--slices 300] [--size 512] [--repeats 7]

Last line: `bench ct-prepare: <ratio>x (<ours> vs <baseline>)`, ratio = baseline / ours.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.processing import apply_rescale
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.imaging.ct import prepare_ct
from tools.imaging.prepare import prepare_folder
from tools.imaging.selection import ImagingTask, Several
from tools.imaging.sources import load_folder
from tools.imaging.volume import assemble

MAX_SLICE = 85


def phantom(size: int, k: int, rng: np.random.Generator) -> npt.NDArray[np.int16]:
    """Air around an elliptical body of soft tissue, a bone ring, and noise (HU + 1024 stored)."""
    y, x = np.ogrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    r = (x / 0.8) ** 2 + (y / 0.6) ** 2
    hu = np.where(r < 1, 40.0, -1000.0)
    hu = np.where((r > 0.2) & (r < 0.26), 900.0 + 5 * k, hu)
    hu += rng.normal(0, 15, (size, size))
    return np.round(hu + 1024).astype(np.int16)


def write_series(folder: Path, slices: int, size: int) -> None:
    rng = np.random.default_rng(0)
    series, study = generate_uid(), generate_uid()
    for i in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "CT"
        ds.InstanceNumber = i + 1
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [-250.0, -250.0, 200.0 - i * 1.25]
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = phantom(size, i, rng).tobytes()
        ds.save_as(folder / f"{i:05d}.dcm", enforce_file_format=True)


def notebook(folder: Path) -> tuple[list[npt.NDArray[np.uint8]], list[str]]:
    """Google's high_dimensional_ct_hugging_face recipe, from local files instead of DICOMweb."""
    paths = sorted(folder.glob("*.dcm"))
    dicom_instances = [(pydicom.dcmread(p, stop_before_pixels=True), p) for p in paths]
    dicom_instances = sorted(dicom_instances, key=lambda i: int(i[0].InstanceNumber))
    if len(dicom_instances) > MAX_SLICE:
        dicom_instances = [
            dicom_instances[int(round(i / (MAX_SLICE) * (len(dicom_instances) - 1)))]  # noqa: RUF046
            for i in range(1, MAX_SLICE + 1)
        ]
    ct_volume_slices = []
    for _, path in dicom_instances:
        with pydicom.dcmread(path) as dcm:
            ct_volume_slices.append(apply_rescale(dcm.pixel_array, dcm))

    def norm(ct_vol: npt.NDArray[Any], lo: float, hi: float) -> npt.NDArray[np.float32]:
        ct_vol = np.clip(ct_vol, lo, hi)
        ct_vol = ct_vol.astype(np.float32)
        ct_vol -= lo
        ct_vol /= hi - lo
        ct_vol *= 255.0
        return ct_vol

    def window(ct_vol: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        return np.stack([norm(ct_vol, lo, hi) for lo, hi in [(-1024, 1024), (-135, 215), (0, 80)]], axis=-1)

    slices = [np.round(window(s), 0).astype(np.uint8) for s in ct_volume_slices]
    encoded = []
    for s in slices:
        with io.BytesIO() as buffer:
            Image.fromarray(s).save(buffer, format="jpeg")
            encoded.append(base64.b64encode(buffer.getvalue()).decode("utf-8"))
    return slices, encoded


def ours(folder: Path) -> npt.NDArray[np.uint8]:
    """What `chartagent imaging prepare ct FOLDER` runs (tools.imaging.prepare), short of writing the .npz."""
    result = asyncio.run(prepare_folder(folder, ImagingTask.CT, several=Several.REFUSE))
    return result.one().images.images


def ours_whole(folder: Path) -> npt.NDArray[np.uint8]:
    """The same cores over files read whole (every file's pixel data read and checked at load)."""
    loaded = load_folder(folder, defer_pixels=False)
    return prepare_ct(assemble(loaded.instances).select(str(folder)), source=str(folder)).images


def best_of_interleaved(fns: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """The best wall time of each function over `repeats` rounds that run each once in turn, so
    that all sides meet the same load of a shared machine (run one after the other, a change of
    load between them would show as a change of the ratio)."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ct-") as tmp:
        folder = Path(tmp)
        write_series(folder, args.slices, args.size)
        for p in folder.glob("*.dcm"):  # warm page cache
            p.read_bytes()
        expected, _ = notebook(folder)
        got = ours(folder)
        for name, images in (("ours", got), ("ours (files read whole)", ours_whole(folder))):
            if not np.array_equal(images, np.stack(expected)):
                raise SystemExit(f"{name} differs from the notebook recipe")
        print(f"{args.slices} slices {args.size}x{args.size} -> {got.shape[0]} RGB slices, bit-identical")
        baseline, whole, mine = best_of_interleaved(
            [lambda: notebook(folder), lambda: ours_whole(folder), lambda: ours(folder)], args.repeats
        )
        print(
            "notebook recipe (headers, sort, sample, read, rescale, float windows, JPEG, base64): "
            f"{baseline:.3f} s"
        )
        print(f"ours over files read whole (load_folder(defer_pixels=False)): {whole:.3f} s")
        print(f"bench ct-prepare-whole-files: {baseline / whole:.1f}x ({whole:.3f} s vs {baseline:.3f} s)")
        print(f"ours as the CLI runs it (load, assemble, choose, prepare_ct; no .npz written): {mine:.3f} s")
        print(f"bench ct-prepare: {baseline / mine:.1f}x ({mine:.3f} s vs {baseline:.3f} s)")


if __name__ == "__main__":
    main()
