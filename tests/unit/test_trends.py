"""Known-answer tests for the trend engine: Theil-Sen slope, crossings and direction rules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tools.labs.analytes import LOINC_SYSTEM, get_analyte
from tools.labs.series import LabPoint, LabSeries
from tools.trends import RangeStatus, baseline_count, compute_trend, theil_sen_slope

T0 = datetime(2020, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365.25)


def series(
    key: str | None,
    values: Sequence[float],
    *,
    step: timedelta = YEAR,
    ranges: Sequence[tuple[float | None, float | None]] | None = None,
    code: str = "99999-9",
) -> LabSeries:
    analyte = None if key is None else get_analyte(key)
    points = tuple(
        LabPoint(
            time=T0 + i * step,
            value=v,
            original_value=v,
            original_unit=analyte.unit if analyte else "U/L",
            observation_id=f"o{i}",
            observation_version="1",
            reference_low=None if ranges is None else ranges[i][0],
            reference_high=None if ranges is None else ranges[i][1],
        )
        for i, v in enumerate(values)
    )
    return LabSeries(
        code=analyte.primary_loinc if analyte else code,
        system=LOINC_SYSTEM,
        display=analyte.display if analyte else "Unknown test",
        unit=analyte.unit if analyte else "U/L",
        analyte_key=key,
        subject="Patient/p1",
        points=points,
    )


# --- Theil-Sen -------------------------------------------------------------------------


def test_theil_sen_exact_line() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    assert theil_sen_slope(x, 2.0 * x + 1.0) == pytest.approx(2.0)


def test_theil_sen_ignores_one_outlier() -> None:
    x = np.arange(7, dtype=float)
    y = 0.5 * x + 1.0
    y[6] = 100.0  # one wild latest value tilts least squares to ~10.8; Theil-Sen stays 0.5
    assert theil_sen_slope(x, y) == pytest.approx(0.5)
    assert np.polyfit(x, y, 1)[0] == pytest.approx(10.7857, abs=1e-3)


def test_theil_sen_known_median_of_pairwise_slopes() -> None:
    # Pairs: (0,1)->1, (0,2)->1.5, (1,2)->2: median 1.5.
    assert theil_sen_slope(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 3.0])) == pytest.approx(1.5)


def test_theil_sen_degenerate() -> None:
    assert theil_sen_slope(np.array([1.0]), np.array([5.0])) is None
    assert theil_sen_slope(np.array([1.0, 1.0]), np.array([5.0, 6.0])) is None  # zero time span
    # Tied times are skipped, distinct pairs still count.
    assert theil_sen_slope(np.array([0.0, 0.0, 1.0]), np.array([1.0, 1.0, 3.0])) == pytest.approx(2.0)


def test_slope_is_per_year() -> None:
    t = compute_trend(series("creatinine", [1.0, 1.1, 1.2, 1.3], step=YEAR / 2))
    assert t.slope_per_year == pytest.approx(0.2)
    assert t.span_days == pytest.approx(1.5 * 365.25)


def test_single_point() -> None:
    t = compute_trend(series("creatinine", [1.0]))
    assert (t.n, t.previous, t.delta, t.percent_change, t.slope_per_year) == (1, None, None, None, None)
    assert t.direction == "stable"


def test_empty_series_raises() -> None:
    with pytest.raises(ValueError, match="no points"):
        compute_trend(series("creatinine", []))


# --- facts -----------------------------------------------------------------------------


def test_latest_previous_delta_percent() -> None:
    t = compute_trend(series("ldl", [160.0, 130.0, 120.0, 90.0]))
    assert t.latest.value == 90.0
    assert t.previous is not None
    assert t.previous.value == 120.0
    assert t.delta == pytest.approx(-30.0)
    assert t.percent_change == pytest.approx(-25.0)
    assert t.latest.time == T0 + 3 * YEAR
    assert [s.reference for s in t.sources] == [
        "Observation/o0",
        "Observation/o1",
        "Observation/o2",
        "Observation/o3",
    ]


@pytest.mark.parametrize(("n", "k"), [(1, 1), (2, 1), (3, 1), (5, 1), (6, 2), (8, 2), (9, 3), (40, 3)])
def test_baseline_count(n: int, k: int) -> None:
    assert baseline_count(n) == k


def test_baseline_is_median_of_earliest_points() -> None:
    # 9 points: baseline = median of the first 3 = 1.0, so the early spike (3.0) does not count.
    t = compute_trend(series("creatinine", [1.0, 3.0, 0.9, 1.0, 1.0, 1.1, 1.1, 1.2, 1.2]))
    assert (t.baseline, t.baseline_n) == (1.0, 3)
    assert t.change_from_baseline == pytest.approx(0.2)
    assert t.direction == "stable"


def test_range_crossings() -> None:
    t = compute_trend(series("potassium", [4.0, 5.6, 5.8, 4.5, 3.2, 5.5]))
    kinds = [(c.kind, c.before, c.after) for c in t.crossings]
    assert kinds == [
        ("left", RangeStatus.WITHIN, RangeStatus.ABOVE),
        ("entered", RangeStatus.ABOVE, RangeStatus.WITHIN),
        ("left", RangeStatus.WITHIN, RangeStatus.BELOW),
        ("crossed", RangeStatus.BELOW, RangeStatus.ABOVE),
    ]
    assert t.crossings[0].time == T0 + YEAR


# --- direction -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "direction", "significant"),
    [
        ([1.0, 1.3], "worsened", True),  # exactly the KDIGO 0.3 mg/dL: significant
        ([1.1, 1.4], "worsened", True),  # 0.29999999999999982 in floating point: still the boundary
        ([1.0, 1.29], "stable", False),  # just below
        ([1.5, 1.2], "improved", True),
        ([1.5, 1.21], "stable", False),
    ],
)
def test_lower_is_better_threshold_boundary(values: list[float], direction: str, significant: bool) -> None:
    t = compute_trend(series("creatinine", values))
    assert (t.direction, t.significant) == (direction, significant)
    assert t.threshold == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("values", "direction"),
    [
        ([80.0, 75.0], "worsened"),  # -5: the absolute bound, reached
        ([80.0, 75.5], "stable"),
        ([80.0, 86.0], "improved"),
        ([12.0, 9.0], "worsened"),  # -3 is 25 % of 12: the relative bound is the smaller
        ([12.0, 9.5], "stable"),
    ],
)
def test_higher_is_better_egfr(values: list[float], direction: str) -> None:
    assert compute_trend(series("egfr", values)).direction == direction


@pytest.mark.parametrize(
    ("values", "direction", "reason_part"),
    [
        ([5.8, 4.5], "improved", "nearer to"),  # high -> in range
        ([4.5, 5.8], "worsened", "farther from"),  # in range -> high
        ([3.6, 4.8], "stable", "within"),  # significant move inside the range is not judged
        ([4.0, 4.4], "stable", "below the stability threshold"),
        ([2.6, 3.09], "stable", "below the stability threshold"),  # 0.49: threshold not reached
        ([2.5, 3.0], "improved", "nearer to"),  # 0.5 exactly, still below range but nearer
        ([6.5, 2.9], "improved", "nearer to"),  # 1.4 above -> 0.6 below: nearer, overshooting
    ],
)
def test_in_range_potassium(values: list[float], direction: str, reason_part: str) -> None:
    t = compute_trend(series("potassium", values))
    assert t.direction == direction
    assert reason_part in t.direction_reason
    expected_basis = {
        "nearer to": "reference-range",
        "farther from": "reference-range",
        "within": "within-range",
    }
    assert t.basis == expected_basis.get(reason_part, "below-threshold")


def test_in_range_uses_the_labs_own_range() -> None:
    # Our default high is 5.1; this lab says 5.5, so 5.4 is within and the move is not judged.
    ranges = [(3.5, 5.5), (3.5, 5.5)]
    t = compute_trend(series("potassium", [4.5, 5.4], ranges=ranges))
    assert (t.reference_high, t.direction) == (5.5, "stable")
    # Without the lab's range our default applies: 5.4 is above 5.1, so the same move worsens.
    t_default = compute_trend(series("potassium", [4.5, 5.4]))
    assert (t_default.reference_high, t_default.direction) == (5.1, "worsened")


def test_no_good_direction_is_stable_but_significant() -> None:
    t = compute_trend(series("body_weight", [80.0, 90.0]))
    assert (t.direction, t.significant, t.basis) == ("stable", True, "no-better-direction")
    assert "no better direction" in t.direction_reason


def test_relative_threshold_triglycerides() -> None:
    assert compute_trend(series("triglycerides", [150.0, 179.0])).direction == "stable"  # 19.3 %
    assert compute_trend(series("triglycerides", [150.0, 180.0])).direction == "worsened"  # 20 %


@pytest.mark.parametrize(
    ("values", "ranges", "direction"),
    [
        ([50.0, 30.0], [(10.0, 40.0), (10.0, 40.0)], "improved"),  # entered its range
        ([30.0, 50.0], [(10.0, 40.0), (10.0, 40.0)], "worsened"),  # left it
        ([20.0, 38.0], [(10.0, 40.0), (10.0, 40.0)], "stable"),  # big change, but no crossing: not guessed
        ([20.0, 80.0], None, "stable"),  # no range at all: not judged
    ],
)
def test_unknown_analyte_uses_range_crossings_only(
    values: list[float], ranges: list[tuple[float, float]] | None, direction: str
) -> None:
    t = compute_trend(series(None, values, ranges=ranges))
    assert t.direction == direction
    assert t.threshold is None
    assert t.significant is False
    assert t.direction_reason


def test_direction_uses_latest_not_slope() -> None:
    # A long rise then a recent fall back to baseline: the slope is positive, the latest is not worse.
    t = compute_trend(series("creatinine", [1.0, 1.4, 1.8, 2.2, 2.6, 1.05]))
    assert t.slope_per_year is not None
    assert t.slope_per_year > 0
    assert t.direction == "stable"


def test_a_trend_carries_only_safe_record_text() -> None:
    """Every Trend is built through validation: its name and unit come out without control or
    bidi characters and capped, whoever built it; an unusable name gives the code."""
    t = compute_trend(series("creatinine", [1.0, 1.2]))
    dirty = type(t).model_validate(
        {**t.model_dump(), "display": "Creat\x1b[31m\u202einine" + "x" * 10_000, "unit": "mg/dL\x07"}
    )
    assert not any(c in dirty.display for c in "\x1b\u202e")
    assert dirty.display.startswith("Creat[31minine")
    assert len(dirty.display) <= 160
    assert dirty.unit == "mg/dL"
    nameless = type(t).model_validate({**t.model_dump(), "display": "\u202e\x00"})
    assert nameless.display == t.code
