"""How numbers, censored values and reference ranges are printed (pure)."""

from __future__ import annotations

import re

from agent.testbed.cohort.labpdf.truth import Comparator

__all__ = ["format_number", "parse_censored", "reference_text"]

_CENSORED = re.compile(r"^(<=|>=|<|>)\s*([0-9]+(?:[.,][0-9]+)?)$")


def format_number(value: float, decimals: int, decimal_comma: bool) -> str:
    """``value`` with ``decimals`` places, with a decimal comma when asked."""
    text = f"{value:.{decimals}f}"
    return text.replace(".", ",") if decimal_comma else text


def parse_censored(text: str) -> tuple[Comparator, float] | None:
    """``("<", 0.5)`` for "<0.5" or "<0,5"; None when ``text`` is not a censored number."""
    match = _CENSORED.match(text.strip())
    if match is None:
        return None
    return Comparator(match.group(1)), float(match.group(2).replace(",", "."))


def reference_text(low: float | None, high: float | None, decimals: int, decimal_comma: bool) -> str:
    """ "3.5-5.1", "<200", ">60" or "" as the lab prints the range (a comma lab spaces the dash)."""

    def num(value: float) -> str:
        return format_number(value, decimals, decimal_comma)

    if low is not None and high is not None:
        return f"{num(low)} - {num(high)}" if decimal_comma else f"{num(low)}-{num(high)}"
    if high is not None:
        return f"<{num(high)}"
    if low is not None:
        return f">{num(low)}"
    return ""
