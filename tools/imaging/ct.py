"""CT preparation (Google's MedGemma 1.5 recipe), bit for bit, through a lookup table.

The notebook windows each slice as: HU = apply_rescale(pixel_array) (float64), then per window
clip -> float32 -> -= low -> /= (high - low) -> *= 255, then round half to even -> uint8. Every step
is element-wise, so the RGB value of a pixel is a function of its stored value alone (given the
slice's slope and intercept). We run those exact operations once over every possible stored value
(65,536 for 16-bit data) and gather: the output is identical to the notebook's and the per-pixel
cost is one table look-up. Data wider than 16 bits take the direct path (the same operations).

On a machine with CPUs to spare, the sampled slices are read and windowed by a few worker threads:
the file reads, the index conversion and the gather all run in numpy or the OS with the GIL released.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from tools.imaging.prepared import IntensityWindow, PreparationMetadata, PreparedImages, Task, slice_infos
from tools.imaging.volume import (
    Rescale,
    SkippedObject,
    Slice,
    Volume,
    apply_slice_rescale,
    sample_slice_indices,
)

MAX_CT_SLICES = 85
# Worker threads that read and window slices (at most one fewer than the CPUs); more gain nothing
# (memory-bound).
MAX_WORKERS = 4
# (low, high) HU of the red, green and blue channels, as MedGemma 1.5 was trained.
CT_WINDOWS: tuple[tuple[str, int, int], ...] = (
    ("wide", -1024, 1024),
    ("soft tissue", -135, 215),
    ("brain", 0, 80),
)
CT_MODALITIES = ("CT",)

U8 = npt.NDArray[np.uint8]


def window_hu(hu: npt.NDArray[Any]) -> U8:
    """The notebook's windowing of HU values into RGB uint8 (shape + (3,)), operation for operation."""
    channels = []
    for _, low, high in CT_WINDOWS:
        x = np.clip(hu, low, high).astype(np.float32)
        x -= low
        x /= high - low
        x *= 255.0
        channels.append(x)
    return np.round(np.stack(channels, axis=-1), 0).astype(np.uint8)


def stored_domain(dtype: np.dtype[Any]) -> npt.NDArray[Any] | None:
    """Every value of an 8- or 16-bit integer dtype, in the order of its unsigned bit pattern."""
    if dtype.kind not in "iu" or dtype.itemsize > 2:
        return None
    unsigned = np.dtype(f"u{dtype.itemsize}")
    return np.arange(2 ** (8 * dtype.itemsize), dtype=unsigned).view(dtype)


def pack_rgb(table: U8) -> npt.NDArray[np.uint32]:
    """An N x 3 RGB table as little-endian uint32 (R, G, B, 0 in memory): one 4-byte gather per pixel."""
    packed = np.zeros((len(table), 4), dtype=np.uint8)
    packed[:, :3] = table
    return packed.view("<u4").reshape(-1)


def _overlapping_write(packed: npt.NDArray[np.uint32], out: U8) -> None:
    """Write packed RGB0 pixels into a contiguous H x W x 3 (all but the last pixel).

    Pixel i's four bytes go to byte 3i; its zero lands on pixel i+1's red byte, which that pixel's
    write (the next one: numpy assigns a 1-D view in index order) then sets. The caller writes the
    last pixel, whose fourth byte would fall outside `out`. Checked once per process against a plain
    gather (`_overlapping_write_works`).
    """
    n = out.size // 3
    dst = np.ndarray((n - 1,), dtype="<u4", buffer=out, strides=(3,))
    dst[...] = packed[: n - 1]


@functools.cache
def _overlapping_write_works() -> bool:
    rng = np.random.default_rng(0)
    table = rng.integers(0, 256, (4096, 3), dtype=np.uint8)
    idx = rng.integers(0, 4096, (64, 64))
    out = np.empty((64, 64, 3), dtype=np.uint8)
    _overlapping_write(np.take(pack_rgb(table), idx.reshape(-1)), out)
    out.reshape(-1, 3)[-1] = table[idx.reshape(-1)[-1]]
    return bool(np.array_equal(out, table[idx]))


Tables = tuple[U8, npt.NDArray[np.uint32]]
# Tables by (dtype, slope, intercept), shared by every windower of the process: a series usually
# needs one, and the next series from the same scanner the same one again (1.7 ms each to build).
_TABLE_CACHE_SIZE = 16
_table_cache: dict[tuple[str, Rescale | None], Tables] = {}
_table_cache_lock = threading.Lock()  # worker threads may add tables at once


class CtWindower:
    """Windows stored slices into RGB through one table per (dtype, slope, intercept).

    The gather is done 4 bytes per pixel from a packed table (`pack_rgb`), written into the RGB
    output with overlapping 4-byte stores: numpy's take of 3-byte rows copies each with a memmove,
    which cost twice as much. Several threads may window through one windower: the index and
    gather buffers, reused from slice to slice (no fresh pages to fault in), are per thread.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def _buffers(self, size: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint32]]:
        """This thread's index and gather buffers of `size` elements."""
        buffers: tuple[npt.NDArray[np.intp], npt.NDArray[np.uint32]] | None = getattr(
            self._local, "buffers", None
        )
        if buffers is None or buffers[0].size != size:
            buffers = (np.empty(size, dtype=np.intp), np.empty(size, dtype=np.uint32))
            self._local.buffers = buffers
        return buffers

    def table(self, dtype: np.dtype[Any], sl: Slice) -> U8 | None:
        tables = self.tables(dtype, sl)
        return None if tables is None else tables[0]

    def tables(self, dtype: np.dtype[Any], sl: Slice) -> Tables | None:
        """The RGB table over every stored value, and its packed form (read-only); None for wider data."""
        key = (dtype.str, sl.rescale)
        found = None if sl.modality_lut else _table_cache.get(key)
        if found is None:
            domain = stored_domain(dtype)
            if domain is None:
                return None
            table = window_hu(apply_slice_rescale(domain, sl))
            found = (table, pack_rgb(table))
            for array in found:
                array.flags.writeable = False
            if not sl.modality_lut:  # a modality LUT belongs to its dataset
                with _table_cache_lock:
                    while len(_table_cache) >= _TABLE_CACHE_SIZE:
                        del _table_cache[next(iter(_table_cache))]  # the oldest
                    _table_cache[key] = found
        return found

    def window_into(self, stored: npt.NDArray[Any], sl: Slice, out: U8) -> None:
        """Write the RGB windowing of one stored slice into `out` (H x W x 3)."""
        tables = self.tables(stored.dtype, sl)
        if tables is None:
            out[...] = window_hu(apply_slice_rescale(stored, sl))
            return
        table, packed = tables
        unsigned = stored.view(f"u{stored.dtype.itemsize}")
        if unsigned.size < 2 or not out.flags.c_contiguous or not _overlapping_write_works():
            np.take(table, unsigned.astype(np.intp), axis=0, out=out)
            return
        # np.take is fastest with native intp indices; converting one slice at a time stays in cache.
        index, gathered = self._buffers(unsigned.size)
        np.copyto(index, unsigned.reshape(-1))
        # The table covers every stored value, so no index is out of range: mode "wrap" only skips
        # the bounds check (and "raise" would gather into a scratch copy of `gathered`).
        np.take(packed, index, out=gathered, mode="wrap")
        _overlapping_write(gathered, out)
        out.reshape(-1, 3)[-1] = table[index[-1]]


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _in_workers(task: Callable[[int], None], n: int) -> None:
    """task(0), then task(1..n-1) shared out among up to MAX_WORKERS threads, one share each
    (k = w+1, w+1+workers, ...: fewer hand-overs than a task per slice). Task 0 runs first so that
    the table of a series (usually one for all its slices) is built once, not by every worker at
    once. As when run serially, the error raised is that of the first failing task in index order;
    a worker stops at its first error."""
    if n == 0:
        return
    task(0)
    # One CPU is left to the rest of the process (the event loop serves other requests meanwhile):
    # on two CPUs shared with anything else, a second worker only makes the threads queue for the
    # GIL (measured slower), so there the slices are done serially.
    workers = min(n - 1, MAX_WORKERS, _cpus() - 1)
    if workers <= 1:
        for k in range(1, n):
            task(k)
        return
    errors: dict[int, BaseException] = {}

    def share(w: int) -> None:
        for k in range(1 + w, n, workers):
            try:
                task(k)
            except BaseException as exc:  # re-raised below, in index order
                errors[k] = exc
                return

    with ThreadPoolExecutor(workers, thread_name_prefix="ct-window") as pool:
        list(pool.map(share, range(workers)))
    if errors:
        raise errors[min(errors)]


# The last output array, handed out again once nothing refers to it: a new 85 x 512 x 512 x 3 array is
# 67 MB of pages that the kernel faults in and zeroes on first write, 7-35 ms (a third of preparing a
# CT from cached files) depending on huge pages. A process that prepares one series after another
# (summaries, the agent) writes into pages it already has. One array, and only up to this size, so
# what stays allocated between preparations is bounded.
REUSE_MAX_BYTES = 128 * 1024 * 1024
_spare: list[U8] = []
_spare_lock = threading.Lock()


def _output(shape: tuple[int, ...]) -> U8:
    """An uninitialised uint8 array of `shape`: the spare one when no one holds it (or a view of it:
    views keep their base alive, and so do buffers exported from it), else a new one, kept as the spare."""
    with _spare_lock:
        if _spare and _spare[0].shape == shape and sys.getrefcount(_spare[0]) == 2:
            return _spare[0]  # the list and getrefcount's argument hold it: nothing else does
        out = np.empty(shape, dtype=np.uint8)
        _spare[:] = [out] if out.nbytes <= REUSE_MAX_BYTES else []
        return out


def prepare_ct(
    volume: Volume,
    *,
    source: str,
    max_slices: int = MAX_CT_SLICES,
    skipped: Sequence[SkippedObject] = (),
) -> PreparedImages:
    """Sample up to `max_slices` slices uniformly, decode only those, window each into RGB uint8."""
    volume.require_modality(Task.CT.value, CT_MODALITIES)
    indices = sample_slice_indices(len(volume), max_slices)
    images = _output((len(indices), volume.rows, volume.columns, 3))  # every byte written below
    windower = CtWindower()

    def window(k: int) -> None:
        i = indices[k]
        windower.window_into(volume.stored(i), volume.slices[i], images[k])

    _in_workers(window, len(indices))
    metadata = PreparationMetadata(
        task=Task.CT,
        modality=volume.modality,
        source=source,
        series_uid=volume.series_uid,
        series_description=volume.description,
        series_slices=len(volume),
        order=volume.order,
        slices=slice_infos(volume.slices, indices),
        windows=[IntensityWindow(name=n, low=lo, high=hi, unit="HU") for n, lo, hi in CT_WINDOWS],
        warnings=list(volume.warnings),
        skipped=list(skipped),
    )
    return PreparedImages(images=images, metadata=metadata)


__all__ = [
    "CT_MODALITIES",
    "CT_WINDOWS",
    "MAX_CT_SLICES",
    "MAX_WORKERS",
    "CtWindower",
    "pack_rgb",
    "prepare_ct",
    "stored_domain",
    "window_hu",
]
