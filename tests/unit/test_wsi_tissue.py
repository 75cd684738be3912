"""Tissue mask on synthetic thumbnails: known shapes in, known masks out."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from tools.imaging.tissue import TissueMaskParams, otsu_threshold, saturation, tissue_mask

GLASS = (243, 242, 240)
EOSIN = (232, 158, 198)
HEMATOXYLIN = (88, 52, 138)


def _glass(h: int, w: int, seed: int = 0) -> NDArray[np.uint8]:
    """Near-white background with the small noise JPEG leaves on glass."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), dtype=np.int16)
    img[:] = GLASS
    img += rng.integers(-3, 4, size=img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _disk(h: int, w: int, cy: float, cx: float, r: float) -> NDArray[np.bool_]:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.asarray((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)


def _stain(img: NDArray[np.uint8], where: NDArray[np.bool_], seed: int = 1) -> NDArray[np.uint8]:
    """Pink tissue with purple nuclei (one pixel in five) where `where` holds."""
    rng = np.random.default_rng(seed)
    out = img.copy()
    nuclei = rng.random(where.shape) < 0.2
    out[where & ~nuclei] = EOSIN
    out[where & nuclei] = HEMATOXYLIN
    return out


def test_saturation_of_glass_tissue_and_black() -> None:
    pixels = np.array([[GLASS, EOSIN, HEMATOXYLIN, (0, 0, 0)]], dtype=np.uint8)
    sat = saturation(pixels)[0]
    assert sat[0] < 0.02
    assert 0.3 < sat[1] < 0.4
    assert sat[2] > 0.6
    assert sat[3] == 0.0


def test_otsu_splits_two_modes_between_them() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.02, 0.01, 5000), rng.normal(0.4, 0.05, 2000)]).astype(np.float32)
    threshold = otsu_threshold(np.clip(values, 0, 1))
    assert 0.1 < threshold < 0.3


def test_disk_of_tissue_is_found() -> None:
    truth = _disk(200, 300, 100, 150, 60)
    result = tissue_mask(_stain(_glass(200, 300), truth), mpp=8.0)
    intersection = (result.mask & truth).sum()
    union = (result.mask | truth).sum()
    assert intersection / union > 0.97
    assert 0.05 <= result.threshold <= 0.20


def test_blank_glass_has_no_tissue() -> None:
    result = tissue_mask(_glass(200, 300), mpp=8.0)
    assert not result.mask.any()
    assert result.threshold >= 0.05  # the floor, whatever Otsu makes of noise


def test_slide_covered_in_tissue_is_all_tissue() -> None:
    everywhere = np.ones((120, 160), dtype=bool)
    result = tissue_mask(_stain(_glass(120, 160), everywhere), mpp=8.0)
    assert result.mask.all()


def test_pen_mark_and_specks_are_not_tissue() -> None:
    img = _glass(200, 300)
    img[20:30, :] = (10, 10, 10)  # black pen stroke across the slide
    speck = _disk(200, 300, 150, 50, 2.0)  # about 13 px = 800 um^2 at 8 um/px
    img = _stain(img, speck)
    result = tissue_mask(img, mpp=8.0)
    assert not result.mask.any()


def test_mask_is_deterministic_and_scale_aware() -> None:
    truth_fine = _disk(400, 600, 200, 300, 120)
    truth_coarse = _disk(200, 300, 100, 150, 60)
    fine = tissue_mask(_stain(_glass(400, 600), truth_fine), mpp=4.0)
    again = tissue_mask(_stain(_glass(400, 600), truth_fine), mpp=4.0)
    coarse = tissue_mask(_stain(_glass(200, 300), truth_coarse), mpp=8.0)
    assert np.array_equal(fine.mask, again.mask)
    assert fine.fraction == pytest.approx(coarse.fraction, abs=0.01)


def test_min_area_is_in_square_micrometres() -> None:
    # A 10 px disk is 314 px: 20,000 um^2 at 8 um/px (kept), 1,250 um^2 at 2 um/px (dropped).
    truth = _disk(100, 100, 50, 50, 10)
    img = _stain(_glass(100, 100), truth)
    params = TissueMaskParams(closing_um=0, opening_um=0)
    assert tissue_mask(img, mpp=8.0, params=params).mask.any()
    assert not tissue_mask(img, mpp=2.0, params=params).mask.any()


def test_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError, match="uint8 H x W x 3"):
        tissue_mask(np.zeros((10, 10), dtype=np.uint8), mpp=8.0)
    with pytest.raises(ValueError, match="positive"):
        tissue_mask(np.zeros((10, 10, 3), dtype=np.uint8), mpp=0.0)
