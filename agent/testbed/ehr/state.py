"""The stand-in's process-wide state (on `app.state.ehr`): config, signing key, grants, and the
HTTP client of the FHIR server behind the proxy."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from starlette.requests import HTTPConnection

from agent.testbed.ehr.config import EhrConfig
from agent.testbed.ehr.grants import GrantStores
from agent.testbed.ehr.keys import SigningKey


@dataclass
class EhrState:
    config: EhrConfig
    key: SigningKey
    grants: GrantStores
    upstream: httpx.AsyncClient
    # Set once the demo clinician exists on the FHIR server (`patients.ensure_demo_practitioner`).
    demo_practitioner_ready: bool = False

    @classmethod
    def create(cls, config: EhrConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> EhrState:
        return cls(
            config=config,
            key=SigningKey.load_or_create(config.state_dir),
            grants=GrantStores.create(
                code_lifetime_s=config.code_lifetime_s, refresh_lifetime_s=config.refresh_token_lifetime_s
            ),
            upstream=httpx.AsyncClient(transport=transport, timeout=30.0),
        )

    @property
    def issuer(self) -> str:
        """`iss` of access and id tokens: the FHIR base URL apps see (SMART's `iss`)."""
        return self.config.fhir_url


def ehr_of(conn: HTTPConnection) -> EhrState:
    state: EhrState = conn.app.state.ehr
    return state
