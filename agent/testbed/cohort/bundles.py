"""Idempotent transaction Bundles: PUT every resource at its own id, so a rerun creates nothing.

Shared by the cohort seeder and the dataset loaders (`agent.testbed.datasets`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WriteTally", "put_transaction"]


def put_transaction(resources: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle of `PUT Type/id` entries (every resource must carry its id)."""
    entries = []
    for res in resources:
        rtype, rid = res.get("resourceType"), res.get("id")
        if not isinstance(rtype, str) or not isinstance(rid, str) or not rid:
            raise ValueError("every resource needs resourceType and id for an idempotent PUT")
        entries.append({"resource": dict(res), "request": {"method": "PUT", "url": f"{rtype}/{rid}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@dataclass
class WriteTally:
    """What the server reported per entry of transaction responses: 201 created, 200 updated."""

    created: int = 0
    updated: int = 0
    by_type: Counter[str] = field(default_factory=Counter)

    def add(self, request: Mapping[str, Any], response: Mapping[str, Any]) -> None:
        entries = request.get("entry") or []
        answers = response.get("entry") or []
        if len(answers) != len(entries):
            raise ValueError(f"transaction response has {len(answers)} entries for {len(entries)} requests")
        for entry, answer in zip(entries, answers, strict=True):
            self.by_type[entry["resource"]["resourceType"]] += 1
            status = str((answer.get("response") or {}).get("status", ""))
            if status.startswith("201"):
                self.created += 1
            elif status.startswith("200"):
                self.updated += 1
            else:
                raise ValueError(f"unexpected transaction entry status {status!r}")
