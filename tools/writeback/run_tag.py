"""Which job run created a resource: a ``meta.tag`` ``urn:chartagent:job-run|<run id>`` (pure).

An attempt at a patient can be killed after its transaction committed and before the job's ledger
recorded the patient. The run resumes the patient, and the resumed attempt finds the summary the
killed one wrote current: on its own it would call the patient unchanged and list nothing
written. The tag tells it which of the record's resources this run created.

The tag is put on when a job posts (``tagged_with_run``), not when the bundle is built: the
identifiers that make the creates conditional come from the inputs, not from the content, so a
later run's create still matches the stored resource, and the server keeps the tag of the run
that created it. Devices are left untagged: one model Device serves every patient and run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["JOB_RUN_SYSTEM", "created_by_run", "tagged_with_run"]

JOB_RUN_SYSTEM: Final = "urn:chartagent:job-run"
_UNTAGGED: Final = frozenset({"Device"})


def tagged_with_run(bundle: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """A copy of ``bundle`` whose created resources (POST entries) carry the run's tag."""
    tag = {"system": JOB_RUN_SYSTEM, "code": run_id}
    entries = []
    for entry in bundle.get("entry") or ():
        resource = entry.get("resource")
        method = (entry.get("request") or {}).get("method")
        if method != "POST" or not isinstance(resource, Mapping) or resource.get("resourceType") in _UNTAGGED:
            entries.append(entry)
            continue
        meta = dict(resource.get("meta") or {})
        meta["tag"] = [*(meta.get("tag") or ()), tag]
        entries.append({**entry, "resource": {**resource, "meta": meta}})
    return {**bundle, "entry": entries}


def created_by_run(resources: Iterable[Any], run_id: str) -> list[str]:
    """``Type/id`` of those of ``resources`` (fhir.resources models, as read) that carry the run's tag."""
    found = []
    for resource in resources:
        meta = getattr(resource, "meta", None)
        tags = getattr(meta, "tag", None) or ()
        if any(t.system == JOB_RUN_SYSTEM and t.code == run_id for t in tags):
            found.append(f"{resource.get_resource_type()}/{resource.id}")
    return sorted(found)
