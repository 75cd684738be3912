"""The result of loading a dataset into a FHIR server."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["LoadReport", "RejectedEntry"]


class RejectedEntry(BaseModel):
    """A resource (or a whole bundle) the loader or the server refused; ids and reasons only,
    never values (they are patient data)."""

    source: str  # file name
    resource: str  # "Type/id", or "Bundle" when a whole transaction failed
    reason: str


class LoadReport(BaseModel):
    bundles: int = 0  # transactions sent and accepted
    resources_by_type: dict[str, int] = Field(default_factory=dict)
    created: int = 0
    updated: int = 0
    rejected: list[RejectedEntry] = Field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def resources(self) -> int:
        return sum(self.resources_by_type.values())
