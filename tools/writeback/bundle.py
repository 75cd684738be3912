"""Built resources -> a transaction Bundle of conditional creates (pure): the one wire shape of every write.

Each entry is ``POST <type>`` with ``ifNoneExist`` on its business identifier (``_tag`` for
Provenance), so the server creates what is new and resolves the rest to what it already holds.
Entries are sent in order, each fullUrl once; one fullUrl with two different contents is a bug
upstream and raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tools.writeback.identifiers import Built

__all__ = ["conditional_create_bundle", "unique_entries"]


def unique_entries(built: Iterable[Built[Any]]) -> list[Built[Any]]:
    """First occurrence of each fullUrl; one fullUrl with two different contents is an error."""
    seen: dict[str, Built[Any]] = {}
    for b in built:
        first = seen.setdefault(b.full_url, b)
        if first is not b and (first.resource_type != b.resource_type or first.json != b.json):
            raise ValueError(f"two different {b.resource_type} entries share the fullUrl {b.full_url}")
    return list(seen.values())


def conditional_create_bundle(built: Iterable[Built[Any]]) -> dict[str, Any]:
    """The transaction Bundle (JSON-ready dict) creating ``built`` unless already there.

    Assembled as a plain dict from each entry's JSON (``Built.json``): nothing is validated or
    dumped on the way (the builders' tests hold their JSON to what validation would give)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": b.full_url,
                "resource": b.json,
                "request": {"method": "POST", "url": b.resource_type, "ifNoneExist": b.if_none_exist},
            }
            for b in unique_entries(built)
        ],
    }
