"""The OCR's 3x3 median filter equals Pillow's ``MedianFilter(3)`` pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageFilter

from tools.labs.pdf.denoise import median3x3


def _pillow(gray: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(gray).filter(ImageFilter.MedianFilter(3)))


@settings(max_examples=300, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_equals_pillow_on_any_image(gray: np.ndarray) -> None:
    assert np.array_equal(median3x3(gray), _pillow(gray))


def test_removes_a_speck_and_keeps_a_stroke() -> None:
    page = np.full((9, 9), 240, dtype=np.uint8)
    page[2, 2] = 0  # dust: one dark pixel
    page[:, 6] = 0  # a stroke two pixels wide
    page[:, 7] = 0
    out = median3x3(page)
    assert out[2, 2] == 240
    assert (out[1:-1, 6:8] == 0).all()
    assert np.array_equal(out, _pillow(page))


def test_a_scanned_page_sized_image() -> None:
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, size=(601, 457), dtype=np.uint8)
    assert np.array_equal(median3x3(gray), _pillow(gray))


@pytest.mark.parametrize("bad", [np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3), np.float32)])
def test_refuses_what_is_not_a_grey_page(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="2-D uint8"):
        median3x3(bad)
