"""Trend plots: byte-identical PNGs (in and across processes), pinned pixels, size, reference band,
PDF markers, bundled fonts, ticks, and the rule that chooses which series get a plot."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image
from trend_samples import lab_trend

from tools.trends import Trend
from tools.writeback.plot_canvas import BOLD_FONT, REGULAR_FONT
from tools.writeback.trend_plots import (
    BAND_COLOR,
    HEIGHT_PX,
    LINE_COLOR,
    MAX_PLOTS,
    PDF_COLOR,
    PDF_POINT_LABEL,
    RENDERER,
    WIDTH_PX,
    date_ticks,
    plot_layout,
    plot_title,
    render_trend_plot,
    series_to_plot,
    value_ticks,
)

REPO = Path(__file__).resolve().parents[2]
CREATININE = lab_trend("creatinine", [1.0, 1.5, 2.5])  # worsened, latest above 0.6-1.3
PDF_REF = "Observation/creatinine-1"


def rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)], dtype=int)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)


def pixel_at(t: Trend, png: bytes, x_frac: float, y: float) -> np.ndarray:
    """The colour at data value ``y`` and ``x_frac`` of the x axis, located via the plot's layout."""
    layout = plot_layout(t)
    x0, x1 = layout.x_limits
    px, py = layout.x_px(x0 + x_frac * (x1 - x0)), layout.y_px(y)
    return np.asarray(pixels(png)[int(py), int(px)], dtype=int)


def near(a: np.ndarray, b: np.ndarray, tol: int = 6) -> bool:
    return bool(np.abs(a - b).max() <= tol)


def test_png_size_and_no_software_metadata() -> None:
    png = render_trend_plot(CREATININE)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.size == (WIDTH_PX, HEIGHT_PX)
    assert "Software" not in image.info
    assert len(png) < 60_000


# The pixels of one plot, pinned: a change of how plots look must come with a new RENDERER (the
# report's identifier hashes it), so that the new report supersedes what the old renderer wrote.
PINNED = {
    "chartagent-plot-canvas/2": "8a14d8b86be301f111a1814d452f7563f3b4bcb4c1db437dc70c28c344f224bf",
}


def test_pixels_are_pinned_to_the_renderer_revision() -> None:
    png = render_trend_plot(CREATININE, frozenset({PDF_REF}))
    digest = hashlib.sha256(pixels(png).astype(np.uint8).tobytes()).hexdigest()
    assert PINNED.get(RENDERER) == digest, "the plot changed: bump RENDERER and pin the new digest"


def test_the_series_is_drawn_where_the_layout_puts_it() -> None:
    png = render_trend_plot(CREATININE)
    image = pixels(png)
    for x, y, _ in plot_layout(CREATININE).points:
        assert near(image[int(y), int(x)], rgb(LINE_COLOR), tol=40)


def test_same_input_same_bytes_within_a_process() -> None:
    refs = frozenset({PDF_REF})
    assert render_trend_plot(CREATININE, refs) == render_trend_plot(CREATININE, refs)
    assert render_trend_plot(CREATININE) != render_trend_plot(CREATININE, refs)


def test_same_input_same_bytes_across_processes() -> None:
    script = (
        "import hashlib, sys\n"
        "from tools.trends import Trend\n"
        "from tools.writeback.trend_plots import render_trend_plot\n"
        "t = Trend.model_validate_json(sys.stdin.read())\n"
        f"print(hashlib.sha256(render_trend_plot(t, frozenset({{{PDF_REF!r}}}))).hexdigest())\n"
    )
    digests = set()
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", script],
            input=CREATININE.model_dump_json(),
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)},
            timeout=120,
            check=True,
        )
        digests.add(done.stdout.strip())
    here = hashlib.sha256(render_trend_plot(CREATININE, frozenset({PDF_REF}))).hexdigest()
    assert digests == {here}


def test_reference_band_is_shaded_between_the_bounds() -> None:
    png = render_trend_plot(CREATININE)
    low, high = CREATININE.reference_low, CREATININE.reference_high
    assert low is not None
    assert high is not None
    # Left of the first point (the x axis is padded), so no line or marker is there.
    assert near(pixel_at(CREATININE, png, 0.02, (low + high) / 2), rgb(BAND_COLOR))
    assert near(pixel_at(CREATININE, png, 0.02, (high + CREATININE.latest.value) / 2), rgb("#ffffff"))
    assert near(pixel_at(CREATININE, png, 0.02, low - 0.05), rgb("#ffffff"))


def test_no_band_without_a_range() -> None:
    t = lab_trend("XYZ", [1.0, 2.0, 1.5], display="Local test", unit="U/L")
    assert (t.reference_low, t.reference_high) == (None, None)
    png = render_trend_plot(t)
    assert near(pixel_at(t, png, 0.02, 1.5), rgb("#ffffff"))
    assert not (np.abs(pixels(png) - rgb(BAND_COLOR)).max(axis=2) <= 3).any()


def test_one_sided_band_runs_to_the_edge() -> None:
    t = lab_trend("egfr", [90.0, 70.0, 50.0])  # >= 60 only
    assert (t.reference_low, t.reference_high) == (60.0, None)
    png = render_trend_plot(t)
    y0, y1 = plot_layout(t).y_limits
    assert near(pixel_at(t, png, 0.02, y1 - 0.03 * (y1 - y0)), rgb(BAND_COLOR))
    assert near(pixel_at(t, png, 0.02, (60.0 + y0) / 2), rgb("#ffffff"))


def test_pdf_points_get_their_own_marker_and_legend_entry() -> None:
    def legend_texts(refs: frozenset[str]) -> list[str]:
        return [entry.label for entry in plot_layout(CREATININE, refs).legend]

    def orange_pixels(refs: frozenset[str]) -> int:
        close = np.abs(pixels(render_trend_plot(CREATININE, refs)) - rgb(PDF_COLOR)).max(axis=2) <= 10
        return int(close.sum())

    assert PDF_POINT_LABEL in legend_texts(frozenset({PDF_REF}))
    assert PDF_POINT_LABEL not in legend_texts(frozenset())
    assert PDF_POINT_LABEL not in legend_texts(frozenset({"Observation/other"}))
    assert orange_pixels(frozenset()) == 0
    assert orange_pixels(frozenset({PDF_REF})) > 20


def test_text_is_set_in_the_bundled_dejavu_font() -> None:
    # By file, from matplotlib's own data: never a system copy of another version.
    bundled = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    assert (REGULAR_FONT.parent, BOLD_FONT.parent) == (bundled, bundled)
    assert (REGULAR_FONT.name, BOLD_FONT.name) == ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")


def test_title_footer_and_axis_labels() -> None:
    layout = plot_layout(CREATININE)
    assert layout.title == "Trend of Creatinine (mg/dL) with reference range"
    assert "AI-generated, preliminary" in layout.footer
    assert (layout.x_label, layout.y_label) == ("Date", "Value (mg/dL)")


def test_plot_title_leaves_out_what_is_missing() -> None:
    assert plot_title(lab_trend("systolic_bp", [120.0, 150.0])) == (
        "Trend of Systolic blood pressure (mmHg) with reference range"
    )
    assert plot_title(lab_trend("XYZ", [1.0, 2.0], display="Local test")) == "Trend of Local test"


def test_dollar_signs_and_long_names_are_plain_text() -> None:
    t = lab_trend("XYZ", [1.0, 3.0], display=r"Cost $\nosuchcommand$", unit="U/L", low=0.0, high=2.0)
    assert Image.open(io.BytesIO(render_trend_plot(t))).size == (WIDTH_PX, HEIGHT_PX)
    long = lab_trend("XYZ", [1.0, 3.0], display="Very long name " * 100, unit="U/L")
    assert Image.open(io.BytesIO(render_trend_plot(long))).size == (WIDTH_PX, HEIGHT_PX)


@pytest.mark.parametrize("values", [[2.0], [2.0, 2.0, 2.0]])
def test_single_point_and_flat_series_render(values: list[float]) -> None:
    t = lab_trend("creatinine", values)
    image = Image.open(io.BytesIO(render_trend_plot(t)))
    assert image.size == (WIDTH_PX, HEIGHT_PX)


# --- which series get a plot ----------------------------------------------------------


def test_selection_keeps_abnormal_or_changing_series_only() -> None:
    normal_stable = lab_trend("potassium", [4.0, 4.1])
    abnormal_only = lab_trend("ldl", [150.0, 148.0])  # stable, but above <= 100
    changing_only = lab_trend("egfr", [90.0, 70.0])  # worsened, still >= 60
    within = lab_trend("glucose", [80.0, 95.0])  # significant move inside the range
    both = lab_trend("creatinine", [1.0, 1.5, 2.5])
    chosen = series_to_plot([normal_stable, abnormal_only, changing_only, within, both])
    assert chosen == [both, abnormal_only, changing_only, within]


def test_selection_puts_worsened_first_then_the_larger_excursion() -> None:
    improved = lab_trend("ldl", [190.0, 120.0])  # abnormal and changing, improved
    slightly = lab_trend("creatinine", [1.0, 1.35], prefix="c1")  # worsened, just above 1.3
    far = lab_trend("creatinine", [1.0, 4.0], prefix="c2", display="Creatinine (other lab)")
    assert series_to_plot([improved, slightly, far]) == [far, slightly, improved]


def test_selection_is_capped() -> None:
    many = [lab_trend("creatinine", [1.0, 1.5 + i / 10], prefix=f"c{i}") for i in range(MAX_PLOTS + 3)]
    chosen = series_to_plot(many)
    assert len(chosen) == MAX_PLOTS
    # The largest excursions survive the cap.
    assert chosen[0] == many[-1]
    assert many[0] not in chosen
    assert series_to_plot(many, limit=2) == chosen[:2]
    assert series_to_plot(many, limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        series_to_plot(many, limit=-1)


@pytest.mark.parametrize(("days", "n"), [(1, 3), (90, 12), (700, 8)])
def test_date_axis_has_a_few_labels(days: int, n: int) -> None:
    t = lab_trend("creatinine", [1.0 + i / 10 for i in range(n)], days=days)
    layout = plot_layout(t)
    labels = [label for _, label in layout.x_ticks]
    assert 2 <= len(labels) <= 6
    assert all(len(label) == 10 for label in labels)  # YYYY-MM-DD
    x0, x1 = layout.x_limits
    assert all(x0 <= day <= x1 for day, _ in layout.x_ticks)


def test_date_ticks_fall_on_days_months_or_years() -> None:
    day = (datetime(2022, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).days
    assert [label for _, label in date_ticks(day, day + 364)] == [
        "2022-01-01", "2022-03-01", "2022-05-01", "2022-07-01", "2022-09-01", "2022-11-01",
    ]  # fmt: skip
    # Weeks: every seventh day number (Thursdays: 1970-01-01 was one).
    assert [label for _, label in date_ticks(day + 0.5, day + 40)] == [
        "2022-01-06", "2022-01-13", "2022-01-20", "2022-01-27", "2022-02-03", "2022-02-10",
    ]  # fmt: skip
    first = (datetime(1, 1, 2, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).days
    assert [label for _, label in date_ticks(first, first + 1_500_000)] == [
        "1000-01-01", "2000-01-01", "3000-01-01", "4000-01-01",
    ]  # fmt: skip


def test_value_ticks_are_round_and_written_with_the_decimals_they_need() -> None:
    assert value_ticks(0.45, 2.63) == [(0.5, "0.5"), (1.0, "1.0"), (1.5, "1.5"), (2.0, "2.0"), (2.5, "2.5")]
    assert [label for _, label in value_ticks(37.0, 95.0)] == ["40", "50", "60", "70", "80", "90"]
    symmetric = ["-0.3", "-0.2", "-0.1", "0.0", "0.1", "0.2", "0.3"]  # no "-0.0"
    assert [label for _, label in value_ticks(-0.35, 0.35)] == symmetric
    assert [label for _, label in value_ticks(0.9, 2.45)][:2] == ["1.00", "1.25"]


# --- hostile input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days"),
    [
        (datetime(1, 1, 1, tzinfo=UTC), 1),  # padding before year 1 overflowed
        (datetime(9999, 12, 1, tzinfo=UTC), 10),  # and after 9999
        (datetime(1, 1, 1, tzinfo=UTC), 1_500_000),  # year 1 to 8213
    ],
)
def test_dates_at_the_ends_of_the_calendar_do_not_overflow(start: datetime, days: int) -> None:
    # The series never holds such dates (tools.labs.plausibility); a Trend built elsewhere might.
    t = lab_trend("creatinine", [1.0, 1.5, 2.0], start=start, days=days)
    assert Image.open(io.BytesIO(render_trend_plot(t))).size == (WIDTH_PX, HEIGHT_PX)


def test_a_time_without_a_utc_equivalent_is_a_value_error() -> None:
    t = lab_trend("creatinine", [1.0, 1.5], start=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))))
    with pytest.raises(ValueError, match="outside the calendar"):
        render_trend_plot(t)


def test_control_and_bidi_characters_never_reach_the_plot() -> None:
    t = lab_trend(
        "XYZ", [1.0, 3.0], display="Vit\x1b[31m D\x07\x00\u202e", unit="ng/mL\u2066", low=0.0, high=2.0
    )
    assert plot_title(t) == "Trend of Vit[31m D (ng/mL) with reference range"
    texts = plot_layout(t).texts
    assert not any(c in s for s in texts for c in "\x1b\x07\x00\u202e\u2066")
