"""The narrative says only what the trends say: content, order, header."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tools.labs.analytes import LOINC_SYSTEM, get_analyte
from tools.labs.series import LabPoint, LabSeries, SkippedPoint, SkipReason
from tools.narrative import HEADER, MAX_EXCLUSION_LINES, exclusion_lines, render_summary
from tools.trends import Trend, compute_trend

T0 = datetime(2021, 3, 1, 9, 30, tzinfo=UTC)


def trend(key: str, values: list[float], step_days: int = 180) -> Trend:
    a = get_analyte(key)
    points = tuple(
        LabPoint(
            time=T0 + timedelta(days=i * step_days),
            value=v,
            original_value=v,
            original_unit=a.unit,
            observation_id=f"{key}-{i}",
        )
        for i, v in enumerate(values)
    )
    return compute_trend(
        LabSeries(
            code=a.primary_loinc,
            system=LOINC_SYSTEM,
            display=a.display,
            unit=a.unit,
            analyte_key=key,
            points=points,
        )
    )


def test_header_and_sections_in_order() -> None:
    trends = [
        trend("ldl", [160.0, 120.0]),  # improved
        trend("sodium", [140.0, 140.5]),  # stable
        trend("creatinine", [1.0, 1.1, 1.6]),  # worsened
        trend("body_weight", [80.0, 70.0]),  # changed, not judged
        trend("potassium", [3.6, 4.8]),  # changed within range
    ]
    text = render_summary("Jane Doe", trends, as_of=datetime(2022, 1, 1, tzinfo=UTC))
    lines = text.splitlines()
    assert lines[0] == HEADER
    assert "AI-generated" in lines[0]
    assert "verify" in lines[0]
    assert lines[1] == "Patient: Jane Doe. Results up to 2022-01-01."
    assert lines[2] == "5 series: 1 worsened, 1 improved, 3 stable."
    order = [
        text.index(h)
        for h in (
            "Worsened:",
            "Improved:",
            "Changed within the reference range",
            "Changed, direction not judged",
            "Stable:",
        )
    ]
    assert order == sorted(order)


def test_worsened_line_carries_values_units_dates_and_slope() -> None:
    t = trend("creatinine", [1.0, 1.1, 1.6], step_days=365)
    text = render_summary(None, [t])
    line = next(x for x in text.splitlines() if x.startswith("- Creatinine"))
    assert line.startswith("- Creatinine worsened: 1.6 mg/dL on 2023-03-01")
    assert "baseline of 1 mg/dL (first result, from 2021-03-01)" in line
    assert "change +0.6 mg/dL (threshold 0.3 mg/dL)" in line
    assert f"Slope +{t.slope_per_year:.3g} mg/dL/year over 3 results, 2021-03-01 to 2023-03-01." in line
    assert "Patient:" not in text  # no name given, none invented


def test_stable_series_listed_compactly_with_display_units() -> None:
    text = render_summary("X", [trend("systolic_bp", [120.0, 122.0]), trend("egfr", [70.0, 71.0])])
    assert "Stable: eGFR 71 mL/min/1.73m2 (2021-08-28, n=2); Systolic blood pressure 122 mmHg" in text


def test_range_crossing_is_reported() -> None:
    text = render_summary("X", [trend("potassium", [4.5, 5.0, 5.9])])
    assert "Left the reference range (above) on 2022-02-24." in text


def test_every_number_in_the_text_comes_from_the_facts() -> None:
    trends = [trend("hba1c", [8.1, 7.4, 6.9]), trend("hdl", [35.0, 42.0]), trend("glucose", [100.0, 104.0])]
    text = render_summary("Pat", trends)
    body = "\n".join(text.splitlines()[1:])  # the header names the rule revision
    allowed: set[str] = set()
    for t in trends:
        facts = [t.latest.value, t.baseline, t.change_from_baseline, t.threshold or 0, t.slope_per_year or 0]
        for x in facts:
            allowed |= {f"{x:.3g}", f"{abs(x):.3g}"}
        allowed |= {str(t.n), str(t.baseline_n)}
        for when in (t.first.time, t.latest.time):
            allowed |= set(when.date().isoformat().split("-"))
    allowed |= {"3", "2", "1", "0", "1.73"}  # counts per direction, unit text
    numbers = re.findall(r"\d+(?:\.\d+)?", body)
    assert numbers
    assert set(numbers) <= allowed


def test_no_trends() -> None:
    text = render_summary("X", [])
    assert text.splitlines()[0] == HEADER
    assert "No numeric results" in text


def test_deterministic() -> None:
    trends = [trend("ldl", [160.0, 120.0]), trend("creatinine", [1.0, 1.6])]
    assert render_summary("A", trends) == render_summary("A", list(reversed(trends)))


def test_record_names_are_made_safe_in_the_text() -> None:
    # Built through validation, as every Trend is (model_copy would skip the model's checks).
    dirty = type(trend("creatinine", [1.0, 2.0])).model_validate(
        {
            **trend("creatinine", [1.0, 2.0]).model_dump(),
            "display": "Creat\x1b[2J\x07inine\x00\u202e" + "x" * 1_000_000,
            "unit": "mg/dL\u2066",
        }
    )
    text = render_summary(None, [dirty])
    assert not any(c in text for c in "\x1b\x07\x00\u202e\u2066")
    assert "Creat[2Jinine" in text
    assert len(text) < 2_000  # the name is capped


def test_exclusion_lines_name_reference_code_and_reason() -> None:
    excluded = [
        SkippedPoint(observation_id="a", code="2160-0", reason=SkipReason.UNIT, detail="cannot convert 'kg'"),
        SkippedPoint(observation_id=None, code=None, reason=SkipReason.NO_CODE, detail="no code\x1b"),
    ]
    assert exclusion_lines(excluded) == [
        "Results not used in the trends (2), for review against the record:",
        "- Observation/a (2160-0): cannot convert 'kg'",
        "- an Observation without id: no code",
    ]
    assert exclusion_lines([]) == []


def test_exclusion_lines_are_capped() -> None:
    many = [
        SkippedPoint(observation_id=f"o{i:03}", code="2160-0", reason=SkipReason.NO_VALUE, detail="no value")
        for i in range(MAX_EXCLUSION_LINES + 5)
    ]
    lines = exclusion_lines(many)
    assert lines[0].startswith(f"Results not used in the trends ({MAX_EXCLUSION_LINES + 5})")
    assert len(lines) == MAX_EXCLUSION_LINES + 2
    assert lines[-1] == "- and 5 more, not listed here."
