"""A newer AI report replaces the older current one of the same patient and kind (pure).

Without this, every run whose inputs differ (a faulty run, then a clean one; a new result) leaves
one more current preliminary report, and the EHR and the app show several summaries of one
patient, the older built on incomplete inputs. So the transaction that creates a report also
retires each earlier one of the same kind, atomically:

- *same kind*: same subject, same ``code`` codings, same ``imagingStudy`` references (one
  longitudinal summary per patient; one comparison per pair of studies);
- only ChartAgent's own AI reports (AIAST and our business identifier) that are still
  ``preliminary``: a report a person approved (``final``) or rejected stays as it is;
- the older report gets ``status`` ``cancelled`` (DiagnosticReport has no "superseded" status; of
  R4's codes ``cancelled`` is the one that withdraws a report without calling it an error) and an
  extension ``urn:chartagent:superseded-by`` naming the new report;
- the update is a ``PUT`` with ``ifMatch`` on the version read, so a report someone changed in
  the meantime (approved, say) makes the transaction fail rather than be overwritten.

A rerun with the same inputs finds its own report current and builds no update.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Final

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.resource import Resource

from tools.writeback.ai_labels import is_ai_asserted
from tools.writeback.identifiers import AI_OUTPUT_SYSTEM

__all__ = ["SUPERSEDED_BY_URL", "SUPERSEDED_STATUS", "report_kind", "with_superseded"]

SUPERSEDED_BY_URL: Final = "urn:chartagent:superseded-by"
SUPERSEDED_STATUS: Final = "cancelled"

Kind = tuple[str, frozenset[tuple[str, str]], tuple[str, ...]]


def report_kind(report: Mapping[str, Any]) -> Kind:
    """(subject, code codings, imaging studies) of a DiagnosticReport as JSON."""
    subject = str((report.get("subject") or {}).get("reference") or "")
    codings = frozenset(
        (str(c.get("system") or ""), str(c.get("code") or ""))
        for c in (report.get("code") or {}).get("coding") or []
    )
    studies = tuple(sorted(str(s.get("reference") or "") for s in report.get("imagingStudy") or []))
    return subject, codings, studies


def _our_identifier(report: Mapping[str, Any]) -> str | None:
    for identifier in report.get("identifier") or []:
        if identifier.get("system") == AI_OUTPUT_SYSTEM and identifier.get("value"):
            return str(identifier["value"])
    return None


def _retired(old: Mapping[str, Any], new_full_url: str) -> dict[str, Any]:
    resource = copy.deepcopy(dict(old))
    resource["status"] = SUPERSEDED_STATUS
    resource["extension"] = [
        *(e for e in resource.get("extension") or [] if e.get("url") != SUPERSEDED_BY_URL),
        {"url": SUPERSEDED_BY_URL, "valueReference": {"reference": new_full_url}},
    ]
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        resource["meta"] = meta
    else:
        resource.pop("meta", None)
    return resource


def with_superseded(bundle: Mapping[str, Any], current: Iterable[Resource]) -> dict[str, Any]:
    """``bundle`` plus one ``PUT`` per report of ``current`` (the record's resources: only its
    DiagnosticReports count) that a DiagnosticReport created by ``bundle`` replaces."""
    new_reports = {
        report_kind(e["resource"]): e
        for e in bundle.get("entry") or []
        if e["resource"].get("resourceType") == "DiagnosticReport" and e["request"]["method"] == "POST"
    }
    updates: list[dict[str, Any]] = []
    reports = [r for r in current if isinstance(r, DiagnosticReport)]
    for report in sorted(reports, key=lambda r: str(r.id)):
        old = report.model_dump(mode="json", exclude_none=True)
        entry = new_reports.get(report_kind(old))
        value = _our_identifier(old)
        if (
            entry is None
            or report.id is None
            or report.status != "preliminary"
            or not is_ai_asserted(report)
            or value is None
            or value == _our_identifier(entry["resource"])
        ):
            continue
        request: dict[str, Any] = {"method": "PUT", "url": f"DiagnosticReport/{report.id}"}
        version = report.meta.versionId if report.meta is not None else None
        if version:
            request["ifMatch"] = f'W/"{version}"'
        updates.append({"resource": _retired(old, str(entry["fullUrl"])), "request": request})
    if not updates:
        return dict(bundle)
    return {**bundle, "entry": [*bundle["entry"], *updates]}
