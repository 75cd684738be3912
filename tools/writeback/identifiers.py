"""Deterministic business identifiers for what ChartAgent writes (pure).

An identifier is the SHA-256 of a canonical JSON document holding the engine identity, the
task, the sorted inputs (reference plus version and/or value) and the parameters: the same
inputs give the same identifier, so a rerun's ``ifNoneExist`` finds the earlier write and
creates nothing; any changed input, parameter or engine version gives a new one.

The bundle's ``urn:uuid`` fullUrls are uuid5 of the identifier, so one run always produces
byte-identical bundles.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AI_OUTPUT_SYSTEM",
    "Built",
    "BusinessIdentifier",
    "InputRef",
    "Param",
    "business_identifier",
]

AI_OUTPUT_SYSTEM: Final = "urn:chartagent:ai-output"

Param = str | int | float | bool | None


class InputRef(BaseModel):
    """One input as it was read: its reference and its version and/or value."""

    model_config = ConfigDict(frozen=True)

    reference: str = Field(min_length=1)
    version: str | None = None  # meta.versionId or meta.lastUpdated
    value: str | None = None  # what was read, when the version alone might not pin it


class BusinessIdentifier(BaseModel):
    model_config = ConfigDict(frozen=True)

    system: str = AI_OUTPUT_SYSTEM
    value: str = Field(pattern=r"^[0-9a-f]{64}$")

    @property
    def token(self) -> str:
        """``system|value``: the search token for ``identifier=`` and ``_tag=``."""
        return f"{self.system}|{self.value}"

    @property
    def urn_uuid(self) -> str:
        return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, self.token)}"

    def as_fhir(self) -> dict[str, str]:
        return {"system": self.system, "value": self.value}


def business_identifier(
    *,
    engine: str,
    task: str,
    inputs: Iterable[InputRef] = (),
    parameters: Mapping[str, Param] | None = None,
) -> BusinessIdentifier:
    """The identifier of the output of ``task`` run by ``engine`` on ``inputs`` with ``parameters``.

    Input order and duplicates do not matter; everything else does.
    """
    if not engine.strip() or not task.strip():
        raise ValueError("an identifier needs an engine identity and a task")
    refs = sorted({(i.reference, i.version or "", i.value or "") for i in inputs})
    document = {
        "engine": engine,
        "task": task,
        "inputs": [list(r) for r in refs],
        "parameters": dict(sorted((parameters or {}).items())),
    }
    canonical = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return BusinessIdentifier(value=hashlib.sha256(canonical.encode("utf-8")).hexdigest())


R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Built(Generic[R]):
    """A built resource with its business identifier and how a transaction finds an earlier copy."""

    resource: R
    resource_type: str
    identifier: BusinessIdentifier
    # Provenance has no ``identifier`` element in R4: it carries the identifier as a meta.tag.
    match_by: Literal["identifier", "_tag"] = "identifier"

    @property
    def full_url(self) -> str:
        return self.identifier.urn_uuid

    @property
    def if_none_exist(self) -> str:
        return f"{self.match_by}={self.identifier.token}"
