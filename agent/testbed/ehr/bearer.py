"""The proxy's caller: a bearer access token this stand-in signed, for its own FHIR base."""

from __future__ import annotations

from dataclasses import dataclass

import jwt
from starlette.requests import Request

from agent.testbed.ehr.state import EhrState
from fhir_adapters.error_tree import BadInputError
from fhir_adapters.smart_scopes import ScopeContext, ScopeSet


class Unauthenticated(BadInputError):
    """No valid token: the message is safe to send back (it holds no token)."""


@dataclass(frozen=True)
class Caller:
    client_id: str
    scopes: ScopeSet
    # The token's patient: its compartment is all it reaches. None: a user or system token.
    patient_id: str | None

    @property
    def contexts(self) -> tuple[ScopeContext, ...]:
        # patient/ scopes mean nothing without a patient in context.
        return ("patient", "user", "system") if self.patient_id is not None else ("user", "system")


def caller_of(request: Request, ehr: EhrState) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token")
    try:
        claims = ehr.key.verify(token.strip(), audience=ehr.config.fhir_url, issuer=ehr.issuer)
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated("token not valid for this server") from exc
    patient = claims.get("patient")
    return Caller(
        client_id=str(claims.get("client_id", "")),
        scopes=ScopeSet.parse(str(claims.get("scope", ""))),
        patient_id=patient if isinstance(patient, str) else None,
    )
