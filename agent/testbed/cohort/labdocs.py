"""Lab-report PDFs of cohort patients as FHIR DocumentReferences, consistent with their FHIR lab
history (pure: no clock, no I/O).

Each patient gets 2-4 documents from a random stream of its own, derived from (seed, index), so
the patient's FHIR resources and planned courses are the same with or without documents:

* a visit copy (hospital layout): an outside copy of one visit's labs, collected at the visit's
  lab time and printing exactly the FHIR values: every result duplicates a FHIR Observation;
* an interval report (commercial layout for even indices, panel for odd): a draw at an outside
  lab between two visits, valued from the planned courses at that date with the visits' noise
  model (``extra_draw`` of the generator): new points on the planned course;
* every third patient (index % 3 == 1), a cumulative report: 1-3 consecutive visits and one
  interval draw as columns, with tests the cohort does not follow (blood count, liver tests...)
  so that it runs over two pages;
* every fourth patient (index % 4 == 2), a scanned interval report: image only, a model reads it;
* patient ``BAD_DOCUMENT_INDEX``: one more visit copy, encrypted (a reader must refuse it).

No document uses the last visit and every interval draw lies in its own gap between visits, so a
new point is printed once and every report is issued before the cohort's reference date.

Printed: the patient's own name, birth date, sex and MRN; collection times as UTC wall-clock
time to the minute (the cohort's FHIR times are UTC); units in the patient's dialect (SI patients
in the SI dialect, the others in US or US legacy spelling), each number to the places of its FHIR
value, so a duplicate prints the FHIR number. An analyte is printed only where the PDF catalog's
form in that dialect is the FHIR one (``printed_form``: same UCUM unit, a LOINC code of the same
analyte): SI patients' HbA1c is left out (the catalog prints %, their FHIR results mmol/mol).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from typing import Any, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict

from agent.testbed.cohort import resources as fhir
from agent.testbed.cohort.demographics import Demographics
from agent.testbed.cohort.labpdf import catalog
from agent.testbed.cohort.labpdf.bad import deterministic_encrypted_pdf
from agent.testbed.cohort.labpdf.catalog import Panel, panel_keys
from agent.testbed.cohort.labpdf.layouts import (
    cumulative_truth,
    render_commercial,
    render_cumulative,
    render_hospital,
    render_panel,
    render_scanned,
)
from agent.testbed.cohort.labpdf.make import Dialect, make_report, sample_results
from agent.testbed.cohort.labpdf.truth import Comparator, Flag, LabReport, LabResultTruth
from agent.testbed.cohort.labs import ANALYTES, Analyte, analyte_for_coding
from agent.testbed.cohort.profiles import LabDialect
from tools.labs import analytes as table

__all__ = [
    "BAD_DOCUMENT_INDEX",
    "PDF_KEYS",
    "AttachmentMode",
    "DocumentKind",
    "LabHistory",
    "Layout",
    "PlannedLabDocument",
    "PlannedLabResult",
    "PrintedForm",
    "plan_lab_documents",
    "printed_form",
]

BAD_DOCUMENT_INDEX: Final = 5  # the one patient with an encrypted document

_A = Analyte
# Cohort analyte -> PDF catalog key, for the analytes both know (vital signs are not lab reports).
PDF_KEYS: Final[dict[Analyte, str]] = {
    _A.CREATININE: "creatinine",
    _A.EGFR: "egfr",
    _A.HBA1C: "hba1c",
    _A.GLUCOSE: "glucose",
    _A.HEMOGLOBIN: "hemoglobin",
    _A.CHOLESTEROL: "cholesterol",
    _A.LDL: "ldl",
    _A.HDL: "hdl",
    _A.TRIGLYCERIDES: "triglycerides",
    _A.POTASSIUM: "potassium",
    _A.SODIUM: "sodium",
    _A.MAGNESIUM: "magnesium",
    _A.ALBUMIN: "albumin",
}


class DocumentKind(StrEnum):
    VISIT_COPY = "visit-copy"  # one visit's FHIR results, printed by an outside lab
    INTERVAL = "interval"  # a draw between visits: new points
    CUMULATIVE = "cumulative"  # visits and one interval draw side by side


class Layout(StrEnum):
    """The ``agent.testbed.cohort.labpdf`` layout a document is rendered with."""

    HOSPITAL = "hospital"
    COMMERCIAL = "commercial"
    PANEL = "panel"
    CUMULATIVE = "cumulative"
    SCANNED = "scanned"


class AttachmentMode(StrEnum):
    INLINE = "inline"  # the PDF in DocumentReference attachment.data
    BINARY = "binary"  # attachment.url "Binary/<id>", the PDF in that Binary


class PlannedLabResult(BaseModel):
    """One printed result as a correct reading of the document gives it."""

    model_config = ConfigDict(frozen=True)

    analyte: Analyte | None  # None: a test the cohort does not follow (a blood count, ...)
    name: str  # as printed
    loinc: str | None
    value: float | str
    unit: str | None  # UCUM
    comparator: Comparator | None = None
    flag: Flag | None = None
    effective: AwareDatetime  # collection time, UTC, to the minute
    duplicates_fhir: bool  # a FHIR Observation of the same analyte, time and value exists


class PlannedLabDocument(BaseModel):
    """Ground truth of one seeded document (``DocumentReference/<document_id>``)."""

    model_config = ConfigDict(frozen=True)

    document_id: str
    binary_id: str | None  # set when the PDF is in a Binary (attachment mode "binary")
    kind: DocumentKind
    layout: Layout
    attachment: AttachmentMode
    dialect: Dialect
    bad: bool  # a file a reader must refuse (encrypted)
    text_layer: bool  # False: image only, a model must read it
    collected: tuple[AwareDatetime, ...]  # one per draw, in order
    reported: AwareDatetime
    report: LabReport  # everything printed: identity, lines, reference ranges
    results: tuple[PlannedLabResult, ...]

    @property
    def readable(self) -> bool:
        """Whether a text-layer reader gets the results (not encrypted, not a scan)."""
        return self.text_layer and not self.bad


@dataclass(frozen=True)
class PrintedForm:
    """How a lab report prints a cohort analyte for a patient's dialect."""

    key: str  # PDF catalog key
    si: bool  # printed in the SI dialect
    factor: float  # printed = catalog-planned (conventional) value * factor
    decimals: int  # the FHIR value's places


def printed_form(analyte: Analyte, dialect: LabDialect) -> PrintedForm | None:
    """The PDF form of ``analyte`` for a patient in ``dialect``, or None when no catalog form
    prints the FHIR number under a LOINC code of the same analyte in the same unit."""
    key = PDF_KEYS.get(analyte)
    if key is None:
        return None
    spec = ANALYTES[analyte]
    si = dialect is LabDialect.SI
    fhir_unit, decimals = (spec.si.unit, spec.si.decimals) if si and spec.si else (spec.unit, spec.decimals)
    form = catalog.analyte(key).form(si)
    if form.ucum != fhir_unit or form.loinc is None or form.loinc not in analyte.row.loinc:
        return None
    return PrintedForm(key, si, form.factor, decimals)


ExtraDraw = Callable[[datetime, random.Random], Sequence[tuple[Analyte, float]]]


@dataclass(frozen=True)
class LabHistory:
    """What a patient's documents are planned from."""

    seed: int
    index: int
    pid: str
    mrn: str
    demo: Demographics
    dialect: LabDialect
    resources: Sequence[Mapping[str, Any]]  # the patient's FHIR resources (lab Observations are read)
    extra_draw: ExtraDraw  # canonical values of a draw between visits (``_PatientBuilder.extra_draw``)


# A cumulative report prints these too (tests the cohort does not follow), enough to run over a page.
_FILLER_PANELS: Final = (
    Panel.CMP,
    Panel.CBC,
    Panel.THYROID,
    Panel.COAGULATION,
    Panel.IRON,
    Panel.VITAMINS,
    Panel.INFLAMMATION,
    Panel.CHEMISTRY,
)
_MIN_DAYS_FROM_VISIT: Final = 21  # an interval draw is at least three weeks from either visit


@cache
def _filler_keys(si: bool) -> tuple[str, ...]:
    """Numeric catalog tests with a LOINC code in the dialect that no analyte-table row knows: they
    add lines but never a series the cohort did not plan."""
    keys = []
    for key in (k for p in _FILLER_PANELS for k in panel_keys(p)):
        row = catalog.analyte(key)
        codes = {row.us.loinc, row.si.loinc} - {None}
        known = any(table.analyte_for_coding(table.LOINC_SYSTEM, c) for c in codes)
        if row.qualitative is None and row.form(si).loinc is not None and not known:
            keys.append(key)
    return tuple(keys)


@dataclass(frozen=True)
class _Draw:
    """One collection: time and the FHIR-reported value of each analyte (printed unit)."""

    when: datetime
    values: dict[Analyte, float]


@dataclass(frozen=True)
class _Spec:
    kind: DocumentKind
    layout: Layout
    bad: bool = False


def _specs(index: int) -> list[_Spec]:
    """Which documents patient ``index`` gets (by index, so that 12 patients show every layout)."""
    specs = [
        _Spec(DocumentKind.VISIT_COPY, Layout.HOSPITAL),
        _Spec(DocumentKind.INTERVAL, Layout.COMMERCIAL if index % 2 == 0 else Layout.PANEL),
    ]
    if index % 3 == 1:
        specs.append(_Spec(DocumentKind.CUMULATIVE, Layout.CUMULATIVE))
    if index % 4 == 2:
        specs.append(_Spec(DocumentKind.INTERVAL, Layout.SCANNED))
    if index == BAD_DOCUMENT_INDEX:
        specs.append(_Spec(DocumentKind.VISIT_COPY, Layout.HOSPITAL, bad=True))
    return specs


class _Planner:
    def __init__(self, history: LabHistory) -> None:
        self.h = history
        self.rng = random.Random(f"chartagent-labdocs:{history.seed}:{history.index}")
        self.forms = {a: f for a in Analyte if (f := printed_form(a, history.dialect)) is not None}
        si = history.dialect is LabDialect.SI
        # Printed names are unique in the catalog: a line's name says which analyte it is.
        self.by_name = {catalog.analyte(f.key).printed_name(si): a for a, f in self.forms.items()}
        self.visits = self._visit_draws()
        self.fhir_points = {(a, d.when, v) for d in self.visits for a, v in d.values.items()}
        # Gaps between consecutive visits (the last visit is never used), each used at most once.
        self.free_gaps = list(range(len(self.visits) - 1))
        self.rng.shuffle(self.free_gaps)

    def _visit_draws(self) -> list[_Draw]:
        """Every visit's lab results as FHIR reports them, by collection time."""
        by_time: dict[datetime, dict[Analyte, float]] = {}
        for res in self.h.resources:
            category = res.get("category", [{}])[0].get("coding", [{}])[0].get("code")
            if res["resourceType"] != "Observation" or category != "laboratory":
                continue
            coding = res["code"]["coding"][0]
            found = analyte_for_coding(coding["system"], coding["code"])
            if found is None:
                raise ValueError(f"Observation/{res['id']}: a cohort lab result without a cohort analyte")
            when = datetime.fromisoformat(res["effectiveDateTime"])
            by_time.setdefault(when, {})[found] = res["valueQuantity"]["value"]
        return [_Draw(when, values) for when, values in sorted(by_time.items())]

    def _gap(self) -> int:
        if not self.free_gaps:
            raise ValueError(f"patient {self.h.pid}: too few visits for its documents")
        return self.free_gaps.pop()

    def _interval_draw(self, gap: int) -> _Draw:
        """A draw at an outside lab in ``gap`` (between visits ``gap`` and ``gap + 1``)."""
        start, end = self.visits[gap].when.date(), self.visits[gap + 1].when.date()
        day = start + timedelta(
            days=self.rng.randint(_MIN_DAYS_FROM_VISIT, (end - start).days - _MIN_DAYS_FROM_VISIT)
        )
        when = datetime.combine(day, time(self.rng.randint(7, 11), self.rng.randrange(60)), UTC)
        si = self.h.dialect is LabDialect.SI
        values = {
            a: ANALYTES[a].report(v, si=si) for a, v in self.h.extra_draw(when, self.rng) if a in self.forms
        }
        return _Draw(when, values)

    def _dialect(self) -> Dialect:
        if self.h.dialect is LabDialect.SI:
            return Dialect.SI
        return self.rng.choice((Dialect.US, Dialect.US_LEGACY))

    def _report(self, draw: _Draw, dialect: Dialect, fillers: Sequence[str] = ()) -> LabReport:
        planned: dict[str, float | str] = {}
        decimals: dict[str, int] = {}
        for a, value in draw.values.items():
            form = self.forms.get(a)
            if form is not None:
                planned[form.key] = value / form.factor
                decimals[form.key] = form.decimals
        if fillers:
            # Inside their reference ranges: no course, so no trend to find (and none to invent).
            planned |= sample_results(fillers, self.rng.randrange(10**9), abnormal_rate=0.0)
        demo = self.h.demo
        report = make_report(
            self.h.mrn, draw.when, planned, self.rng.randrange(10**9), dialect=dialect,
            patient_name=f"{demo.family}, {demo.given}", birth_date=demo.birth_date,
            sex="F" if demo.female else "M", decimals=decimals,
        )  # fmt: skip
        printed = {self.by_name[r.name]: r.value for r in report.results if r.name in self.by_name}
        if printed != {a: v for a, v in draw.values.items() if a in self.forms}:
            # Valid by construction: every cohort analyte prints exactly its FHIR-reported number.
            raise RuntimeError(f"patient {self.h.pid}: a printed value is not the value planned for it")
        return report

    def documents(self) -> tuple[list[dict[str, Any]], tuple[PlannedLabDocument, ...]]:
        resources: list[dict[str, Any]] = []
        planned: list[PlannedLabDocument] = []
        inline = self.h.index % 2 == 0
        for k, spec in enumerate(_specs(self.h.index)):
            dialect = self._dialect()
            draws = self._draws(spec.kind)
            fillers = _filler_keys(dialect.si) if spec.kind is DocumentKind.CUMULATIVE else ()
            columns = [self._report(d, dialect, fillers) for d in draws]
            report = cumulative_truth(columns) if spec.kind is DocumentKind.CUMULATIVE else columns[0]
            pdf = self._render(spec, columns, k)
            did = f"{self.h.pid}-labdoc-{k}"
            bid = None if inline else f"{self.h.pid}-labpdf-{k}"
            if bid is not None:
                resources.append(fhir.binary(bid, self.h.pid, "application/pdf", pdf))
            resources.append(
                fhir.lab_document_reference(
                    did, self.h.pid, pdf, title=_title(spec, report), description=_description(spec, report),
                    reported=report.reported, collected=[d.when for d in draws], binary_id=bid,
                )
            )  # fmt: skip
            planned.append(
                PlannedLabDocument(
                    document_id=did, binary_id=bid, kind=spec.kind, layout=spec.layout,
                    attachment=AttachmentMode.INLINE if inline else AttachmentMode.BINARY,
                    dialect=dialect, bad=spec.bad, text_layer=spec.layout is not Layout.SCANNED,
                    collected=tuple(d.when for d in draws), reported=report.reported, report=report,
                    results=tuple(self._result(line, report) for line in report.results),
                )
            )  # fmt: skip
        return resources, tuple(planned)

    def _draws(self, kind: DocumentKind) -> list[_Draw]:
        if kind is DocumentKind.VISIT_COPY:
            return [self.visits[self.rng.randrange(len(self.visits) - 1)]]
        gap = self._gap()
        if kind is DocumentKind.INTERVAL:
            return [self._interval_draw(gap)]
        # 1-3 consecutive visits, then an outside draw before the next visit.
        first = max(0, gap - self.rng.randint(0, 2))
        return [*self.visits[first : gap + 1], self._interval_draw(gap)]

    def _render(self, spec: _Spec, columns: Sequence[LabReport], k: int) -> bytes:
        match spec.layout:
            case Layout.HOSPITAL:
                pdf = render_hospital(columns[0])
            case Layout.COMMERCIAL:
                pdf = render_commercial(columns[0])
            case Layout.PANEL:
                pdf = render_panel(columns[0])
            case Layout.SCANNED:
                pdf = render_scanned(columns[0], self.rng.randrange(2**32))
            case Layout.CUMULATIVE:
                pdf = render_cumulative(columns)
        if spec.bad:
            file_id = hashlib.md5(f"{self.h.pid}-labdoc-{k}".encode(), usedforsecurity=False).digest()
            pdf = deterministic_encrypted_pdf(pdf, file_id)
        return pdf

    def _result(self, line: LabResultTruth, report: LabReport) -> PlannedLabResult:
        effective = line.collected or report.collected
        found = self.by_name.get(line.name)
        value = line.value if line.value is not None else line.value_text
        return PlannedLabResult(
            analyte=found,
            name=line.name,
            loinc=line.loinc,
            value=value,
            unit=line.ucum,
            comparator=line.comparator,
            flag=line.flag,
            effective=effective,
            duplicates_fhir=found is not None and (found, effective, value) in self.fhir_points,
        )


def _title(spec: _Spec, report: LabReport) -> str:
    prefix = "Cumulative laboratory report" if spec.kind is DocumentKind.CUMULATIVE else "Laboratory report"
    return f"{prefix} {report.report_id}"


def _description(spec: _Spec, report: LabReport) -> str:
    """What the document is, from whom: never patient data."""
    what = {
        DocumentKind.VISIT_COPY: "Outside copy of clinic laboratory results",
        DocumentKind.INTERVAL: "Outside laboratory report",
        DocumentKind.CUMULATIVE: "Cumulative laboratory report",
    }[spec.kind]
    scanned = ", scanned" if spec.layout is Layout.SCANNED else ""
    return f"{what}{scanned} ({report.lab_name})"


def plan_lab_documents(history: LabHistory) -> tuple[list[dict[str, Any]], tuple[PlannedLabDocument, ...]]:
    """The patient's documents: FHIR resources (Binary before its DocumentReference) and their truth."""
    return _Planner(history).documents()
