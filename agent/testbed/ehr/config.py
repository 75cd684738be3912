"""The stand-in's configuration file (JSON, written 0600 by whoever starts it: it holds client
secrets): where it listens, the FHIR server behind it, the app it launches, the registered clients.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, model_validator

from fhir_adapters.smart_scopes import ScopeSet

ClientKind = Literal["confidential", "public"]
GrantType = Literal["authorization_code", "refresh_token", "client_credentials"]

APP_CLIENT_ID = "chartagent-app"
PUBLIC_CLIENT_ID = "chartagent-public-test"
JOBS_CLIENT_ID = "chartagent-jobs"
# What the ChartAgent app may ask for (SMART v2; the narrower write scopes for the approval flow).
APP_SCOPES = (
    "launch launch/patient openid fhirUser offline_access online_access patient/*.rs patient/*.cruds "
    "user/*.rs patient/Observation.cu patient/DiagnosticReport.cu patient/Provenance.c patient/Device.c "
    "patient/DocumentReference.c"
)
JOBS_SCOPES = "system/*.rs system/*.cud"
# The clinician every launch of the stand-in acts as (created on the FHIR server when missing).
DEMO_PRACTITIONER_ID = "chartagent-demo-clinician"


class ClientRegistration(BaseModel):
    client_id: str
    kind: ClientKind
    # client_secret_basic for confidential clients; None for public ones (PKCE only).
    secret: SecretStr | None = None
    redirect_uris: list[str] = Field(default_factory=list)
    scopes: str
    grant_types: list[GrantType]

    @model_validator(mode="after")
    def _secret_matches_kind(self) -> ClientRegistration:
        if (self.kind == "confidential") != (self.secret is not None):
            raise ValueError("a confidential client needs a secret; a public one has none")
        return self

    # The config file is the secrets' only home: it must carry them.
    @field_serializer("secret", when_used="json")
    def _dump_secret(self, value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None

    @property
    def allowed(self) -> ScopeSet:
        return ScopeSet.parse(self.scopes)


class EhrConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    port: int
    # The FHIR server the proxy forwards to (sekmet's base URL, .../fhir).
    upstream_fhir_url: str
    # The ChartAgent service's base URL: the launcher sends browsers to {app}/app/launch.
    app_url: str
    # Signing key (PEM) and nothing else persistent.
    state_dir: Path
    access_token_lifetime_s: int = Field(default=3600, ge=1)
    refresh_token_lifetime_s: int = Field(default=86400, ge=1)
    code_lifetime_s: int = Field(default=60, ge=1)
    clients: list[ClientRegistration]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def fhir_url(self) -> str:
        """The FHIR base URL apps see (`iss`, the tokens' `aud`)."""
        return f"{self.base_url}/fhir"

    def client(self, client_id: str) -> ClientRegistration | None:
        return next((c for c in self.clients if c.client_id == client_id), None)

    @classmethod
    def load(cls, path: Path) -> EhrConfig:
        return cls.model_validate_json(path.read_text())

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.model_dump_json(indent=2))


def default_clients(app_url: str, app_secret: SecretStr, jobs_secret: SecretStr) -> list[ClientRegistration]:
    """The ChartAgent app (confidential), a public PKCE-only test client and the jobs' backend client."""
    callback = f"{app_url.rstrip('/')}/app/callback"
    return [
        ClientRegistration(
            client_id=APP_CLIENT_ID,
            kind="confidential",
            secret=app_secret,
            redirect_uris=[callback],
            scopes=APP_SCOPES,
            grant_types=["authorization_code", "refresh_token"],
        ),
        ClientRegistration(
            client_id=PUBLIC_CLIENT_ID,
            kind="public",
            redirect_uris=[callback],
            scopes=APP_SCOPES,
            grant_types=["authorization_code", "refresh_token"],
        ),
        ClientRegistration(
            client_id=JOBS_CLIENT_ID,
            kind="confidential",
            secret=jobs_secret,
            scopes=JOBS_SCOPES,
            grant_types=["client_credentials"],
        ),
    ]
