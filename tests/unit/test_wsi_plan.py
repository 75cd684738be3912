"""Patch planning (pure): level choice, tissue fractions per cell, sampling, runs."""

from __future__ import annotations

import numpy as np
import pytest

from tools.imaging.wsi import (
    MAX_PATCHES,
    PatchParams,
    PlannedPatch,
    SlideError,
    SlideLevel,
    choose_level,
    choose_mask_level,
    evenly_spaced,
    patch_runs,
    patch_tissue_fractions,
    plan_patches,
)


def _pyramid(
    base_mpp: float, downsamples: tuple[int, ...], width: int = 40960, height: int = 40960
) -> list[SlideLevel]:
    return [
        SlideLevel(index=i, width=width // d, height=height // d, mpp=base_mpp * d, downsample=float(d))
        for i, d in enumerate(downsamples)
    ]


def _mpp_of(levels: list[SlideLevel]) -> float:
    return choose_level(levels).mpp


@pytest.mark.parametrize(
    ("base_mpp", "downsamples", "expected_mpp"),
    [
        (0.25, (1, 4, 16), 1.0),  # 40X scan, 1/4/16: exact 10X level
        (0.25, (1, 2, 4, 8), 1.0),  # 40X, powers of two
        (0.5, (1, 2, 4), 1.0),  # 20X, powers of two
        (0.5, (1, 4, 16), 0.5),  # 20X, 1/4/16: 0.5 and 2.0 tie on a log scale; the finer wins
        (0.25, (1, 16, 64), 0.25),  # 0.25 (4x finer) beats 4.0 (4x coarser) by the tie rule
        (0.3, (1, 4, 16), 1.2),  # nearest, not exact
        (2.0, (1, 4), 2.0),  # a slide scanned coarser than 10X
    ],
)
def test_choose_level(base_mpp: float, downsamples: tuple[int, ...], expected_mpp: float) -> None:
    assert _mpp_of(_pyramid(base_mpp, downsamples)) == pytest.approx(expected_mpp)


def test_choose_level_ties_survive_dicom_rounding() -> None:
    # Pixel spacing as OrthancWSIDicomizer writes it (float32 noise) must still tie toward the finer level.
    levels = [
        SlideLevel(index=0, width=8192, height=8192, mpp=0.500000024, downsample=1),
        SlideLevel(index=2, width=2048, height=2048, mpp=2.00000009, downsample=4),
    ]
    assert choose_level(levels).index == 0


def test_choose_level_is_order_independent() -> None:
    levels = _pyramid(0.25, (1, 4, 16))
    assert choose_level(levels[::-1]) == choose_level(levels)


def test_choose_mask_level_and_factor() -> None:
    level, factor = choose_mask_level(_pyramid(0.25, (1, 4, 16)))  # 0.25, 1, 4 um
    assert (level.mpp, factor) == (4.0, 2)
    level, factor = choose_mask_level(_pyramid(0.5, (1, 4, 16)))  # 0.5, 2, 8 um
    assert (level.mpp, factor) == (8.0, 1)
    level, factor = choose_mask_level(_pyramid(0.5, (1, 2)))  # 0.5, 1 um: reduce by 8
    assert (level.mpp, factor) == (1.0, 8)
    level, factor = choose_mask_level(_pyramid(16.0, (1, 2)))  # all coarser: the finest as it is
    assert (level.mpp, factor) == (16.0, 1)


def test_tissue_fractions_of_known_mask() -> None:
    mask = np.zeros((40, 60), dtype=bool)
    mask[0:20, 0:20] = True  # cell (0, 0) full
    mask[20:30, 20:40] = True  # cell (1, 1) half
    fractions = patch_tissue_fractions(mask, 20.0, 2, 3)
    expected = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    assert np.allclose(fractions, expected)


def test_tissue_fractions_with_fractional_cells() -> None:
    mask = np.ones((10, 10), dtype=bool)
    fractions = patch_tissue_fractions(mask, 3.5, 2, 2)
    assert np.allclose(fractions, 1.0)


def test_evenly_spaced() -> None:
    assert evenly_spaced(5, 125) == [0, 1, 2, 3, 4]
    picks = evenly_spaced(1000, 125)
    assert len(picks) == 125 == len(set(picks))
    assert picks == sorted(picks)
    assert picks[0] == 4
    assert picks[-1] == 996
    gaps = np.diff(picks)
    assert gaps.min() == gaps.max() == 8
    assert evenly_spaced(126, 125) == sorted(set(evenly_spaced(126, 125)))


def _mask_for(levels: list[SlideLevel], mask_downsample: float, cells: set[tuple[int, int]]) -> np.ndarray:
    """A mask with full tissue in the given 10X grid cells (896 px at level 1 = 3584 level-0 px)."""
    level = choose_level(levels)
    cell = 896 * level.downsample / mask_downsample
    rows = round(levels[0].height / mask_downsample)
    cols = round(levels[0].width / mask_downsample)
    mask = np.zeros((rows, cols), dtype=bool)
    for r, c in cells:
        mask[round(r * cell) : round((r + 1) * cell), round(c * cell) : round((c + 1) * cell)] = True
    return mask


def test_plan_keeps_tissue_cells_in_raster_order() -> None:
    levels = _pyramid(0.25, (1, 4, 16))  # 40960 px at 0.25 um: 10X level is 10240 px, an 11 x 11 grid
    cells = {(0, 3), (2, 2), (2, 3), (7, 10)}
    plan = plan_patches(levels, _mask_for(levels, 32.0, cells), 32.0)
    assert plan.level.mpp == 1.0
    assert (plan.grid_rows, plan.grid_cols) == (11, 11)
    assert plan.candidates == 4
    assert [(p.row, p.col) for p in plan.patches] == [(0, 3), (2, 2), (2, 3), (7, 10)]
    first = plan.patches[0]
    assert (first.x, first.y, first.x0, first.y0) == (3 * 896, 0, 3 * 896 * 4, 0)
    assert all(p.tissue_fraction == 1.0 for p in plan.patches)
    assert plan.warnings == ()


def test_plan_samples_at_most_125_evenly() -> None:
    levels = _pyramid(0.25, (1, 4, 16), width=61440, height=61440)  # 10X: 15360 px, 17 x 17 = 289 cells
    everywhere = {(r, c) for r in range(17) for c in range(17)}
    plan = plan_patches(levels, _mask_for(levels, 32.0, everywhere), 32.0)
    assert plan.candidates == 289
    assert len(plan.patches) == MAX_PATCHES
    flat = [p.row * 17 + p.col for p in plan.patches]
    assert flat == sorted(flat)
    assert len(set(flat)) == MAX_PATCHES
    assert flat == evenly_spaced(289, MAX_PATCHES)
    # Spread over the whole slide, not the first 125 cells.
    assert plan.patches[0].row == 0
    assert plan.patches[-1].row == 16
    assert plan_patches(levels, _mask_for(levels, 32.0, everywhere), 32.0) == plan


def test_plan_threshold_and_max_patches_params() -> None:
    levels = _pyramid(0.25, (1, 4, 16))
    mask = _mask_for(levels, 32.0, {(1, 1), (1, 2), (1, 3)})
    cell = 896 * 4 / 32
    mask[round(1 * cell) : round(1.3 * cell), round(5 * cell) : round(6 * cell)] = True  # cell (1, 5): 30%
    assert plan_patches(levels, mask, 32.0).candidates == 3
    assert plan_patches(levels, mask, 32.0, PatchParams(min_tissue_fraction=0.25)).candidates == 4
    capped = plan_patches(levels, mask, 32.0, PatchParams(max_patches=1))
    assert [(p.row, p.col) for p in capped.patches] == [(1, 2)]  # the middle one of three


def test_plan_falls_back_when_no_patch_is_half_tissue() -> None:
    levels = _pyramid(0.25, (1, 4, 16))
    mask = np.zeros((1280, 1280), dtype=bool)
    mask[:, 40:60] = True  # a thin core: 20 of the 112 mask pixels of column 0 (18%)
    plan = plan_patches(levels, mask, 32.0)
    assert plan.candidates == 11
    assert all(p.col == 0 for p in plan.patches)
    assert "no patch is 50% tissue" in plan.warnings[0]


def test_plan_warns_without_a_10x_level() -> None:
    levels = _pyramid(0.5, (1, 4, 16), width=8192, height=8192)
    mask = np.ones((512, 512), dtype=bool)
    plan = plan_patches(levels, mask, 16.0)
    assert plan.level.mpp == 0.5
    assert (plan.grid_rows, plan.grid_cols) == (9, 9)
    assert "448 um instead of 896 um" in plan.warnings[0]


def test_plan_errors_name_the_slide() -> None:
    levels = _pyramid(0.25, (1, 4, 16))
    with pytest.raises(SlideError, match=r"^s\.tif: no tissue found"):
        plan_patches(levels, np.zeros((1280, 1280), dtype=bool), 32.0, origin="s.tif")
    tiny = _pyramid(0.25, (1, 4), width=2048, height=2048)
    with pytest.raises(SlideError, match="smaller than one 896 px patch"):
        plan_patches(tiny, np.ones((64, 64), dtype=bool), 32.0, origin="tiny.tif")


def _patch(row: int, col: int) -> PlannedPatch:
    return PlannedPatch(row=row, col=col, x=col * 896, y=row * 896, x0=0, y0=0, tissue_fraction=1.0)


def test_patch_runs_group_adjacent_cells_of_a_row() -> None:
    patches = [_patch(0, 1), _patch(0, 2), _patch(0, 4), _patch(1, 0), _patch(1, 1), _patch(1, 2)]
    runs = patch_runs(patches)
    assert [(r.row, r.first_col, r.count, r.indices) for r in runs] == [
        (0, 1, 2, (0, 1)),
        (0, 4, 1, (2,)),
        (1, 0, 3, (3, 4, 5)),
    ]
