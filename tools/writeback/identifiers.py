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
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, Generic, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AI_OUTPUT_SYSTEM",
    "Built",
    "BusinessIdentifier",
    "InputRef",
    "Param",
    "business_identifier",
    "fhir_datetime",
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
MatchBy = Literal["identifier", "_tag"]


class Built(Generic[R]):
    """A built resource with its business identifier and how a transaction finds an earlier copy.

    Two forms, one object: ``json`` (what the transaction sends) and ``resource`` (the validated
    fhir.resources model). The write-back builders make the JSON (``of_json``) and never need the
    model on the way to the server: validating and dumping every entry of every transaction was
    a third of a new patient's CPU time. The model is validated from that JSON on first use, and
    the builders' tests check that validating and dumping it gives the same JSON back, so what is
    sent is what validation would have sent. Built from a model (``resource=``), the JSON is its
    dump, made on first use. Treat both as read-only.
    """

    __slots__ = ("_json", "_resource", "_validate", "identifier", "match_by", "resource_type")

    def __init__(
        self,
        *,
        resource: R,
        resource_type: str,
        identifier: BusinessIdentifier,
        match_by: MatchBy = "identifier",
    ) -> None:
        self._resource: R | None = resource
        self._json: dict[str, Any] | None = None
        self._validate: Callable[[dict[str, Any]], R] | None = None
        self.resource_type = resource_type
        self.identifier = identifier
        # Provenance has no ``identifier`` element in R4: it carries the identifier as a meta.tag.
        self.match_by: MatchBy = match_by

    @classmethod
    def of_json(
        cls,
        validate: Callable[[dict[str, Any]], R],
        data: Mapping[str, Any],
        *,
        identifier: BusinessIdentifier,
        match_by: MatchBy = "identifier",
    ) -> Built[R]:
        """From the resource's JSON (``None`` elements are left out, as a dump leaves them);
        ``validate`` (``Observation.model_validate``, say) makes the model when it is asked for."""
        built: Built[R] = cls.__new__(cls)
        built._resource = None
        built._json = {k: v for k, v in data.items() if v is not None}
        built._validate = validate
        built.resource_type = str(data["resourceType"])
        built.identifier = identifier
        built.match_by = match_by
        return built

    @property
    def resource(self) -> R:
        if self._resource is None:
            # Not built from a model: built from JSON, with its validator.
            assert self._validate is not None
            assert self._json is not None
            self._resource = self._validate(self._json)
        return self._resource

    @property
    def json(self) -> dict[str, Any]:
        if self._json is None:
            self._json = cast(dict[str, Any], self.resource.model_dump(mode="json"))  # type: ignore[attr-defined]
        return self._json

    def __eq__(self, other: object) -> bool:
        """The same resource: type, identifier, match and content."""
        if not isinstance(other, Built):
            return NotImplemented
        return (self.resource_type, self.identifier, self.match_by) == (
            other.resource_type,
            other.identifier,
            other.match_by,
        ) and self.json == other.json

    def __hash__(self) -> int:
        return hash((self.resource_type, self.identifier.value))

    @property
    def full_url(self) -> str:
        return self.identifier.urn_uuid

    @property
    def if_none_exist(self) -> str:
        return f"{self.match_by}={self.identifier.token}"


def fhir_datetime(t: datetime) -> str:
    """A timezone-aware time as fhir.resources writes it: ISO 8601, ``Z`` for UTC."""
    text = t.isoformat()
    return text[:-6] + "Z" if t.utcoffset() == timedelta(0) and text.endswith("+00:00") else text
