"""`{ehr}/fhir/.well-known/smart-configuration` (SMART App Launch 2.2) and `{ehr}/auth/jwks`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from agent.testbed.ehr.state import EhrState, ehr_of

router = APIRouter()

CAPABILITIES = (
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "context-ehr-patient",
    "context-standalone-patient",
    "context-banner",
    "permission-patient",
    "permission-user",
    "permission-v2",
    "permission-offline",
    "permission-online",
    "sso-openid-connect",
)


def smart_configuration(ehr: EhrState) -> dict[str, Any]:
    base = ehr.config.base_url
    scopes = sorted({s for c in ehr.config.clients for s in c.allowed.names})
    return {
        "issuer": ehr.issuer,
        "jwks_uri": f"{base}/auth/jwks",
        "authorization_endpoint": f"{base}/auth/authorize",
        "token_endpoint": f"{base}/auth/token",
        "introspection_endpoint": f"{base}/auth/introspect",
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "code_challenge_methods_supported": ["S256"],
        "response_types_supported": ["code"],
        "scopes_supported": scopes,
        "capabilities": list(CAPABILITIES),
    }


@router.get("/fhir/.well-known/smart-configuration")
async def well_known(request: Request) -> dict[str, Any]:
    return smart_configuration(ehr_of(request))


@router.get("/auth/jwks")
async def jwks(request: Request) -> dict[str, Any]:
    return ehr_of(request).key.jwks()
