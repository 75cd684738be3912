"""The stand-in's proxy when the FHIR server behind it fails (a fault injected in its transport)."""

from __future__ import annotations

from pathlib import Path

import httpx
from pydantic import SecretStr

from agent.testbed.ehr.app import create_app
from agent.testbed.ehr.config import APP_CLIENT_ID, EhrConfig, default_clients
from agent.testbed.ehr.state import EhrState
from agent.testbed.ehr.tokens import mint_access_token


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def test_unreachable_fhir_server_is_a_gateway_error(tmp_path: Path) -> None:
    clients = default_clients("http://app:1", SecretStr("a" * 20), SecretStr("b" * 20))
    config = EhrConfig(
        port=9,
        upstream_fhir_url="http://fhir/fhir",
        app_url="http://app:1",
        state_dir=tmp_path,
        clients=clients,
    )
    app = create_app(config, transport=httpx.MockTransport(refuse))
    ehr: EhrState = app.state.ehr
    token, _ = mint_access_token(
        ehr, client_id=APP_CLIENT_ID, scope="patient/*.rs", patient_id="p", fhir_user=None
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=config.base_url) as client:
        read = await client.get("/fhir/Patient/p", headers={"Authorization": f"Bearer {token}"})
        assert read.status_code == 502
        assert read.json()["issue"][0]["code"] == "transient"
        assert (await client.get("/fhir/metadata")).status_code == 502
        # Refusals come before any upstream call.
        assert (await client.get("/fhir/Patient/p")).status_code == 401
        other = await client.get("/fhir/Patient/q", headers={"Authorization": f"Bearer {token}"})
        assert other.status_code == 502  # a read is checked on what the server returns
        search = await client.get(
            "/fhir/Observation", params={"patient": "q"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert search.status_code == 403
