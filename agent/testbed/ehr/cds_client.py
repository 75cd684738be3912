"""The stand-in as a CDS Hooks 2.0 client: it signs each hook call with its own key, as the spec
says an EHR does (`Authorization: Bearer <JWT>`, iss = the EHR, aud = the service's URL, a fresh
jti, `kid` in the header; the service fetches the key from `{ehr}/auth/jwks`)."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agent.testbed.ehr.keys import SigningKey

HOOK_JWT_LIFETIME_S = 300


@dataclass(frozen=True)
class HookSigner:
    """The stand-in's key and its hook issuer (`{ehr}`, its base URL; the JWKS is `{ehr}/auth/jwks`)."""

    key: SigningKey
    issuer: str

    @classmethod
    def from_state_dir(cls, state_dir: Path, issuer: str) -> HookSigner:
        """The signer of a stand-in that runs (or ran) with `state_dir` (its key file is there)."""
        return cls(SigningKey.load_or_create(state_dir), issuer.rstrip("/"))

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/auth/jwks"


def sign_hook_request(signer: HookSigner, url: str) -> str:
    """The JWT of one hook call to `url` (the service's full hook URL)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": signer.issuer,
        "aud": url,
        "exp": now + HOOK_JWT_LIFETIME_S,
        "iat": now,
        "jti": secrets.token_hex(16),
    }
    return signer.key.sign(claims)


def patient_view_request(
    *,
    patient_id: str,
    user_id: str,
    fhir_server: str | None = None,
    fhir_authorization: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": user_id, "patientId": patient_id},
    }
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    if fhir_authorization is not None:
        body["fhirAuthorization"] = fhir_authorization
    return body


async def call_patient_view(
    client: httpx.AsyncClient,
    signer: HookSigner,
    service_url: str,
    *,
    patient_id: str,
    user_id: str,
    fhir_server: str | None = None,
    fhir_authorization: dict[str, Any] | None = None,
) -> httpx.Response:
    """POST a signed patient-view call to `service_url` (`{app}/cds-services/{id}`)."""
    body = patient_view_request(
        patient_id=patient_id, user_id=user_id, fhir_server=fhir_server, fhir_authorization=fhir_authorization
    )
    token = sign_hook_request(signer, service_url)
    return await client.post(service_url, json=body, headers={"Authorization": f"Bearer {token}"})
