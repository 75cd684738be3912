"""Who is calling the service, for which patient, with which scopes.

Every route resolves a `Principal` first (`agent.service.authz.current_principal`) and checks it
before any FHIR call: a patient-bound caller (a SMART app session, a patient-scoped access token)
reaches only its own patient; a system caller (a service key, a `system/` token) names the
patient per request.
"""

from __future__ import annotations

from typing import Literal

from fastapi import HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from fhir_adapters.auth import AuthProvider
from fhir_adapters.smart_scopes import Interaction, ScopeSet

PrincipalKind = Literal["session", "token", "service"]


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    kind: PrincipalKind
    # The launch's patient (session), the token's `patient` claim; None for system callers.
    patient_id: str | None
    # `fhirUser` of the session or token (Practitioner/123): recorded on approvals.
    fhir_user: str | None = None
    scopes: ScopeSet
    # Opaque, PHI-free label for logs: a hash of the session id, a token's client id, a key's name.
    label: str
    # Where this caller's FHIR reads and writes go, and with which credentials: a session's
    # launch `iss` and its (refreshing) tokens. None: the service's own FHIR settings.
    fhir_base_url: str | None = None
    fhir_auth: AuthProvider | None = Field(default=None, exclude=True, repr=False)

    def may(self, resource_type: str, interaction: Interaction) -> bool:
        return self.scopes.allows(resource_type, interaction)

    def require(self, resource_type: str, interaction: Interaction) -> None:
        """403 unless a scope grants `interaction` on `resource_type`."""
        if not self.may(resource_type, interaction):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"scope does not allow {interaction!r} on {resource_type}",
            )

    def require_patient(self, patient_id: str) -> str:
        """The patient this request may address: its own for a bound caller, 403 for any other."""
        if self.patient_id is not None and patient_id != self.patient_id:
            # No identifier in the message: it names neither patient.
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="not this session's patient")
        return patient_id

    def bound_patient(self) -> str:
        """The caller's own patient; 403 for a system caller (the route needs a launch context)."""
        if self.patient_id is None:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail="this route needs a patient-bound session or token"
            )
        return self.patient_id
