"""Implausible values and times never become trend points; every excluded result is reported
by id with a reason that carries no value and no date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from fhir.resources.R4B.observation import Observation
from test_labs_series import obs

from tools.labs.analytes import ANALYTES
from tools.labs.plausibility import PHYSICAL_LIMITS, time_problem, value_problem
from tools.labs.series import REPORTED_REASONS, SkipReason, build_series
from tools.trends import compute_trend
from tools.writeback.trend_plots import render_trend_plot

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def raw(oid: str, when: str = "2024-05-01T08:00:00Z", **body: object) -> Observation:
    return Observation.model_validate(
        {
            "resourceType": "Observation",
            "id": oid,
            "status": "final",
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": when,
            **body,
        }
    )


def good_creatinine() -> list[Observation]:
    return [
        obs("c1", "2160-0", 1.0, when="2024-01-01T08:00:00Z"),
        obs("c2", "2160-0", 1.1, when="2024-06-01T08:00:00Z"),
        obs("c3", "2160-0", 1.2, when="2025-01-01T08:00:00Z"),
    ]


def excluded(observations: list[Observation]) -> dict[str, tuple[SkipReason, str]]:
    found = build_series(observations, now=NOW).excluded()
    return {str(p.observation_id): (p.reason, p.detail) for p in found}


def test_every_analyte_has_physical_limits_around_its_reference_range() -> None:
    assert set(PHYSICAL_LIMITS) == {a.key for a in ANALYTES}
    for a in ANALYTES:
        lim = PHYSICAL_LIMITS[a.key]
        assert lim.source
        for bound in (a.reference.low, a.reference.high):
            assert bound is None or lim.low <= bound <= lim.high


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (-5.0, False),
        (1e308, False),
        (1e-300, False),
        (0.0, False),
        (150.0, False),
        (0.05, True),
        (25.0, True),
    ],
)
def test_creatinine_values_outside_physical_limits_are_excluded(value: float, kept: bool) -> None:
    ss = build_series([*good_creatinine(), obs("x", "2160-0", value, when="2025-03-01T08:00:00Z")], now=NOW)
    (creat,) = ss.series
    assert ("x" in [p.observation_id for p in creat.points]) is kept
    if not kept:
        (skip,) = ss.excluded()
        assert (skip.observation_id, skip.reason) == ("x", SkipReason.IMPLAUSIBLE_VALUE)
        if value != 0.0:  # the value is never echoed (0 is in the limits' own text)
            assert repr(value) not in skip.detail
            assert f"{value:g}" not in skip.detail


def test_a_tiny_value_is_not_called_improved() -> None:
    tiny = obs("tiny", "2160-0", 1e-300, when="2025-03-01T08:00:00Z")
    ss = build_series([*good_creatinine(), tiny], now=NOW)
    trend = compute_trend(ss.series[0])
    assert trend.latest.value == 1.2
    assert trend.direction == "stable"


def test_unknown_codes_get_the_universal_rules_only() -> None:
    base_excess = [
        obs("be1", "1925-7", -4.0, "mmol/L", when="2024-01-01T00:00:00Z"),
        obs("be2", "1925-7", -1.0, "mmol/L", when="2024-02-01T00:00:00Z"),
        obs("be3", "1925-7", 1e300, "mmol/L", when="2024-03-01T00:00:00Z"),
        obs("be4", "1925-7", 1e-300, "mmol/L", when="2024-04-01T00:00:00Z"),
    ]
    ss = build_series(base_excess, now=NOW)
    assert [p.observation_id for p in ss.series[0].points] == ["be1", "be2"]  # negative is real here
    assert {p.observation_id: p.reason for p in ss.excluded()} == {
        "be3": SkipReason.IMPLAUSIBLE_VALUE,
        "be4": SkipReason.IMPLAUSIBLE_VALUE,
    }


def test_value_problem_rules() -> None:
    creatinine = ANALYTES[0]
    assert value_problem(float("inf"), creatinine) == "value is not a finite number"
    assert value_problem(float("nan"), None) == "value is not a finite number"
    assert value_problem(1e16, None) is not None
    assert value_problem(0.0, None) is None
    assert "cannot be negative" in str(value_problem(-0.1, creatinine))
    assert "0.01 to 100 mg/dL" in str(value_problem(500.0, creatinine))
    assert value_problem(1.0, creatinine) is None


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        ("0001-01-01", "before 1900-01-01"),
        ("0001-01-01T00:00:00+05:00", "before 1900-01-01"),
        ("1850-06-01", "before 1900-01-01"),
        ("1900-01-01T02:00:00+05:00", "before 1900-01-01"),
        ("9999-12-31T23:59:59-05:00", "after 2200-01-01"),
        ("2099-01-01", "in the future"),
        ("2025-06-03T00:00:00Z", "in the future"),
    ],
)
def test_implausible_times_are_excluded_before_any_date_arithmetic(when: str, reason: str) -> None:
    ss = build_series([*good_creatinine(), obs("t", "2160-0", 1.5, when=when)], now=NOW)
    assert [p.observation_id for p in ss.series[0].points] == ["c1", "c2", "c3"]
    (skip,) = ss.excluded()
    assert (skip.observation_id, skip.reason) == ("t", SkipReason.IMPLAUSIBLE_TIME)
    assert reason in skip.detail
    assert when[:4] not in skip.detail or when[:4] in ("1900",)  # the result's own date is not echoed
    # The trend and its plot work: nothing overflows.
    trend = compute_trend(ss.series[0])
    assert trend.latest.time < NOW
    assert render_trend_plot(trend).startswith(b"\x89PNG")


def test_small_clock_skew_is_allowed_and_no_clock_keeps_future_dates_before_2200() -> None:
    tomorrow = (NOW + timedelta(hours=20)).isoformat()
    ss = build_series([*good_creatinine(), obs("soon", "2160-0", 1.5, when=tomorrow)], now=NOW)
    assert ss.series[0].points[-1].observation_id == "soon"
    assert time_problem(datetime(2099, 1, 1, tzinfo=UTC)) is None
    assert time_problem(datetime(2200, 1, 1, tzinfo=timezone(timedelta(hours=-5)))) is not None
    with pytest.raises(ValueError, match="aware"):
        time_problem(datetime(2024, 1, 1))


def test_dropped_results_are_reported_with_reasons() -> None:
    bad = [
        obs("banana", "2160-0", 1.3, "banana", when="2024-02-01T08:00:00Z"),
        obs("kg", "2160-0", 1.3, "kg", when="2024-03-01T08:00:00Z"),
        obs("novalue", "2160-0", None, when="2024-04-01T08:00:00Z", valueQuantity={"unit": "mg/dL"}),
        obs("approx", "2160-0", None, valueQuantity={"value": 1.4, "comparator": "~", "unit": "mg/dL"}),
        obs("less", "2160-0", None, valueQuantity={"value": 0.2, "comparator": "<", "unit": "mg/dL"}),
        obs("year", "2160-0", 1.4, when="2024"),
        raw("nocode", code={"text": "creatinine"}, valueQuantity={"value": 1.4, "unit": "mg/dL"}),
        obs("esccode", "X\x1bY", 1.4, system="urn:lab:local"),
        # Not reported: no number to trend, or excluded by design.
        obs("text", "2160-0", None, valueString="see note"),
        obs("cancelled", "2160-0", 1.0, status="cancelled"),
    ]
    found = excluded([*good_creatinine(), *bad])
    assert {k: v[0] for k, v in found.items()} == {
        "banana": SkipReason.UNIT,
        "kg": SkipReason.UNIT,
        "novalue": SkipReason.NO_VALUE,
        "approx": SkipReason.CENSORED,
        "less": SkipReason.CENSORED,
        "year": SkipReason.NO_TIME,
        "nocode": SkipReason.NO_CODE,
        "esccode": SkipReason.NO_CODE,
    }
    assert found["banana"][1] == "cannot convert 'banana' to 'mg/dL': no conversion known for Creatinine"
    assert "'kg'" in found["kg"][1]
    assert "'~' is not a FHIR comparator" in found["approx"][1]
    assert "1.4" not in found["approx"][1]
    assert "0.2" not in found["less"][1]
    assert "2024" not in found["year"][1]
    assert all(p.reason in REPORTED_REASONS for p in build_series(bad, now=NOW).excluded())


def test_excluded_is_sorted_and_the_same_for_any_input_order() -> None:
    bad = [
        obs("z", "2160-0", -1.0),
        obs("a", "2160-0", 1.0, "banana"),
        obs("m", "2160-0", 1.0, when="2099-01-01"),
    ]
    forward = build_series([*good_creatinine(), *bad], now=NOW).excluded()
    backward = build_series([*reversed(bad), *good_creatinine()], now=NOW).excluded()
    assert forward == backward
    assert [p.observation_id for p in forward] == ["a", "m", "z"]


def test_record_text_is_made_safe_in_series() -> None:
    display = "Vit\x1b[31mamin\x07 D\x00 \u202eHO-52" + "x" * 1_000_000
    ss = build_series(
        [
            raw(
                f"v{i}",
                when,
                code={"coding": [{"system": "urn:lab:local", "code": "VITD", "display": display}]},
                valueQuantity={"value": value, "unit": "ng/mL\x1b\u202e"},
            )
            for i, (value, when) in enumerate([(30.0, "2024-01-01"), (35.0, "2024-06-01")])
        ],
        now=NOW,
    )
    (vitd,) = ss.series
    assert vitd.display.startswith("Vit[31mamin D HO-52xxx")
    assert len(vitd.display) <= 160
    assert vitd.display.endswith("\u2026")
    assert vitd.unit == "ng/mL"
