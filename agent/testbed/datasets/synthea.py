"""Load the SMART Health IT Synthea R4 bundles idempotently.

The files are transaction Bundles of `POST` entries with `urn:uuid:X` fullUrls; posted as they
are, every load would create a second copy. `to_idempotent` turns each entry into
`PUT Type/X` (X is the resource id, which these files set to the uuid) and rewrites every
`urn:uuid:X` reference to `Type/X`, so a reload updates in place and creates nothing.

On the wire: one `POST {base}` transaction per file. Resources that fail R4B validation
(what the embedded server's strict mode checks) are left out and reported, as is a whole
file whose transaction the server refuses; nothing of a refused file is kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from agent.testbed.cohort.bundles import WriteTally
from agent.testbed.datasets.paths import shared_data_dir
from agent.testbed.datasets.report import LoadReport, RejectedEntry
from fhir_adapters import FhirClient, FhirInvalid, parse_many

__all__ = ["SYNTHEA_SUBDIR", "bundle_files", "load_synthea", "synthea_dir", "to_idempotent"]

SYNTHEA_SUBDIR = "synthea-r4"
_URN = "urn:uuid:"


def synthea_dir(directory: Path | None = None) -> Path:
    return directory if directory is not None else shared_data_dir() / SYNTHEA_SUBDIR


def bundle_files(directory: Path | None = None) -> list[Path]:
    """The bundle files, in name order (README and LICENSE are not JSON)."""
    files = sorted(synthea_dir(directory).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no Synthea bundles (*.json) in {synthea_dir(directory)}")
    return files


def _references(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict holding a string `reference`, anywhere in a resource."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def to_idempotent(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a transaction Bundle with `PUT Type/id` entries and `Type/id` references.

    Pure. Entries without a `urn:uuid` fullUrl keep their request unchanged.
    """
    entries = json.loads(json.dumps(bundle.get("entry") or []))  # deep copy of plain JSON
    mapping: dict[str, str] = {}
    for entry in entries:
        full_url, res = entry.get("fullUrl"), entry.get("resource") or {}
        if isinstance(full_url, str) and full_url.startswith(_URN) and res.get("resourceType"):
            res.setdefault("id", full_url[len(_URN) :])
            mapping[full_url] = f"{res['resourceType']}/{res['id']}"
    for entry in entries:
        res = entry.get("resource") or {}
        for ref in _references(res):
            ref["reference"] = mapping.get(ref["reference"], ref["reference"])
        full_url = entry.get("fullUrl")
        if full_url in mapping:
            entry["request"] = {"method": "PUT", "url": mapping[full_url]}
            del entry["fullUrl"]  # a urn:uuid fullUrl no longer names anything in the bundle
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _without_invalid(bundle: dict[str, Any], source: str) -> tuple[dict[str, Any], list[RejectedEntry]]:
    """Drop entries whose resource fails R4B validation, so one bad resource does not sink the
    whole transaction under strict validation."""
    parsed = parse_many(e.get("resource") or {} for e in bundle["entry"])
    if not parsed.rejected:
        return bundle, []
    bad = {(r.resource_type, r.id) for r in parsed.rejected}
    kept = [
        e
        for e in bundle["entry"]
        if ((e.get("resource") or {}).get("resourceType"), e["resource"].get("id")) not in bad
    ]
    rejected = [
        RejectedEntry(source=source, resource=f"{r.resource_type}/{r.id}", reason=r.reason)
        for r in parsed.rejected
    ]
    return {**bundle, "entry": kept}, rejected


async def load_synthea(client: FhirClient, directory: Path | None = None) -> LoadReport:
    """Load every bundle of the directory; rerunning it changes no resource count."""
    started = time.perf_counter()
    tally = WriteTally()
    report = LoadReport()
    for path in bundle_files(directory):
        bundle, rejected = _without_invalid(to_idempotent(json.loads(path.read_bytes())), path.name)
        report.rejected.extend(rejected)
        try:
            response = await client.transaction(bundle)
        except FhirInvalid as exc:
            # The server's reasons name elements and ids, not values (see fhir_adapters.errors).
            report.rejected.append(RejectedEntry(source=path.name, resource="Bundle", reason=str(exc)))
            continue
        tally.add(bundle, response)
        report.bundles += 1
    report.resources_by_type = dict(sorted(tally.by_type.items()))
    report.created, report.updated = tally.created, tally.updated
    report.elapsed_s = round(time.perf_counter() - started, 3)
    return report
