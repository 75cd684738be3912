"""The longitudinal DiagnosticReport: XHTML text, trend table, PNG plots, output-hashing
identifier, PDF-derived points, imaging lines and extra transaction entries."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from PIL import Image
from trend_samples import SUBJECT, T0, lab_trend

from tools.narrative import render_summary
from tools.trends import Trend
from tools.writeback import (
    Built,
    ModelIdentity,
    build_model_device,
    build_patient_transaction,
    build_provenance,
    plot_title,
    series_to_plot,
    trend_engine_identity,
)
from tools.writeback.trend_plots import render_trend_plot
from tools.writeback.trend_table import check_xhtml_div

ISSUED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ENGINE = trend_engine_identity("9.9.9")
XHTML = "{http://www.w3.org/1999/xhtml}"
# FHIR R4 narrative rule txt-1: only these (basic formatting) elements.
# fmt: off
TXT1 = {
    "a", "abbr", "acronym", "b", "big", "blockquote", "br", "caption", "cite", "code", "col", "colgroup",
    "dd", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li",
    "ol", "p", "pre", "q", "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "tt", "ul", "var",
}
# fmt: on


def sample_trends() -> list[Trend]:
    return [
        lab_trend("creatinine", [1.0, 1.5, 2.5]),  # plotted
        lab_trend("potassium", [4.0, 4.1], start=T0 - timedelta(days=400)),  # not plotted, earliest
        lab_trend("ldl", [150.0, 120.0]),  # plotted
    ]


def transaction(trends: list[Trend] | None = None, **kw: Any) -> dict[str, Any]:
    trends = sample_trends() if trends is None else trends
    args: dict[str, Any] = {
        "subject": SUBJECT,
        "trends": trends,
        "narrative": render_summary(None, trends),
        "issued": ISSUED,
        "identity": ENGINE,
    } | kw
    return build_patient_transaction(**args)


def report_of(bundle: dict[str, Any]) -> dict[str, Any]:
    reports: list[dict[str, Any]] = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"
    ]
    (report,) = reports
    return report


def report_id(bundle: dict[str, Any]) -> str:
    return str(report_of(bundle)["identifier"][0]["value"])


def div_of(report: dict[str, Any]) -> ET.Element:
    return ET.fromstring(report["text"]["div"])


def plain_of(report: dict[str, Any]) -> str:
    return base64.b64decode(report["presentedForm"][0]["data"]).decode("utf-8")


def cells(row: ET.Element) -> list[str]:
    return ["".join(c.itertext()) for c in row]


def body_rows(div: ET.Element) -> list[list[str]]:
    return [cells(tr) for tr in div.iter(f"{XHTML}tr") if tr.find(f"{XHTML}td") is not None]


def test_text_is_valid_fhir_xhtml() -> None:
    report = report_of(transaction())
    DiagnosticReport.model_validate(report)
    assert report["text"]["status"] == "generated"
    div = div_of(report)
    assert div.tag == f"{XHTML}div"
    for el in div.iter():
        assert el.tag.startswith(XHTML)
        assert el.tag.removeprefix(XHTML) in TXT1
        assert not [a for a in el.attrib if a.lower().startswith("on")]
    text = "".join(div.itertext())
    assert text.startswith("AI-generated, preliminary - review before use")
    assert "Trend table" in text
    check_xhtml_div(report["text"]["div"])


@pytest.mark.parametrize(
    "bad",
    [
        "<div>x</div>",  # no XHTML namespace
        '<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script></div>',
        '<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">x</p></div>',
        '<div xmlns="http://www.w3.org/1999/xhtml"> </div>',
        '<div xmlns="http://www.w3.org/1999/xhtml"><p>a & b</p></div>',
    ],
)
def test_xhtml_check_rejects_what_fhir_forbids(bad: str) -> None:
    with pytest.raises(ValueError, match="narrative"):
        check_xhtml_div(bad)


def test_table_rows_are_the_trends_in_result_order() -> None:
    trends = sample_trends()
    report = report_of(transaction(trends))
    rows = body_rows(div_of(report))
    assert [r[0] for r in rows] == [f"{t.display} ({t.unit})" for t in trends]
    assert [r[1] for r in rows] == [str(t.n) for t in trends]
    assert [r[5] for r in rows] == [t.latest.time.date().isoformat() for t in trends]
    assert [r[10] for r in rows] == [t.direction for t in trends]
    assert [r["display"] for r in report["result"]] == [f"Trend of {t.display}" for t in trends]
    creatinine = rows[0]
    assert creatinine[4] == "2.5 H"  # above 0.6-1.3
    assert creatinine[6:9] == ["+1.5", "+150%", creatinine[8]]
    assert creatinine[9] == "0.6-1.3"
    assert rows[2][9] == "<= 100"
    # The plain-text table has the same rows, after the narrative.
    plain = plain_of(report)
    assert plain.index(report["conclusion"].strip()) < plain.index("Trend table:")
    table_lines = plain.split("Trend table:\n", 1)[1].splitlines()
    assert [line.split("  ")[0] for line in table_lines[2 : 2 + len(trends)]] == [r[0] for r in rows]


def test_names_are_escaped() -> None:
    odd = lab_trend("XYZ", [1.0, 3.0], display="A<b> & \"c\" 'd' $x$\x01", unit="U/L", low=0.0, high=2.0)
    report = report_of(
        transaction([odd], imaging_summaries=["CT chest: nodule <6 mm & stable <script>alert(1)</script>"])
    )
    raw = report["text"]["div"]
    assert "<b>" not in raw.split("</b></p>", 1)[1]  # only our own header is bold
    assert "<script>" not in raw
    div = div_of(report)
    assert not list(div.iter(f"{XHTML}script"))
    rows = body_rows(div)
    assert rows[0][0] == "A<b> & \"c\" 'd' $x$ (U/L)"  # the control character is dropped
    # Its plot is drawn too, from the same name.
    assert [f["contentType"] for f in report["presentedForm"]][1:] == ["image/png"]
    items = ["".join(li.itertext()) for li in div.iter(f"{XHTML}li")]
    assert "CT chest: nodule <6 mm & stable <script>alert(1)</script>" in items
    check_xhtml_div(raw)


def test_one_png_per_selected_series() -> None:
    trends = sample_trends()
    report = report_of(transaction(trends))
    chosen = series_to_plot(trends)
    assert len(chosen) == 2
    images = report["presentedForm"][1:]
    assert [f["contentType"] for f in images] == ["image/png"] * len(chosen)
    assert [f["title"] for f in images] == [plot_title(t) for t in chosen]
    assert images[0]["title"] == "Trend of Creatinine (mg/dL) with reference range"
    for form in report["presentedForm"]:
        data = base64.b64decode(form["data"])
        assert form["size"] == len(data)
        assert base64.b64decode(form["hash"]) == hashlib.sha1(data, usedforsecurity=False).digest()
    for form in images:
        assert Image.open(io.BytesIO(base64.b64decode(form["data"]))).size == (640, 360)


def test_effective_period_covers_every_point() -> None:
    trends = sample_trends()
    report = report_of(transaction(trends))
    times = [s.time for t in trends for s in t.sources]
    assert report["effectivePeriod"] == {
        "start": min(times).isoformat().replace("+00:00", "Z"),
        "end": max(times).isoformat().replace("+00:00", "Z"),
    }


def test_identifier_hashes_the_output_not_the_clock() -> None:
    base = report_id(transaction())
    later = transaction(issued=ISSUED + timedelta(days=3))
    assert report_id(later) == base  # a rerun tomorrow finds today's report
    assert report_of(later)["issued"] != report_of(transaction())["issued"]
    # A point now marked as transcribed from a PDF changes the plot and the table.
    assert report_id(transaction(document_refs=frozenset({"Observation/creatinine-1"}))) != base
    # References that are no source of this report change nothing.
    assert report_id(transaction(document_refs=frozenset({"Observation/elsewhere"}))) == base
    assert report_id(transaction(imaging_summaries=["CT chest: unchanged"])) != base


def test_identifier_changes_when_only_a_plot_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    base = report_id(transaction())
    real = render_trend_plot
    target = "tools.writeback.builders.render_trend_plot"  # the name the builder calls

    def same(t: Trend, refs: frozenset[str] = frozenset()) -> bytes:
        return real(t, refs)

    def one_pixel_off(t: Trend, refs: frozenset[str] = frozenset()) -> bytes:
        image = Image.open(io.BytesIO(real(t, refs))).convert("RGB")
        image.putpixel((5, 5), (0, 0, 0))
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    monkeypatch.setattr(target, same)
    assert report_id(transaction()) == base
    monkeypatch.setattr(target, one_pixel_off)
    assert report_id(transaction()) != base


def test_identifier_names_the_plot_renderer_when_there_are_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    # Another renderer's report is another report, even should its bytes match this one's.
    quiet = [lab_trend("potassium", [4.0, 4.1]), lab_trend("sodium", [140.0, 139.0])]
    base, quiet_base = report_id(transaction()), report_id(transaction(quiet))
    monkeypatch.setattr("tools.writeback.builders.RENDERER", "another-renderer/9")
    assert report_id(transaction()) != base
    # Without a plot the renderer shows nothing: the report stays the same.
    assert report_id(transaction(quiet)) == quiet_base


def test_report_without_plots_is_valid() -> None:
    quiet = [lab_trend("potassium", [4.0, 4.1]), lab_trend("sodium", [140.0, 139.0])]
    assert series_to_plot(quiet) == []
    bundle = transaction(quiet)
    Bundle.model_validate(bundle)
    report = report_of(bundle)
    DiagnosticReport.model_validate(report)
    assert [f["contentType"] for f in report["presentedForm"]] == ["text/plain; charset=utf-8"]
    assert "Trend plots" not in "".join(div_of(report).itertext())
    assert len(body_rows(div_of(report))) == 2


def test_pdf_points_are_counted_in_the_table() -> None:
    trends = sample_trends()
    refs = frozenset({"Observation/creatinine-1", "Observation/creatinine-2"})
    rows = body_rows(div_of(report_of(transaction(trends, document_refs=refs))))
    assert [r[11] for r in rows] == ["2 of 3", "no", "no"]


def test_imaging_lines_are_listed_and_results_stay_observations() -> None:
    lines = ["CT chest 2025-05-01 vs 2024-05-02: nodule 6 mm, was 5 mm", "CXR: no change"]
    bundle = transaction(imaging_summaries=lines)
    report = report_of(bundle)
    div = div_of(report)
    headings = ["".join(h.itertext()) for h in div.iter(f"{XHTML}h3")]
    assert "Imaging comparisons" in headings
    items = ["".join(li.itertext()) for li in div.iter(f"{XHTML}li")]
    assert all(line in items for line in lines)
    plain = plain_of(report)
    assert "Imaging comparisons:\n- " + lines[0] + "\n- " + lines[1] in plain
    observation_urls = {
        e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    }
    assert {r["reference"] for r in report["result"]} == observation_urls
    for bad in (["  "], ["two\nlines"], ["carriage\rreturn"]):
        with pytest.raises(ValueError, match="imaging summary"):
            transaction(imaging_summaries=bad)
    with pytest.raises(ValueError, match="sequence of lines"):
        transaction(imaging_summaries="one string")


def test_extra_entries_are_added_once() -> None:
    other = ModelIdentity(name="medgemma-1.5-4b-it", version="1.5", dtype="bf16")
    other_device = build_model_device(other)
    imaging_prov = build_provenance(
        targets=[other_device],
        device=other_device,
        sources=["ImagingStudy/s1"],
        identity=other,
        recorded=ISSUED,
    )
    engine_device = build_model_device(ENGINE)  # the transaction writes this one itself
    extra: list[Built[Any]] = [engine_device, other_device, imaging_prov, other_device]
    bundle = transaction(extra=extra)
    Bundle.model_validate(bundle)
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(urls) == len(set(urls))
    assert urls.count(engine_device.full_url) == 1
    assert urls[-2:] == [other_device.full_url, imaging_prov.full_url]
    plain = transaction()
    assert len(bundle["entry"]) == len(plain["entry"]) + 2
    # One fullUrl, two contents: refuse rather than send either silently.
    impostor = Built(
        resource=Device.model_validate({"resourceType": "Device", "status": "inactive"}),
        resource_type="Device",
        identifier=engine_device.identifier,
    )
    with pytest.raises(ValueError, match="share the fullUrl"):
        transaction(extra=[impostor])


def test_twelve_plots_stay_small() -> None:
    many = [lab_trend("creatinine", [1.0, 1.4 + i / 10, 1.5 + i / 5], prefix=f"c{i}") for i in range(14)]
    bundle = transaction(many)
    report = report_of(bundle)
    images = [f for f in report["presentedForm"] if f["contentType"] == "image/png"]
    assert len(images) == 12
    assert max(f["size"] for f in images) < 60_000
    assert len(json.dumps(bundle)) < 2_000_000


UNSAFE = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + [
    "\x7f",
    "\x9b",
    *"\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
]


def strings(node: Any) -> list[str]:
    """Every string in a JSON value, the text/plain attachment decoded."""
    if isinstance(node, dict):
        found = [s for k, v in node.items() for s in strings(v) if k != "data"]
        if node.get("contentType", "").startswith("text/plain") and "data" in node:
            found.append(base64.b64decode(node["data"]).decode("utf-8"))
        return found
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


def test_control_and_bidi_characters_never_reach_the_written_resources() -> None:
    dirty = lab_trend(
        "XYZ",
        [1.0, 3.0],
        display="Vit\x1b[31mamin\x07 D\x00\u202eHO-52\u2066" + "x" * 1_000_000,
        unit="U/L",
        low=0.0,
        high=2.0,
    )
    bundle = transaction([dirty, *sample_trends()], narrative="Summary\x1b[0m with \u202edirty\x07 text.\n")
    found = strings(bundle)
    assert not [s for s in found if any(c in s for c in UNSAFE)]
    assert max(len(s) for s in found if "Vit[31m" in s and "Trend table" not in s) < 400
    report = report_of(bundle)
    assert body_rows(div_of(report))[0][0].startswith("Vit[31mamin DHO-52xxx")
    assert "\u2026" in body_rows(div_of(report))[0][0]
