"""Trends for the longitudinal-report tests, computed by the real trend engine from small series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tools.labs.analytes import ANALYTES, LOINC_SYSTEM, get_analyte
from tools.labs.series import LabPoint, LabSeries
from tools.trends import Trend, compute_trend

T0 = datetime(2022, 1, 10, 8, 0, tzinfo=UTC)
SUBJECT = "Patient/p1"
_KEYS = {a.key for a in ANALYTES}


def lab_trend(
    key: str,
    values: list[float],
    *,
    display: str | None = None,
    unit: str | None = None,
    low: float | None = None,
    high: float | None = None,
    prefix: str | None = None,
    days: int = 90,
    start: datetime = T0,
) -> Trend:
    """A trend of ``values`` every ``days`` days from ``start``.

    ``key`` names an analyte of the table, or else is a local code (then ``display``/``unit``
    describe it). ``low``/``high`` are the lab's own range on every point (it overrides the
    analyte's default). Points are ``Observation/<prefix or key>-<i>``.
    """
    analyte = get_analyte(key) if key in _KEYS else None
    points = tuple(
        LabPoint(
            time=start + timedelta(days=days * i),
            value=v,
            original_value=v,
            original_unit=unit or (analyte.unit if analyte else None),
            observation_id=f"{prefix or key}-{i}",
            observation_version="1",
            reference_low=low,
            reference_high=high,
        )
        for i, v in enumerate(values)
    )
    series = LabSeries(
        code=analyte.primary_loinc if analyte else key,
        system=LOINC_SYSTEM if analyte else "urn:lab:local",
        display=display or (analyte.display if analyte else key),
        unit=unit or (analyte.unit if analyte else None),
        analyte_key=analyte.key if analyte else None,
        subject=SUBJECT,
        points=points,
    )
    return compute_trend(series)
