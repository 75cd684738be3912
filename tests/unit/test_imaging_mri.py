"""MRI preparation: one min-max over the prepared slices, grey in three channels."""

from __future__ import annotations

import imaging_series
import numpy as np
import pytest

from tools.imaging.errors import WrongModalityError
from tools.imaging.mri import min_max_uint8, prepare_mri
from tools.imaging.volume import Instance, assemble


def test_known_answer_across_slices() -> None:
    series = imaging_series.mr_series(2, rows=2, cols=2)
    imaging_series.set_pixels(series[0], np.array([[100, 200], [300, 400]], dtype=np.uint16))
    imaging_series.set_pixels(series[1], np.array([[500, 600], [700, 1100]], dtype=np.uint16))
    volume = assemble([Instance(f"m{i}", ds) for i, ds in enumerate(series)]).select("t")
    prepared = prepare_mri(volume, source="t")
    # (v - 100) / 1000 * 255, rounded half to even: one scale for the whole volume, not per slice.
    expected = np.array([[[0, 26], [51, 76]], [[102, 128], [153, 255]]], dtype=np.uint8)
    assert np.array_equal(prepared.images[..., 0], expected)
    assert np.array_equal(prepared.images[..., 0], prepared.images[..., 2])
    (window,) = prepared.metadata.windows
    assert (window.low, window.high) == (100.0, 1100.0)


def test_constant_volume_is_black_with_a_warning() -> None:
    assert min_max_uint8([np.full((2, 2), 7.0)], 7.0, 7.0).max() == 0
    series = imaging_series.mr_series(2, rows=2, cols=2)
    for ds in series:
        imaging_series.set_pixels(ds, np.full((2, 2), 5, dtype=np.uint16))
    volume = assemble([Instance(f"m{i}", ds) for i, ds in enumerate(series)]).select("t")
    prepared = prepare_mri(volume, source="t")
    assert prepared.images.max() == 0
    assert "constant volume" in prepared.metadata.warnings[-1]


def test_mri_task_refuses_ct() -> None:
    volume = assemble([Instance("c", ds) for ds in imaging_series.ct_series(2)]).select("t")
    with pytest.raises(WrongModalityError, match="expects MR"):
        prepare_mri(volume, source="t")
