"""FHIR R4B builders for the trend write-back: valid by construction, raise on bad input (pure).

* ``build_trend_observation``: one Observation per series. Its ``code`` is ChartAgent's own
  ``lab-trend`` code and the series' LOINC/local coding sits in the ``analyte`` component,
  *not* in ``Observation.code``: an Observation coded 2160-0 whose value is a change of
  +0.5 mg/dL would be read as a creatinine result of 0.5 mg/dL by every flowsheet, graph and
  CDS rule that selects by LOINC code. ``valueQuantity`` is the change from baseline in the
  series unit; components carry the direction (our three-code system), the latest value,
  the baseline and the Theil-Sen slope per year (UCUM ``/a``); ``interpretation`` uses the
  v3 trend codes B/W (better/worse) and U/D (significant change up/down); ``derivedFrom``
  lists every point used.
* ``build_summary_report``: the longitudinal DiagnosticReport, coded LOINC 11502-2
  "Laboratory report": the generic code for a report over laboratory results, which is what
  this summary is - its ``result`` are the laboratory trend Observations and its category is
  LAB, so ``DiagnosticReport?code=11502-2`` finds it with the other lab reports. Rejected:
  11526-1 "Pathology study" (the wrong domain), 60591-5 "Patient summary Document" (the IPS
  document code: a reader would take this for a curated patient summary), and any new local
  code (no LOINC code exists for an automated trend summary; ``code.text`` and AIAST say what
  it is). Imaging comparisons are only listed in its text: ``result`` may reference
  Observations only. ``conclusion`` is the narrative; ``text`` (XHTML) holds the header, the
  narrative, the imaging lines and the trend table; ``presentedForm`` the same as text/plain,
  then one PNG per plotted series (``tools.writeback.trend_plots``). Its identifier hashes all
  of that output (each attachment by SHA-256) and the plots' renderer revision, so a changed plot
  gives a new report.
* ``build_provenance``: targets every written Observation and the report, ``agent.who`` the
  model Device (type ``author``), one ``source`` entity per input Observation and a
  ``derivation`` entity for the engine revision; its identifier travels as a ``meta.tag``.

Observation and DiagnosticReport carry ``meta.security`` AIAST and ``status`` preliminary
(nothing is final until a person approves it).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance

from tools.labs.analytes import get_analyte
from tools.text_safety import safe_text
from tools.trends import ALGORITHM_REVISION, ENGINE_NAME, Trend
from tools.writeback.ai_labels import ModelIdentity, ai_meta
from tools.writeback.attachment import attachment
from tools.writeback.identifiers import (
    AI_OUTPUT_SYSTEM,
    Built,
    InputRef,
    Param,
    business_identifier,
    fhir_datetime,
)
from tools.writeback.read_inputs import read_input_extensions
from tools.writeback.trend_plots import MAX_PLOTS, RENDERER, plot_title, render_trend_plot, series_to_plot
from tools.writeback.trend_table import report_plain_text, report_xhtml, trend_rows

__all__ = [
    "DIRECTION_SYSTEM",
    "METHOD_SYSTEM",
    "SUMMARY_REPORT_CODE",
    "TREND_CODE_SYSTEM",
    "build_provenance",
    "build_summary_report",
    "build_trend_observation",
]

TREND_CODE_SYSTEM: Final = "urn:chartagent:trend"  # lab-trend, analyte, direction, latest, baseline, slope
DIRECTION_SYSTEM: Final = "urn:chartagent:trend-direction"  # improved | stable | worsened
METHOD_SYSTEM: Final = "urn:chartagent:method"
SUMMARY_REPORT_CODE: Final[dict[str, str]] = {
    "system": "http://loinc.org",
    "code": "11502-2",
    "display": "Laboratory report",
}
_REPORT_TITLE: Final = "Laboratory trend summary (AI-generated, preliminary)"
_UCUM: Final = "http://unitsofmeasure.org"
_INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_OBS_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
# FHIR id: 1-64 of [A-Za-z0-9-.]
_SUBJECT_RE: Final = re.compile(r"^Patient/[A-Za-z0-9\-.]{1,64}$")
_INTERPRETATION_DISPLAY: Final = {
    "B": "Better",
    "W": "Worse",
    "U": "Significant change up",
    "D": "Significant change down",
}


def is_patient_subject(subject: str) -> bool:
    """A literal Patient reference such as 'Patient/123' (what every write's subject must be)."""
    return _SUBJECT_RE.match(subject) is not None


def check_subject(subject: str) -> None:
    if not is_patient_subject(subject):
        raise ValueError(
            f"subject must be a literal Patient reference such as 'Patient/123', not {subject!r}"
        )


def check_time(name: str, t: datetime) -> None:
    if t.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")


def _trend_inputs(trend: Trend) -> list[InputRef]:
    # Content, not versionId: a feed that re-sends an unchanged result bumps its version, and
    # that must not duplicate what was written from it. Time and value pin what was read.
    # Not validated again: a SourceRef's reference is a validated non-empty string already, and
    # a report over a long history builds hundreds of these twice (its Observations, itself).
    return [
        InputRef.model_construct(reference=s.reference, value=f"{s.time.isoformat()}={s.value!r}")
        for s in trend.sources
    ]


def _quantity(value: float, unit: str | None, ucum: bool) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit:
        q["unit"] = unit
        if ucum:
            q |= {"system": _UCUM, "code": unit}
    return q


def _component(code: str, display: str, **value: Any) -> dict[str, Any]:
    return {"code": {"coding": [{"system": TREND_CODE_SYSTEM, "code": code, "display": display}]}, **value}


def build_trend_observation(
    trend: Trend,
    *,
    subject: str,
    device: Built[Any],
    identity: ModelIdentity,
    issued: datetime,
    parameters: Mapping[str, Param] | None = None,
) -> Built[Observation]:
    """The trend Observation for one series; raises ``ValueError`` on a bad subject or an empty trend."""
    check_subject(subject)
    check_time("issued", issued)
    if not trend.sources or trend.n != len(trend.sources):
        raise ValueError(f"trend of {trend.code} has {trend.n} points but {len(trend.sources)} sources")
    # Servers may return absolute references (https://ehr/fhir/Patient/1) for the same patient.
    if trend.subject is not None and not (trend.subject == subject or trend.subject.endswith("/" + subject)):
        raise ValueError(f"trend of {trend.code} belongs to {trend.subject}, not {subject}")
    if device.resource_type != "Device":
        raise ValueError("device must be a built Device")

    ident = business_identifier(
        engine=identity.key(),
        task="lab-trend",
        inputs=_trend_inputs(trend),
        parameters={"code": trend.code, "system": trend.system, "unit": trend.unit, **(parameters or {})},
    )
    analyte = None if trend.analyte_key is None else get_analyte(trend.analyte_key)
    ucum = analyte is not None  # unknown codes keep the lab's unit text, which may not be UCUM
    unit = trend.unit

    codes = ["B" if trend.direction == "improved" else "W"] if trend.direction != "stable" else []
    if trend.significant:
        codes.append("U" if trend.change_from_baseline > 0 else "D")
    # Keys in R4B's element order: the JSON is byte for byte what validating it would dump.
    interpretation = [
        {"system": _INTERPRETATION, "code": code, "display": _INTERPRETATION_DISPLAY[code]} for code in codes
    ]

    series_coding = {"system": trend.system, "code": trend.code, "display": trend.display}
    if not trend.system:
        del series_coding["system"]
    components = [
        _component(
            "analyte", "Analyte", valueCodeableConcept={"coding": [series_coding], "text": trend.display}
        ),
        _component(
            "direction",
            "Trend direction",
            valueCodeableConcept={"coding": [{"system": DIRECTION_SYSTEM, "code": trend.direction}]},
        ),
        _component("latest", "Latest value", valueQuantity=_quantity(trend.latest.value, unit, ucum)),
        _component("baseline", "Baseline value", valueQuantity=_quantity(trend.baseline, unit, ucum)),
    ]
    if trend.slope_per_year is not None:
        slope_unit = f"{unit}/a" if unit else "/a"
        components.append(
            _component(
                "slope",
                "Theil-Sen slope per year",
                valueQuantity=_quantity(trend.slope_per_year, slope_unit, ucum),
            )
        )
    category = analyte.category if analyte is not None else "laboratory"
    data = {
        "resourceType": "Observation",
        "meta": ai_meta(),
        "identifier": [ident.as_fhir()],
        "status": "preliminary",
        "category": [{"coding": [{"system": _OBS_CATEGORY, "code": category}]}],
        "code": {
            "coding": [{"system": TREND_CODE_SYSTEM, "code": "lab-trend", "display": "Result trend"}],
            "text": f"Trend of {trend.display}",
        },
        "subject": {"reference": subject},
        "effectivePeriod": {
            "start": fhir_datetime(trend.first.time),
            "end": fhir_datetime(trend.latest.time),
        },
        "issued": fhir_datetime(issued),
        "valueQuantity": _quantity(trend.change_from_baseline, unit, ucum),
        "interpretation": [{"coding": [c]} for c in interpretation] or None,
        "note": [{"text": trend.direction_reason}],
        "method": {
            "text": f"{ENGINE_NAME} rule revision {ALGORITHM_REVISION}: change of the latest value from "
            f"the median of the first {trend.baseline_n} of {trend.n} results; Theil-Sen slope"
        },
        "device": {"reference": device.full_url},
        "derivedFrom": [{"reference": s.reference} for s in trend.sources],
        "component": components,
    }
    return Built.of_json(Observation.model_validate, data, identifier=ident)


def _read_set_parameter(read_inputs: frozenset[str]) -> dict[str, Param]:
    # Absent when empty: reports built without a read set keep their identifiers.
    return {"read_inputs_sha256": _sha256("\n".join(sorted(read_inputs)).encode())} if read_inputs else {}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_summary_report(
    *,
    subject: str,
    observations: Sequence[Built[Observation]],
    trends: Sequence[Trend],
    narrative: str,
    identity: ModelIdentity,
    issued: datetime,
    parameters: Mapping[str, Param] | None = None,
    document_refs: frozenset[str] = frozenset(),
    imaging_summaries: Sequence[str] = (),
    max_plots: int = MAX_PLOTS,
    read_inputs: frozenset[str] = frozenset(),
) -> Built[DiagnosticReport]:
    """The longitudinal DiagnosticReport over the trend Observations; raises ``ValueError`` on bad input.

    ``document_refs``: source references of points transcribed from PDF reports (marked in the
    table and the plots). ``imaging_summaries``: lines listed under "Imaging comparisons".
    ``max_plots``: at most this many PNG plots (``series_to_plot`` chooses them).
    ``read_inputs``: what the run read, one extension each (`tools.writeback.read_inputs`); part of
    the identifier, so that a run that read more (a document with nothing new) leaves a report
    that says so, and the next run does not read it again.
    """
    check_subject(subject)
    check_time("issued", issued)
    if not observations or len(observations) != len(trends):
        raise ValueError("a summary report needs one built Observation per trend, and at least one")
    if not narrative.strip():
        raise ValueError("a summary report needs a narrative")
    if isinstance(imaging_summaries, str):
        raise ValueError("imaging_summaries must be a sequence of lines, not one string")
    if any(not line.strip() or len(line.splitlines()) != 1 for line in imaging_summaries):
        raise ValueError("each imaging summary must be one non-blank line")
    if not isinstance(document_refs, frozenset):
        raise ValueError("document_refs must be a frozenset of references")

    rows = trend_rows(trends, document_refs)
    plotted = series_to_plot(trends, limit=max_plots)
    titles = [plot_title(t) for t in plotted]
    plain = report_plain_text(narrative, rows, imaging_summaries=imaging_summaries)
    div = report_xhtml(narrative, rows, imaging_summaries=imaging_summaries, plot_titles=titles)
    forms = [("text/plain; charset=utf-8", plain.encode("utf-8"), _REPORT_TITLE)]
    forms += [
        ("image/png", render_trend_plot(t, document_refs), title)
        for t, title in zip(plotted, titles, strict=True)
    ]

    inputs = [ref for t in trends for ref in _trend_inputs(t)]
    ident = business_identifier(
        engine=identity.key(),
        task="lab-trend-summary",
        inputs=inputs,
        # Everything shown is part of the output: a changed template, table or plot must not
        # hide behind an old report. ``issued``/``creation`` are left out: a rerun is the same report.
        parameters={
            "narrative_sha256": _sha256(narrative.encode("utf-8")),
            "text_sha256": _sha256(div.encode("utf-8")),
            "presented_form_sha256": _sha256(
                json.dumps([[ct, title, _sha256(data)] for ct, data, title in forms]).encode("utf-8")
            ),
            **(
                {"read_inputs_sha256": _sha256("\n".join(sorted(read_inputs)).encode())}
                if read_inputs
                else {}
            ),
            # The code that drew the plots: another renderer's report is another report (and
            # superseded by this one), even should its bytes happen to match.
            **({"plot_renderer": RENDERER} if plotted else {}),
            **(parameters or {}),
        },
    )
    sources = [s for t in trends for s in t.sources]
    data = {
        "resourceType": "DiagnosticReport",
        "meta": ai_meta(),
        "text": {"status": "generated", "div": div},
        "extension": read_input_extensions(read_inputs) or None,
        "identifier": [ident.as_fhir()],
        "status": "preliminary",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}
        ],
        "code": {"coding": [dict(SUMMARY_REPORT_CODE)], "text": "Automated laboratory trend summary"},
        "subject": {"reference": subject},
        "effectivePeriod": {
            "start": fhir_datetime(min(s.time for s in sources)),
            "end": fhir_datetime(max(s.time for s in sources)),
        },
        "issued": fhir_datetime(issued),
        "result": [
            {"reference": o.full_url, "display": f"Trend of {t.display}"}
            for o, t in zip(observations, trends, strict=True)
        ],
        "conclusion": safe_text(narrative, multiline=True, limit=None),
        "presentedForm": [attachment(ct, content, title, issued) for ct, content, title in forms],
    }
    return Built.of_json(DiagnosticReport.model_validate, data, identifier=ident)


def build_provenance(
    *,
    targets: Sequence[Built[Any]],
    device: Built[Any],
    sources: Sequence[str],
    identity: ModelIdentity,
    recorded: datetime,
) -> Built[Provenance]:
    """Provenance of ``targets`` (the written AI resources) from ``sources`` (input references)."""
    check_time("recorded", recorded)
    if not targets:
        raise ValueError("a Provenance needs at least one target")
    if not sources:
        raise ValueError("a Provenance needs at least one source")
    if device.resource_type != "Device":
        raise ValueError("device must be a built Device")
    unique_sources = sorted(set(sources))
    ident = business_identifier(
        engine=identity.key(),
        task="provenance",
        inputs=[InputRef(reference=t.identifier.token) for t in targets]
        + [InputRef(reference=s) for s in unique_sources],
    )
    derivation = {
        "role": "derivation",
        "what": {
            "identifier": {"system": METHOD_SYSTEM, "value": identity.key()},
            "display": f"{identity.name} {identity.version}"
            + (f" revision {identity.revision}" if identity.revision else "")
            + (f" prompt {identity.prompt_version}" if identity.prompt_version else ""),
        },
    }
    data = {
        "resourceType": "Provenance",
        "meta": {"tag": [{"system": AI_OUTPUT_SYSTEM, "code": ident.value}]},
        "target": [{"reference": t.full_url} for t in targets],
        "recorded": fhir_datetime(recorded),
        "activity": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}]
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "author",
                            "display": "Author",
                        }
                    ]
                },
                "who": {"reference": device.full_url, "display": identity.name},
            }
        ],
        "entity": [{"role": "source", "what": {"reference": s}} for s in unique_sources] + [derivation],
    }
    return Built.of_json(Provenance.model_validate, data, identifier=ident, match_by="_tag")
