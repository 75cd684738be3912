"""Trend plots for the longitudinal report: one PNG per abnormal or changing series (pure).

Data in, PNG bytes out, byte-identical for the same input: the report's identifier hashes the
image, so a nondeterministic byte would defeat idempotency. ``plot_layout`` places everything in
pixels (axes box, limits, ticks, texts, legend, points); ``render_trend_plot`` draws that layout
on ``tools.writeback.plot_canvas`` (numpy, FreeType glyphs from matplotlib's bundled DejaVu Sans,
zlib): about a millisecond or two a plot where matplotlib's figure took about 60 ms.
``RENDERER`` names this drawing code: the report's identifier hashes it with the images, so a
report drawn by another renderer (matplotlib's, up to 2026-12) gets a new identifier and its
transaction supersedes the older report instead of colliding with it. Change it with any change
of what a plot looks like.

Selection (``series_to_plot``): a series is plotted when it is *abnormal* (its latest value lies
outside the reference range used for its direction) or *changing* (direction not ``stable``, or
a significant change from baseline: the same facts that give the trend Observation its B/W/U/D
interpretation flags). At most ``MAX_PLOTS``, most abnormal and most changed first: abnormal and
changing, then abnormal only, then changing only; within each, worsened before improved before
the rest, then the larger distance outside the range (relative to the range), then the larger
change relative to the stability threshold, then by name. ``Trend`` carries no interpretation
code of the source results (H, L, A), so a lab's own flag alone cannot select a series.

Points that came from a transcribed PDF report (``document_refs``: their source references)
get a hollow orange diamond and a legend entry of their own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from tools.narrative import unit_display
from tools.text_safety import safe_text
from tools.trends import Trend
from tools.writeback.plot_canvas import Canvas, Glyphs, hex_rgb, text_bitmap
from tools.writeback.trend_table import range_text

__all__ = [
    "HEIGHT_PX",
    "MAX_PLOTS",
    "PDF_POINT_LABEL",
    "PLOT_FOOTER",
    "RENDERER",
    "WIDTH_PX",
    "LegendEntry",
    "PlotLayout",
    "date_ticks",
    "is_abnormal",
    "is_changing",
    "plot_layout",
    "plot_title",
    "render_trend_plot",
    "series_to_plot",
    "value_ticks",
]

MAX_PLOTS: Final = 12
WIDTH_PX: Final = 640
HEIGHT_PX: Final = 360
PLOT_FOOTER: Final = "AI-generated, preliminary - review before use"
PDF_POINT_LABEL: Final = "From a PDF report (AI-transcribed)"
# Part of the summary report's identifier (with the images): bump it with any visible change.
RENDERER: Final = "chartagent-plot-canvas/2"

LINE_COLOR: Final = "#1f4e79"
PDF_COLOR: Final = "#d95f02"
BAND_COLOR: Final = "#d6ecd2"
_TEXT_COLOR: Final = "#222222"
_FOOTER_COLOR: Final = "#666666"
_SPINE_COLOR: Final = "#000000"
# Axes box in pixels (left, top, right, bottom): room for title and legend above, dates and
# footer below, the value labels on the left.
_BOX: Final = (70, 72, 621, 288)
_TICK_PX: Final = 5
_PAD_PX: Final = 5
_LINE_PX: Final = 2.0
_DOT_RADIUS: Final = 3.5
_DIAMOND_RADIUS: Final = 5.5
_DIAMOND_EDGE: Final = 2.0
_DIRECTION_ORDER: Final = {"worsened": 0, "improved": 1, "stable": 2}
# Day numbers count days from 1970-01-01 UTC; the axis stays a day inside years 1 to 9999.
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DAY: Final = timedelta(days=1)
_FIRST_DAY: Final = (datetime(1, 1, 2, tzinfo=UTC) - _EPOCH) / _DAY
_LAST_DAY: Final = (datetime(9999, 12, 30, tzinfo=UTC) - _EPOCH) / _DAY
# Date tick spacings, finest first: (unit, step); the first that gives at most _MAX_DATE_TICKS wins.
_DATE_STEPS: Final[tuple[tuple[Literal["day", "month", "year"], int], ...]] = (
    *(("day", n) for n in (1, 2, 3, 7, 14)),
    *(("month", n) for n in (1, 2, 3, 4, 6)),
    *(("year", n) for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)),
)
_APPROX_DAYS: Final = {"day": 1.0, "month": 30.4, "year": 365.25}
_MAX_DATE_TICKS: Final = 6
_MAX_VALUE_TICKS: Final = 7
_NICE: Final = (1.0, 2.0, 2.5, 5.0)


def _outside_distance(t: Trend) -> float:
    """How far the latest value lies outside the reference range, relative to the range (0 inside)."""
    low, high, v = t.reference_low, t.reference_high, t.latest.value
    if low is not None and v < low:
        gap, bound = low - v, low
    elif high is not None and v > high:
        gap, bound = v - high, high
    else:
        return 0.0
    scale = high - low if low is not None and high is not None and high > low else abs(bound)
    return gap / scale if scale > 0 else gap


def is_abnormal(t: Trend) -> bool:
    """The latest value lies outside the series' reference range (one bound is enough)."""
    low, high, v = t.reference_low, t.reference_high, t.latest.value
    return (low is not None and v < low) or (high is not None and v > high)


def is_changing(t: Trend) -> bool:
    """A direction other than stable, or a significant change from baseline."""
    return t.direction != "stable" or t.significant


def series_to_plot(trends: Iterable[Trend], *, limit: int = MAX_PLOTS) -> list[Trend]:
    """The series worth a plot, most abnormal and most changed first, at most ``limit``."""
    if limit < 0:
        raise ValueError("limit must be >= 0")

    def rank(t: Trend) -> tuple[int, int, float, float, str, str, str]:
        abnormal, changing = is_abnormal(t), is_changing(t)
        tier = 0 if abnormal and changing else 1 if abnormal else 2
        change = abs(t.change_from_baseline) / t.threshold if t.threshold else 0.0
        return (
            tier,
            _DIRECTION_ORDER[t.direction],
            -_outside_distance(t),
            -change,
            t.display.lower(),
            t.code,
            t.system or "",
        )

    chosen = [t for t in trends if is_abnormal(t) or is_changing(t)]
    return sorted(chosen, key=rank)[:limit]


def plot_title(t: Trend) -> str:
    """``Trend of <display> (<unit>) with reference range``; parts without data are left out."""
    unit = unit_display(t.unit)
    title = f"Trend of {t.display}" + (f" ({unit})" if unit else "")
    has_range = t.reference_low is not None or t.reference_high is not None
    return title + (" with reference range" if has_range else "")


def _plain(text: str) -> str:
    # Control and bidi characters have no glyph (and could spoof the order); a long name is cut.
    return safe_text(text, limit=200)


def _padded(lo: float, hi: float, fraction: float, minimum: float) -> tuple[float, float]:
    pad = max((hi - lo) * fraction, minimum)
    return lo - pad, hi + pad


def _day_number(t: datetime) -> float:
    return (t - _EPOCH) / _DAY


def _date_candidates(unit: str, step: int, lo: float, hi: float) -> Iterator[tuple[float, str]]:
    """Ticks of ``step`` ``unit``s inside [lo, hi] (day numbers): (day number, YYYY-MM-DD)."""
    first = (_EPOCH + timedelta(days=math.ceil(lo))).date()
    last = (_EPOCH + timedelta(days=math.floor(hi))).date()
    if unit == "day":
        day = math.ceil(lo / step) * step
        while day <= hi:
            d = (_EPOCH + timedelta(days=day)).date()
            yield float(day), f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
            day += step
        return
    if unit == "month":
        month = first.year * 12 + first.month - 1 + (0 if first.day == 1 else 1)
        while True:
            year, m0 = divmod(month, 12)
            if m0 % step:
                month += 1
                continue
            if year > last.year or (year == last.year and m0 + 1 > last.month):
                return
            yield _day_number(datetime(year, m0 + 1, 1, tzinfo=UTC)), f"{year:04d}-{m0 + 1:02d}-01"
            month += step
    year = first.year + (0 if (first.month, first.day) == (1, 1) else 1)
    year = max(-(-year // step) * step, step)
    while year <= last.year:
        yield _day_number(datetime(year, 1, 1, tzinfo=UTC)), f"{year:04d}-01-01"
        year += step


def date_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """At most six date ticks on [lo, hi] (day numbers): the finest of days, weeks, months or
    years that gives no more, each tick at the start of its day, month or year."""
    for unit, step in _DATE_STEPS:
        if (hi - lo) / (_APPROX_DAYS[unit] * step) > _MAX_DATE_TICKS + 1:
            continue
        ticks: list[tuple[float, str]] = []
        for tick in _date_candidates(unit, step, lo, hi):
            ticks.append(tick)
            if len(ticks) > _MAX_DATE_TICKS:
                break
        if len(ticks) <= _MAX_DATE_TICKS:
            return ticks
    return []


def value_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """At most seven round values on [lo, hi] (steps 1, 2, 2.5, 5 times a power of ten), written
    with the decimals the step needs."""
    span = hi - lo
    # Only where the search starts (a step below 10**exponent gives too many ticks), so a last-bit
    # difference of log10 between machines cannot change the ticks.
    exponent = math.floor(math.log10(span / _MAX_VALUE_TICKS)) if span > 0 else 0
    for k in range(exponent - 1, exponent + 3):
        for nice in _NICE:
            # A power of ten as an exact integer: no libm pow, the same step on every machine.
            step = nice * 10**k if k >= 0 else nice / 10 ** (-k)
            first, last = math.ceil(lo / step), math.floor(hi / step)
            if last - first + 1 <= _MAX_VALUE_TICKS:
                decimals = max(0, -k + (1 if nice == 2.5 else 0))
                return [(i * step, _number(i * step, decimals)) for i in range(first, last + 1)]
    return []


def _number(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


@dataclass(frozen=True)
class LegendEntry:
    kind: Literal["result", "band", "pdf"]
    label: str


@dataclass(frozen=True)
class PlotLayout:
    """Everything a plot shows, in pixels (origin top left); ``x_limits`` in day numbers."""

    x_limits: tuple[float, float]
    y_limits: tuple[float, float]
    box: tuple[int, int, int, int]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    title: str
    x_label: str
    y_label: str
    footer: str
    legend: list[LegendEntry]
    # (x, y, from a PDF report) of every point, in the series' order.
    points: list[tuple[float, float, bool]]
    band: tuple[float, float] | None

    def x_px(self, day: float) -> float:
        (x0, x1), (left, _, right, _) = self.x_limits, self.box
        return left + (day - x0) / (x1 - x0) * (right - left)

    def y_px(self, value: float) -> float:
        (y0, y1), (_, top, _, bottom) = self.y_limits, self.box
        return top + (y1 - value) / (y1 - y0) * (bottom - top)

    @property
    def texts(self) -> list[str]:
        ticks = [label for _, label in [*self.x_ticks, *self.y_ticks]]
        return [self.title, *[e.label for e in self.legend], *ticks, self.x_label, self.y_label, self.footer]


def plot_layout(trend: Trend, document_refs: frozenset[str] = frozenset()) -> PlotLayout:
    """Where everything of one series' plot goes (exposed so that tests can read its geometry)."""
    if not trend.sources:
        raise ValueError(f"trend of {trend.code} has no points to plot")
    try:
        times = [s.time.astimezone(UTC) for s in trend.sources]
    except OverflowError as exc:  # 0001-01-01T00:00+05:00 has no UTC time
        raise ValueError(f"trend of {trend.code} has a time outside the calendar") from exc
    values = [s.value for s in trend.sources]
    low, high = trend.reference_low, trend.reference_high
    unit = unit_display(trend.unit)

    # Limits first: a one-sided band runs to the edge of the plot.
    bounds = [b for b in (low, high) if b is not None]
    span_lo, span_hi = min([*values, *bounds]), max([*values, *bounds])
    y0, y1 = _padded(span_lo, span_hi, 0.08, max(abs(span_hi), 1.0) * 0.05)
    days = [_day_number(t) for t in times]
    x_pad = max((max(days) - min(days)) * 0.05, 15.0)
    x0, x1 = max(min(days) - x_pad, _FIRST_DAY), min(max(days) + x_pad, _LAST_DAY)

    legend: list[LegendEntry] = []
    from_pdf = [s.reference in document_refs for s in trend.sources]
    if not all(from_pdf):
        legend.append(LegendEntry("result", "Result"))
    if bounds:
        legend.append(LegendEntry("band", f"Reference range {range_text(low, high)}"))
    if any(from_pdf):
        legend.append(LegendEntry("pdf", PDF_POINT_LABEL))
    layout = PlotLayout(
        x_limits=(x0, x1),
        y_limits=(y0, y1),
        box=_BOX,
        x_ticks=date_ticks(x0, x1),
        y_ticks=value_ticks(y0, y1),
        title=_plain(plot_title(trend)),
        x_label="Date",
        y_label=_plain(f"Value ({unit})" if unit else "Value"),
        footer=PLOT_FOOTER,
        legend=legend,
        points=[],
        band=None,
    )
    points = [(layout.x_px(d), layout.y_px(v), pdf) for d, v, pdf in zip(days, values, from_pdf, strict=True)]
    band = None
    if bounds:
        band = (layout.y_px(high if high is not None else y1), layout.y_px(low if low is not None else y0))
    return PlotLayout(**{**layout.__dict__, "points": points, "band": band})


def _draw_legend_handle(canvas: Canvas, kind: str, left: float, middle: float) -> None:
    if kind == "result":
        line = hex_rgb(LINE_COLOR)
        canvas.polyline([(left, middle), (left + 20, middle)], _LINE_PX, line)
        canvas.disc(left + 10, middle, _DOT_RADIUS, line)
    elif kind == "band":
        canvas.fill_rect(left, middle - 3.5, left + 20, middle + 3.5, hex_rgb(BAND_COLOR))
    else:
        canvas.diamond(
            left + 10, middle, _DIAMOND_RADIUS, _DIAMOND_EDGE, hex_rgb("#ffffff"), hex_rgb(PDF_COLOR)
        )


def _put(canvas: Canvas, glyphs: Glyphs, x: float, baseline: float, align: str, color: str) -> None:
    """Text whose baseline is at ``baseline``, left/centre/right-aligned on ``x``."""
    shift = {"left": 0.0, "center": glyphs.width / 2, "right": float(glyphs.width)}[align]
    canvas.text(glyphs, x - shift, baseline - glyphs.baseline, hex_rgb(color))


def render_trend_plot(trend: Trend, document_refs: frozenset[str] = frozenset()) -> bytes:
    """The PNG of one series: 640 x 360 px, byte-identical for the same input."""
    layout = plot_layout(trend, document_refs)
    left, top, right, bottom = layout.box
    canvas = Canvas(WIDTH_PX, HEIGHT_PX)
    text, spine = hex_rgb(_TEXT_COLOR), hex_rgb(_SPINE_COLOR)
    if layout.band is not None:
        band_top, band_bottom = layout.band
        canvas.fill_rect(left, max(band_top, top), right, min(band_bottom, bottom), hex_rgb(BAND_COLOR))

    # Ticks and their labels, outside the box.
    for day, label in layout.x_ticks:
        x = layout.x_px(day)
        canvas.fill_rect(x - 0.5, bottom, x + 0.5, bottom + _TICK_PX, text)
        glyphs = text_bitmap(label, 8)
        _put(canvas, glyphs, x, bottom + _TICK_PX + _PAD_PX + 9, "center", _TEXT_COLOR)
    widest = 0
    for value, label in layout.y_ticks:
        y = layout.y_px(value)
        canvas.fill_rect(left - _TICK_PX, y - 0.5, left, y + 0.5, text)
        glyphs = text_bitmap(label, 8)
        widest = max(widest, glyphs.width)
        _put(canvas, glyphs, left - _TICK_PX - _PAD_PX, y + 4, "right", _TEXT_COLOR)
    x_label = text_bitmap(layout.x_label, 9)
    _put(canvas, x_label, (left + right) / 2, bottom + _TICK_PX + _PAD_PX + 30, "center", _TEXT_COLOR)
    y_label = text_bitmap(layout.y_label, 9).rotated()
    y_left = max(left - _TICK_PX - 2 * _PAD_PX - widest - y_label.width, 1)
    canvas.text(y_label, y_left, (top + bottom) / 2 - y_label.height / 2, text)

    # The series: line, then the lab's points, then the transcribed ones on top.
    points = layout.points
    canvas.polyline([(x, y) for x, y, _ in points], _LINE_PX, hex_rgb(LINE_COLOR))
    for x, y, pdf in points:
        if not pdf:
            canvas.disc(x, y, _DOT_RADIUS, hex_rgb(LINE_COLOR))
    for x, y, pdf in points:
        if pdf:
            canvas.diamond(x, y, _DIAMOND_RADIUS, _DIAMOND_EDGE, hex_rgb("#ffffff"), hex_rgb(PDF_COLOR))

    # The box over the data (matplotlib's spines), then title, legend and footer.
    for x0, y0, x1, y1 in (
        (left - 0.5, top - 0.5, right + 0.5, top + 0.5),
        (left - 0.5, bottom - 0.5, right + 0.5, bottom + 0.5),
        (left - 0.5, top - 0.5, left + 0.5, bottom + 0.5),
        (right - 0.5, top - 0.5, right + 0.5, bottom + 0.5),
    ):
        canvas.fill_rect(x0, y0, x1, y1, spine)
    _put(canvas, text_bitmap(layout.title, 11, bold=True), 13, 18, "left", _TEXT_COLOR)
    x, middle = float(left + 3), top - 14.0
    for entry in layout.legend:
        _draw_legend_handle(canvas, entry.kind, x, middle)
        glyphs = text_bitmap(entry.label, 8)
        _put(canvas, glyphs, x + 29, middle + 4, "left", _TEXT_COLOR)
        x += 29 + glyphs.width + 22
    _put(canvas, text_bitmap(layout.footer, 7), WIDTH_PX - 7, HEIGHT_PX - 6, "right", _FOOTER_COLOR)
    return canvas.png()
