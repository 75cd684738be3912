"""What a longitudinal summary was computed from, kept on the report itself (pure).

The summary DiagnosticReport carries one extension `urn:chartagent:read-input` per input it read:
`Observation/12#<content hash>` for each result the trends could use and
`DocumentReference/7#<content hash>` for each lab-report document read (`tools.record.content_key`,
over the JSON the server sent, without `meta` and `text`: a server that bumps a version on an
unchanged re-send does not make the input look new). The next run compares the record's inputs
with this set and recomputes nothing when they are the same (`agent.planning.worklist`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from fhir.resources.R4B.resource import Resource

__all__ = ["READ_INPUT_URL", "read_input_extensions", "read_inputs_of"]

READ_INPUT_URL: Final = "urn:chartagent:read-input"
_HASH_CHARS: Final = 16


def read_input_extensions(keys: Iterable[str]) -> list[dict[str, Any]]:
    return [{"url": READ_INPUT_URL, "valueString": k} for k in sorted(set(keys))]


def read_inputs_of(report: Resource) -> frozenset[str] | None:
    """The read set a report carries; None for a report without one (written before it existed)."""
    extensions = getattr(report, "extension", None) or []
    keys = [str(e.valueString) for e in extensions if e.url == READ_INPUT_URL and e.valueString]
    return frozenset(keys) if keys else None
