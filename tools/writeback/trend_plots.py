"""Trend plots for the longitudinal report: one PNG per abnormal or changing series (pure).

Data in, PNG bytes out, byte-identical for the same input: the report's identifier hashes the
image, so a nondeterministic byte would defeat idempotency. Hence:

* ``matplotlib.figure.Figure`` drawn by ``FigureCanvasAgg`` directly: no pyplot, no global
  backend switch, no figure registry (nothing leaks between calls or threads);
* fixed size and dpi (640 x 360 px at 100 dpi), fixed margins (no tight bbox), explicit colours;
* every text set in the DejaVu Sans files bundled with matplotlib, by file path: a family name
  would go through the font manager, which may pick a system copy of another version;
* PNG metadata without ``Software`` (the only non-image chunk matplotlib writes by default).

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

import io
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import matplotlib
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import ScalarFormatter

from tools.narrative import unit_display
from tools.text_safety import safe_text
from tools.trends import Trend
from tools.writeback.trend_table import range_text

__all__ = [
    "DPI",
    "HEIGHT_PX",
    "MAX_PLOTS",
    "PDF_POINT_LABEL",
    "PLOT_FOOTER",
    "WIDTH_PX",
    "is_abnormal",
    "is_changing",
    "plot_title",
    "render_trend_plot",
    "series_to_plot",
    "trend_figure",
]

MAX_PLOTS: Final = 12
WIDTH_PX: Final = 640
HEIGHT_PX: Final = 360
DPI: Final = 100
PLOT_FOOTER: Final = "AI-generated, preliminary - review before use"
PDF_POINT_LABEL: Final = "From a PDF report (AI-transcribed)"

# Colours are fixed here, not taken from rcParams, so another module's style cannot change the bytes.
LINE_COLOR: Final = "#1f4e79"
PDF_COLOR: Final = "#d95f02"
BAND_COLOR: Final = "#d6ecd2"
_TEXT_COLOR: Final = "#222222"
_FOOTER_COLOR: Final = "#666666"
# Axes box in figure fractions: room for title and legend above, dates and footer below.
_AXES_BOX: Final = {"left": 0.11, "right": 0.97, "top": 0.80, "bottom": 0.20}

_FONT_DIR: Final = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
_REGULAR: Final = _FONT_DIR / "DejaVuSans.ttf"
_BOLD: Final = _FONT_DIR / "DejaVuSans-Bold.ttf"
_DIRECTION_ORDER: Final = {"worsened": 0, "improved": 1, "stable": 2}


def _font(size: float, bold: bool = False) -> FontProperties:
    return FontProperties(fname=_BOLD if bold else _REGULAR, size=size)


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
    # A '$' pair would be parsed as mathtext; control and bidi characters have no glyph (and
    # could spoof the order). Lab names are plain text.
    return safe_text(text, limit=None).replace("$", r"\$")


def _date_num(t: datetime | list[datetime]) -> Any:
    return mdates.date2num(t)  # type: ignore[no-untyped-call]


# matplotlib dates run from year 1 to 9999; the axis limits stay a day inside.
_FIRST_DAY: Final = float(mdates.date2num(datetime(1, 1, 2, tzinfo=UTC)))  # type: ignore[no-untyped-call]
_LAST_DAY: Final = float(mdates.date2num(datetime(9999, 12, 30, tzinfo=UTC)))  # type: ignore[no-untyped-call]


def _padded(lo: float, hi: float, fraction: float, minimum: float) -> tuple[float, float]:
    pad = max((hi - lo) * fraction, minimum)
    return lo - pad, hi + pad


def trend_figure(trend: Trend, document_refs: frozenset[str] = frozenset()) -> Figure:
    """The drawn-ready figure of one series (exposed so that tests can read its geometry)."""
    if not trend.sources:
        raise ValueError(f"trend of {trend.code} has no points to plot")
    try:
        times = [s.time.astimezone(UTC) for s in trend.sources]
    except OverflowError as exc:  # 0001-01-01T00:00+05:00 has no UTC time
        raise ValueError(f"trend of {trend.code} has a time outside the calendar") from exc
    values = [s.value for s in trend.sources]
    from_pdf = [s.reference in document_refs for s in trend.sources]
    low, high = trend.reference_low, trend.reference_high
    unit = unit_display(trend.unit)

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    fig.subplots_adjust(**_AXES_BOX)
    ax = fig.add_subplot()
    ax.set_facecolor("white")

    # Limits first: a one-sided band runs to the edge of the plot.
    span_lo = min([*values, *(b for b in (low, high) if b is not None)])
    span_hi = max([*values, *(b for b in (low, high) if b is not None)])
    y0, y1 = _padded(span_lo, span_hi, 0.08, max(abs(span_hi), 1.0) * 0.05)
    # In day numbers, not datetimes: padding a date near year 1 or 9999 must not overflow (the
    # series never holds such dates, tools.labs.plausibility; a Trend built elsewhere might).
    x0, x1 = float(_date_num(min(times))), float(_date_num(max(times)))
    x_pad = max((x1 - x0) * 0.05, 15.0)
    ax.set_xlim(max(x0 - x_pad, _FIRST_DAY), min(x1 + x_pad, _LAST_DAY))
    ax.set_ylim(y0, y1)

    handles: list[Line2D | Patch] = []
    if low is not None or high is not None:
        band_lo = low if low is not None else y0
        band_hi = high if high is not None else y1
        ax.axhspan(band_lo, band_hi, facecolor=BAND_COLOR, edgecolor="none", zorder=0)
        label = f"Reference range {range_text(low, high)}"
        handles.append(Patch(facecolor=BAND_COLOR, edgecolor="none", label=label))

    x = _date_num(times)
    ax.plot(x, values, color=LINE_COLOR, linewidth=1.5, zorder=2)
    lab = [(xi, v) for xi, v, pdf in zip(x, values, from_pdf, strict=True) if not pdf]
    pdf = [(xi, v) for xi, v, is_pdf in zip(x, values, from_pdf, strict=True) if is_pdf]
    if lab:
        ax.plot(
            *zip(*lab, strict=True), linestyle="none", marker="o", markersize=5, color=LINE_COLOR, zorder=3
        )
        handles.insert(
            0, Line2D([], [], color=LINE_COLOR, marker="o", markersize=5, linewidth=1.5, label="Result")
        )
    if pdf:
        ax.plot(
            *zip(*pdf, strict=True),
            linestyle="none",
            marker="D",
            markersize=7,
            markerfacecolor="white",
            markeredgecolor=PDF_COLOR,
            markeredgewidth=2,
            zorder=4,
        )
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="D",
                markersize=7,
                markerfacecolor="white",
                markeredgecolor=PDF_COLOR,
                markeredgewidth=2,
                label=PDF_POINT_LABEL,
            )
        )

    # matplotlib.dates is untyped; these calls take and return plain values.
    locator = mdates.AutoDateLocator(tz=UTC, minticks=2, maxticks=6)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d", tz=UTC))  # type: ignore[no-untyped-call]
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    ax.yaxis.set_major_formatter(formatter)
    ax.tick_params(labelsize=8, colors=_TEXT_COLOR)
    ax.set_xlabel("Date", fontproperties=_font(9), color=_TEXT_COLOR)
    ax.set_ylabel(_plain(f"Value ({unit})" if unit else "Value"), fontproperties=_font(9), color=_TEXT_COLOR)

    fig.text(0.02, 0.95, _plain(plot_title(trend)), fontproperties=_font(11, bold=True), color=_TEXT_COLOR)
    ax.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.01),
        ncols=len(handles),
        frameon=False,
        prop=_font(8),
        handlelength=1.8,
        borderaxespad=0.0,
    )
    fig.text(0.99, 0.015, PLOT_FOOTER, ha="right", fontproperties=_font(7), color=_FOOTER_COLOR)

    # Tick labels are made from the locators when asked for (matplotlib's ``_update_ticks``, the
    # same step a draw runs): set their font by file now, so that the one draw, savefig's, is final.
    tick_font = _font(8)
    for tick_label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        tick_label.set_fontproperties(tick_font)
    return fig


def render_trend_plot(trend: Trend, document_refs: frozenset[str] = frozenset()) -> bytes:
    """The PNG of one series: 640 x 360 px, byte-identical for the same input."""
    fig = trend_figure(trend, document_refs)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buf.getvalue()
