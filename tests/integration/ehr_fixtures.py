"""pytest fixtures: the EHR stand-in (`agent.testbed.ehr`) as a real loopback process in front of
the session's FHIR server, started by the same code as `chartagent stack up`.

- `ehr_standin_factory(app_url=..., access_token_lifetime_s=..., fhir_url=...)`: a fresh stand-in
  (its own key, clients and secrets) that launches the app at `app_url`; all are stopped at the
  end of the session.
- `ehr_standin`: one shared stand-in whose app URL is a placeholder (nothing listens there): for
  tests that need tokens, the proxy or hook signatures but no running app.

`EhrStandin.token_for(patient, scopes)` runs the real EHR launch + authorization code flow with
PKCE (launcher -> authorize -> code -> token) without a browser.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from agent.testbed.ehr.cds_client import HookSigner
from agent.testbed.ehr.config import APP_CLIENT_ID, JOBS_CLIENT_ID, PUBLIC_CLIENT_ID, EhrConfig
from agent.testbed.stack.ehr_server import EhrServer, ehr_config
from agent.testbed.stack.ports import free_port
from fhir_adapters.smart_app_launch import Pkce, TokenResponse, new_state

ClientName = str  # "app" (confidential), "public" (PKCE only)


@dataclass
class EhrStandin:
    config: EhrConfig
    server: EhrServer

    @property
    def base_url(self) -> str:
        return self.config.base_url

    @property
    def fhir_url(self) -> str:
        """What apps see: `iss`, the tokens' `aud` and the proxy's base."""
        return self.config.fhir_url

    @property
    def upstream_fhir_url(self) -> str:
        """The FHIR server behind the proxy (no auth, no compartment: the EHR's own view)."""
        return self.config.upstream_fhir_url

    @property
    def app_url(self) -> str:
        return self.config.app_url

    @property
    def redirect_uri(self) -> str:
        return f"{self.config.app_url}/app/callback"

    app_client_id = APP_CLIENT_ID
    public_client_id = PUBLIC_CLIENT_ID
    jobs_client_id = JOBS_CLIENT_ID

    def secret_of(self, client_id: str) -> str:
        client = self.config.client(client_id)
        assert client is not None
        assert client.secret is not None
        return client.secret.get_secret_value()

    @property
    def app_client_secret(self) -> str:
        return self.secret_of(APP_CLIENT_ID)

    @property
    def jobs_client_secret(self) -> str:
        return self.secret_of(JOBS_CLIENT_ID)

    @property
    def hook_signer(self) -> HookSigner:
        """Signs CDS Hooks calls as this EHR (`agent.testbed.ehr.cds_client.sign_hook_request`)."""
        return HookSigner.from_state_dir(self.config.state_dir, self.base_url)

    def basic_auth(self, client_id: str) -> dict[str, str]:
        raw = f"{client_id}:{self.secret_of(client_id)}".encode()
        return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}

    def launch(self, patient_id: str, user: str | None = None) -> str:
        """A launch id from the launcher (what `{app}/app/launch?launch=` receives)."""
        params = {"patient": patient_id, **({"user": user} if user else {})}
        response = httpx.get(f"{self.base_url}/launch", params=params, timeout=10)
        assert response.status_code == 302, response.text
        return parse_qs(urlsplit(response.headers["location"]).query)["launch"][0]

    def authorize(self, params: dict[str, str]) -> httpx.Response:
        return httpx.get(f"{self.base_url}/auth/authorize", params=params, timeout=10)

    def authorize_params(
        self, *, scope: str, pkce: Pkce, client: ClientName = "app", **extra: str
    ) -> dict[str, str]:
        return {
            "response_type": "code",
            "client_id": APP_CLIENT_ID if client == "app" else PUBLIC_CLIENT_ID,
            "redirect_uri": self.redirect_uri,
            "scope": scope,
            "state": new_state(),
            "aud": self.fhir_url,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
            **extra,
        }

    def exchange(self, form: dict[str, str], *, client: ClientName = "app") -> httpx.Response:
        if client == "app":
            return httpx.post(
                f"{self.base_url}/auth/token", data=form, headers=self.basic_auth(APP_CLIENT_ID)
            )
        return httpx.post(f"{self.base_url}/auth/token", data={**form, "client_id": PUBLIC_CLIENT_ID})

    def token_response(self, patient_id: str, scopes: str, *, client: ClientName = "app") -> dict[str, Any]:
        """The raw token endpoint answer of a full EHR launch for `patient_id`."""
        pkce = Pkce.new()
        params = self.authorize_params(scope=scopes, pkce=pkce, client=client, launch=self.launch(patient_id))
        redirect = self.authorize(params)
        assert redirect.status_code == 302, redirect.text
        query = parse_qs(urlsplit(redirect.headers["location"]).query)
        assert "code" in query, query.get("error")
        form = {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": self.redirect_uri,
            "code_verifier": pkce.verifier.get_secret_value(),
        }
        response = self.exchange(form, client=client)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def token_for(self, patient_id: str, scopes: str, *, client: ClientName = "app") -> TokenResponse:
        """Tokens of a real EHR launch for `patient_id` with `scopes` (narrowed to the client's)."""
        return TokenResponse.model_validate(self.token_response(patient_id, scopes, client=client))

    def system_token(self, scopes: str | None = None, *, audience: str | None = None) -> str:
        """A client_credentials access token of the backend client `chartagent-jobs`."""
        form = {"grant_type": "client_credentials", **({"scope": scopes} if scopes else {})}
        if audience is not None:
            form["resource"] = audience
        response = httpx.post(
            f"{self.base_url}/auth/token", data=form, headers=self.basic_auth(JOBS_CLIENT_ID)
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


EhrStandinFactory = Callable[..., EhrStandin]


@pytest.fixture(scope="session")
def ehr_standin_factory(
    fhir_base_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EhrStandinFactory]:
    """Start a stand-in. Keywords: app_url (default: a placeholder nobody listens on),
    access_token_lifetime_s (default 3600), fhir_url (default: the session's FHIR server)."""
    started: list[EhrServer] = []

    def start(
        *, app_url: str | None = None, access_token_lifetime_s: int = 3600, fhir_url: str | None = None
    ) -> EhrStandin:
        state_dir = tmp_path_factory.mktemp("ehr")
        config = ehr_config(
            port=free_port(),
            state_dir=state_dir,
            upstream_fhir_url=fhir_url or fhir_base_url,
            app_url=app_url or f"http://127.0.0.1:{free_port()}",
            access_token_lifetime_s=access_token_lifetime_s,
        )
        server = EhrServer(state_dir)
        started.append(server)
        server.start(config)
        return EhrStandin(config=config, server=server)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def ehr_standin(ehr_standin_factory: EhrStandinFactory) -> EhrStandin:
    """A shared stand-in in front of the session's FHIR server (placeholder app URL)."""
    return ehr_standin_factory()
