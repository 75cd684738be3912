"""Rows added to the analyte table: heart rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tools.labs.analytes import LOINC_SYSTEM, GoodDirection, analyte_for_coding, get_analyte
from tools.labs.series import LabPoint, LabSeries
from tools.trends import compute_trend


def heart_rate_series(values: list[float]) -> LabSeries:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    return LabSeries(
        code="8867-4",
        system=LOINC_SYSTEM,
        display="Heart rate",
        unit="/min",
        analyte_key="heart_rate",
        subject="Patient/p1",
        points=tuple(
            LabPoint(
                time=t0 + timedelta(days=90 * i),
                value=v,
                original_value=v,
                original_unit="/min",
                observation_id=f"o{i}",
                observation_version="1",
            )
            for i, v in enumerate(values)
        ),
    )


def test_heart_rate_row() -> None:
    hr = get_analyte("heart_rate")
    assert analyte_for_coding(LOINC_SYSTEM, "8867-4") is hr
    assert analyte_for_coding("urn:oid:1.2.3", "hr") is hr
    assert (hr.unit, hr.category, hr.good_direction) == ("/min", "vital-signs", GoodDirection.IN_RANGE)
    assert (hr.reference.low, hr.reference.high) == (60.0, 100.0)
    assert hr.stability.magnitude(72.0) == 10.0
    assert hr.threshold_source.startswith("heuristic")
    assert hr.to_canonical(72.0, "/min") == 72.0


def test_heart_rate_trends_by_the_range() -> None:
    assert compute_trend(heart_rate_series([70, 71, 69, 72])).direction == "stable"
    assert compute_trend(heart_rate_series([70, 72, 90, 95])).direction == "stable"  # within range
    assert compute_trend(heart_rate_series([72, 74, 98, 112])).direction == "worsened"
    assert compute_trend(heart_rate_series([118, 116, 104, 88])).direction == "improved"
