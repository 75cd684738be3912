"""CT preparation is bit for bit Google's notebook recipe, on well-ordered and shuffled series."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import imaging_series
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels.processing import apply_rescale

from tools.imaging import ct
from tools.imaging.ct import CT_WINDOWS, CtWindower, prepare_ct, stored_domain, window_hu
from tools.imaging.errors import WrongModalityError
from tools.imaging.volume import Instance, Volume, assemble, sample_slice_indices


def notebook_ct(paths: list[Path]) -> npt.NDArray[np.uint8]:
    """Google's high_dimensional_ct_hugging_face notebook, step for step, on local files."""
    dicom_instances = [(pydicom.dcmread(p, stop_before_pixels=True), p) for p in paths]
    dicom_instances = sorted(dicom_instances, key=lambda i: int(i[0].InstanceNumber))
    max_slice = 85
    if len(dicom_instances) > max_slice:
        dicom_instances = [
            dicom_instances[int(round(i / (max_slice) * (len(dicom_instances) - 1)))]  # noqa: RUF046
            for i in range(1, max_slice + 1)
        ]
    ct_volume_slices = []
    for _, path in dicom_instances:
        with pydicom.dcmread(path) as dcm:
            ct_volume_slices.append(apply_rescale(dcm.pixel_array, dcm))

    def norm(ct_vol: npt.NDArray[Any], lo: float, hi: float) -> npt.NDArray[Any]:
        ct_vol = np.clip(ct_vol, lo, hi)
        ct_vol = ct_vol.astype(np.float32)
        ct_vol -= lo
        ct_vol /= hi - lo
        ct_vol *= 255.0
        return ct_vol

    def window(ct_vol: npt.NDArray[Any]) -> npt.NDArray[Any]:
        window_clips = [(-1024, 1024), (-135, 215), (0, 80)]
        return np.stack([norm(ct_vol, clip[0], clip[1]) for clip in window_clips], axis=-1)

    out = [np.round(window(s), 0).astype(np.uint8) for s in ct_volume_slices]
    return np.stack(out)


def ours(paths: list[Path]) -> npt.NDArray[np.uint8]:
    instances = [Instance(str(p), pydicom.dcmread(p)) for p in paths]
    volume = assemble(instances).select("test")
    return prepare_ct(volume, source="test").images


@pytest.mark.parametrize(
    ("n", "kwargs"),
    [
        (20, {}),
        (120, {}),  # sampled down to 85
        (30, {"signed": True, "intercept": 0.0}),
        (25, {"slope": 0.5, "intercept": -1000.0}),  # non-integer HU
        (25, {"slope": 1.7, "intercept": -1023.3}),
    ],
)
def test_identical_to_notebook(tmp_path: Path, n: int, kwargs: dict[str, float | bool]) -> None:
    paths = imaging_series.write_series(tmp_path, imaging_series.ct_series(n, seed=n, **kwargs))  # type: ignore[arg-type]
    expected = notebook_ct(paths)
    got = ours(paths)
    assert got.dtype == np.uint8
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_identical_to_notebook_when_files_come_shuffled(tmp_path: Path) -> None:
    paths = imaging_series.write_series(tmp_path, imaging_series.ct_series(200, seed=3))
    expected = notebook_ct(paths)
    shuffled = paths[:]
    random.Random(5).shuffle(shuffled)
    assert np.array_equal(ours(shuffled), expected)


def test_order_is_position_not_file_name(tmp_path: Path) -> None:
    # InstanceNumber rises head to foot; file names rise the other way round.
    series = imaging_series.ct_series(10, seed=1)
    paths = imaging_series.write_series(tmp_path, list(reversed(series)))
    volume = assemble([Instance(str(p), pydicom.dcmread(p)) for p in paths]).select("t")
    assert [s.instance_number for s in volume.slices] == list(range(1, 11))
    assert volume.order == "position"


def test_sampling_matches_notebook_formula() -> None:
    for n in (1, 2, 84, 85, 86, 300, 3001):
        expected = list(range(n)) if n <= 85 else [int(round(i / 85 * (n - 1))) for i in range(1, 86)]  # noqa: RUF046
        assert sample_slice_indices(n) == expected
    assert sample_slice_indices(300)[-1] == 299
    assert len(sample_slice_indices(3000)) == 85


def test_window_known_values() -> None:
    hu = np.array([-3000.0, -1024.0, -135.0, 0.0, 40.0, 80.0, 215.0, 1024.0, 5000.0])
    rgb = window_hu(hu)
    assert rgb[:, 0].tolist() == [0, 0, 111, 128, 132, 137, 154, 255, 255]
    assert rgb[:, 1].tolist() == [0, 0, 0, 98, 128, 157, 255, 255, 255]
    assert rgb[:, 2].tolist() == [0, 0, 0, 0, 128, 255, 255, 255, 255]
    assert [w[1:] for w in CT_WINDOWS] == [(-1024, 1024), (-135, 215), (0, 80)]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_lookup_table_equals_direct_windowing(dtype: type[np.integer]) -> None:
    series = imaging_series.ct_series(1, slope=1.25, intercept=-1024.0)
    volume = assemble([Instance("x", series[0])]).select("t")
    info = np.iinfo(dtype)
    stored = np.random.default_rng(0).integers(info.min, info.max, size=(64, 64), endpoint=True).astype(dtype)
    out = np.empty((64, 64, 3), dtype=np.uint8)
    CtWindower().window_into(stored, volume.slices[0], out)
    hu = stored.astype(np.float64) * 1.25 - 1024.0
    assert np.array_equal(out, window_hu(hu))
    domain = stored_domain(np.dtype(dtype))
    assert domain is not None
    assert len(np.unique(domain)) == 2 ** (8 * np.dtype(dtype).itemsize)


def test_wider_than_16_bits_takes_the_direct_path() -> None:
    series = imaging_series.ct_series(1)
    volume = assemble([Instance("x", series[0])]).select("t")
    stored = np.arange(-70000, 70000, 35, dtype=np.int32).reshape(40, 100)
    out = np.empty((40, 100, 3), dtype=np.uint8)
    CtWindower().window_into(stored, volume.slices[0], out)
    assert np.array_equal(out, window_hu(stored.astype(np.float64) - 1024.0))


def test_ct_task_refuses_an_mr_series() -> None:
    series = imaging_series.mr_series(3)
    volume = assemble([Instance(f"mr{i}", ds) for i, ds in enumerate(series)]).select("t")
    with pytest.raises(
        WrongModalityError, match=r"modality MR does not fit the ct preparation \(expects CT\)"
    ):
        prepare_ct(volume, source="t")


def test_metadata_records_slices_and_windows(tmp_path: Path) -> None:
    series = imaging_series.ct_series(100, seed=2)
    volume = assemble([Instance(f"f{i}", ds) for i, ds in enumerate(series)]).select("t")
    prepared = prepare_ct(volume, source="folder")
    meta = prepared.metadata
    assert meta.series_slices == 100
    assert [s.index for s in meta.slices] == sample_slice_indices(100)
    assert meta.slices[-1].position_mm == pytest.approx(100.0 - 99 * 2.5)
    assert [(w.low, w.high) for w in meta.windows] == [(-1024, 1024), (-135, 215), (0, 80)]
    assert meta.warnings == []


@pytest.mark.parametrize("name", ["693_UNCR.dcm", "693_J2KR.dcm", "CT_small.dcm"])
def test_real_ct_files_identical_to_notebook(name: str) -> None:
    path = Path(get_testdata_file(name, download=False) or "")
    assert path.is_file(), f"pydicom test file {name} not installed"
    assert np.array_equal(ours([path]), notebook_ct([path]))


def test_worker_threads_give_the_serial_result(monkeypatch: pytest.MonkeyPatch) -> None:
    series = imaging_series.ct_series(120, seed=4, slope=1.25, intercept=-1000.0)
    volume = assemble([Instance(f"f{i}", ds) for i, ds in enumerate(series)]).select("t")
    monkeypatch.setattr(ct, "MAX_WORKERS", 1)
    serial = prepare_ct(volume, source="t")
    monkeypatch.setattr(ct, "MAX_WORKERS", 3)
    monkeypatch.setattr(ct, "_cpus", lambda: 8)
    threaded = prepare_ct(volume, source="t")
    assert np.array_equal(threaded.images, serial.images)
    assert threaded.metadata == serial.metadata


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_first_failing_slice_in_index_order_is_the_error(
    monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setattr(ct, "MAX_WORKERS", workers)
    monkeypatch.setattr(ct, "_cpus", lambda: 8)
    done: set[int] = set()

    def task(k: int) -> None:
        if k in (4, 7, 9):
            raise ValueError(f"slice {k}")
        done.add(k)

    with pytest.raises(ValueError, match="slice 4"):
        ct._in_workers(task, 12)
    assert set(range(4)) <= done


def test_one_windower_takes_slices_of_different_sizes() -> None:
    series = imaging_series.ct_series(1)
    sl = assemble([Instance("x", series[0])]).select("t").slices[0]
    windower = CtWindower()
    rng = np.random.default_rng(1)
    for shape in ((64, 64), (40, 50), (64, 64), (1, 2)):
        stored = rng.integers(-2000, 3000, size=shape).astype(np.int16)
        out = np.empty((*shape, 3), dtype=np.uint8)
        windower.window_into(stored, sl, out)
        assert np.array_equal(out, window_hu(stored.astype(np.float64) - 1024.0)), shape


def small_ct(seed: int) -> Volume:
    series = imaging_series.ct_series(12, seed=seed)
    return assemble([Instance(f"f{i}", ds) for i, ds in enumerate(series)]).select("t")


def _address(images: npt.NDArray[np.uint8]) -> int:
    return int(images.__array_interface__["data"][0])


def test_an_output_still_held_is_never_written_again() -> None:
    one, two = (small_ct(seed) for seed in (1, 2))
    first = prepare_ct(one, source="t").images
    kept = first.copy()
    second = prepare_ct(two, source="t").images  # same shape, other pixels
    assert not np.shares_memory(first, second)
    assert np.array_equal(first, kept)
    view = second[3]  # a view keeps its base alive: still held
    kept_view = view.copy()
    del second
    third = prepare_ct(one, source="t").images
    assert not np.shares_memory(third, view)
    assert np.array_equal(view, kept_view)
    assert np.array_equal(third, kept)


def test_a_dropped_output_is_reused_and_fully_rewritten() -> None:
    one, two = (small_ct(seed) for seed in (3, 4))
    expected = prepare_ct(one, source="t").images.copy()
    first = prepare_ct(two, source="t").images
    address = _address(first)
    first[...] = 7  # nothing of what a caller wrote survives into the next preparation
    del first
    again = prepare_ct(one, source="t").images
    assert _address(again) == address  # the pages were reused
    assert np.array_equal(again, expected)
