"""The clinician-facing trend summary, templated from computed facts only (pure, no model).

Every number, unit and date in the text comes from a ``Trend`` field; nothing is inferred,
recommended or paraphrased. Order: worsened first (what needs attention), then improved, then
significant changes inside the reference range, then significant changes of series with no
better direction (body weight), then stable series in one line.
The header says the text is automatically computed and needs review, because it is written
back to the chart as an AI-asserted DiagnosticReport conclusion.

Names and units come from the record: ``Trend`` made them safe (``tools.text_safety.safe_text``).
``exclusion_lines`` lists the results the trends could not use (``SeriesSet.excluded()``), by
reference and reason, at most ``MAX_EXCLUSION_LINES`` of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from tools.labs.analytes import ANALYTES
from tools.labs.series import SkippedPoint
from tools.text_safety import safe_text
from tools.trends import ALGORITHM_REVISION, ENGINE_NAME, Trend

__all__ = [
    "HEADER",
    "MAX_EXCLUSION_LINES",
    "exclusion_lines",
    "format_day",
    "format_number",
    "render_summary",
    "unit_display",
]

HEADER: Final = (
    f"AI-generated, automatically computed lab trend summary ({ENGINE_NAME}, rule revision "
    f"{ALGORITHM_REVISION}). Not reviewed: verify against the source results before clinical use."
)

# UCUM codes are exact but unfriendly; these are the few that read badly in prose.
_UNIT_DISPLAY: Final[dict[str, str]] = {
    "mm[Hg]": "mmHg",
    "mL/min/{1.73_m2}": "mL/min/1.73m2",
    "[lb_av]": "lb",
    "10*3/uL": "x10^3/uL",
    "10*6/uL": "x10^6/uL",
    "Cel": "°C",
}
_ORDER: Final = {a.key: i for i, a in enumerate(ANALYTES)}
# A record with hundreds of broken results still gets a readable report; the facts list them all.
MAX_EXCLUSION_LINES: Final = 50


def format_number(x: float, signed: bool = False) -> str:
    """A lab value as text: three significant figures, large numbers keep their integer part."""
    text = f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"
    return f"+{text}" if signed and x > 0 else text


def unit_display(unit: str | None) -> str:
    """The unit as a reader writes it (``mm[Hg]`` -> ``mmHg``); empty for no unit."""
    return _UNIT_DISPLAY.get(unit, unit) if unit else ""


def _unit(trend: Trend) -> str:
    return " " + unit_display(trend.unit) if trend.unit else ""


def format_day(t: datetime) -> str:
    """The calendar date of ``t`` in its own offset, ISO 8601."""
    return t.date().isoformat()


def _changed_line(t: Trend, label: str) -> str:
    u = _unit(t)
    first = "first result" if t.baseline_n == 1 else f"median of the first {t.baseline_n} results"
    parts = [
        f"- {t.display} {label}: {format_number(t.latest.value)}{u} on {format_day(t.latest.time)}, "
        f"from a baseline of {format_number(t.baseline)}{u} ({first}, from {format_day(t.first.time)}); "
        f"change {format_number(t.change_from_baseline, signed=True)}{u}"
    ]
    if t.threshold is not None:
        parts.append(f" (threshold {format_number(t.threshold)}{u})")
    parts.append(".")
    if t.slope_per_year is not None:
        parts.append(
            f" Slope {format_number(t.slope_per_year, signed=True)}{u}/year over {t.n} results, "
            f"{format_day(t.first.time)} to {format_day(t.latest.time)}."
        )
    if t.crossings:
        last = t.crossings[-1]
        what = {"entered": "Entered", "left": "Left", "crossed": "Crossed"}[last.kind]
        side = "" if last.kind == "entered" else f" ({last.after.value})"
        parts.append(f" {what} the reference range{side} on {format_day(last.time)}")
        if len(t.crossings) > 1:
            parts.append(f"; {len(t.crossings)} range changes in all")
        parts.append(".")
    elif t.threshold is None:
        parts.append(f" {t.direction_reason[:1].upper()}{t.direction_reason[1:]}.")
    return "".join(parts)


def _stable_item(t: Trend) -> str:
    return f"{t.display} {format_number(t.latest.value)}{_unit(t)} ({format_day(t.latest.time)}, n={t.n})"


def render_summary(
    patient_display: str | None,
    trends: Sequence[Trend],
    *,
    as_of: datetime | None = None,
) -> str:
    """Render the summary text; deterministic for the same inputs (no clock is read)."""
    lines = [HEADER]
    # The report's subject already identifies the patient; a name is only shown when given.
    header_line = [f"Patient: {patient_display}."] if patient_display else []
    if as_of is not None:
        header_line.append(f"Results up to {format_day(as_of)}.")
    if header_line:
        lines.append(" ".join(header_line))

    def order(t: Trend) -> tuple[int, str, str]:
        return (_ORDER.get(t.analyte_key or "", len(_ORDER)), t.display.lower(), t.code)

    ordered = sorted(trends, key=order)
    worsened = [t for t in ordered if t.direction == "worsened"]
    improved = [t for t in ordered if t.direction == "improved"]
    within = [t for t in ordered if t.basis == "within-range"]
    unjudged = [t for t in ordered if t.basis == "no-better-direction"]
    stable = [
        t
        for t in ordered
        if t.direction == "stable" and t.basis not in ("within-range", "no-better-direction")
    ]

    if not ordered:
        lines.append("No numeric results with a usable time were available to summarise.")
        return "\n".join(lines) + "\n"
    lines.append(
        f"{len(ordered)} series: {len(worsened)} worsened, {len(improved)} improved, "
        f"{len(stable) + len(within) + len(unjudged)} stable."
    )
    if worsened:
        lines += ["", "Worsened:"] + [_changed_line(t, "worsened") for t in worsened]
    if improved:
        lines += ["", "Improved:"] + [_changed_line(t, "improved") for t in improved]
    if within:
        lines += ["", "Changed within the reference range (counted as stable):"]
        lines += [_changed_line(t, "changed") for t in within]
    if unjudged:
        lines += ["", "Changed, direction not judged (no better direction defined):"]
        lines += [_changed_line(t, "changed") for t in unjudged]
    if stable:
        lines += ["", "Stable: " + "; ".join(_stable_item(t) for t in stable) + "."]
    return "\n".join(lines) + "\n"


def exclusion_lines(excluded: Sequence[SkippedPoint], *, limit: int = MAX_EXCLUSION_LINES) -> list[str]:
    """A heading and one ``- Observation/<id> (<code>): <reason>`` line per excluded result, in the
    order given (``SeriesSet.excluded()`` is sorted); empty when nothing was excluded. Reasons
    carry no values or dates, so neither do these lines."""
    if not excluded:
        return []
    n = len(excluded)
    lines = [f"Results not used in the trends ({n}), for review against the record:"]
    for p in excluded[:limit]:
        ref = f"Observation/{p.observation_id}" if p.observation_id else "an Observation without id"
        code = f" ({safe_text(p.code, limit=64)})" if p.code else ""
        lines.append(f"- {ref}{code}: {safe_text(p.detail)}")
    if n > limit:
        lines.append(f"- and {n - limit} more, not listed here.")
    return lines
