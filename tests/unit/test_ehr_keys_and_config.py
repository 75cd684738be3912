"""The stand-in's signing key (kept across restarts, private file) and its config file."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest
from pydantic import SecretStr, ValidationError

from agent.testbed.ehr.cds_client import HookSigner, sign_hook_request
from agent.testbed.ehr.config import APP_CLIENT_ID, ClientRegistration, EhrConfig, default_clients
from agent.testbed.ehr.keys import KEY_FILE, SigningKey


def test_key_is_created_once_private_and_reloaded(tmp_path: Path) -> None:
    first = SigningKey.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    again = SigningKey.load_or_create(tmp_path)
    assert again.kid == first.kid
    token = first.sign({"iss": "i", "aud": "a", "exp": 4_000_000_000, "iat": 1})
    assert again.verify(token, audience="a", issuer="i")["iss"] == "i"
    with pytest.raises(jwt.InvalidAudienceError):
        again.verify(token, audience="other", issuer="i")
    jwk = first.public_jwk()
    assert (jwk["kid"], jwk["alg"], jwk["use"]) == (first.kid, "RS256", "sig")
    assert "d" not in jwk  # public half only


def test_hook_jwt_claims(tmp_path: Path) -> None:
    signer = HookSigner.from_state_dir(tmp_path, "http://127.0.0.1:8095/")
    token = sign_hook_request(signer, "http://app/cds-services/x")
    assert jwt.get_unverified_header(token)["kid"] == signer.key.kid
    claims = signer.key.verify(token, audience="http://app/cds-services/x", issuer="http://127.0.0.1:8095")
    assert claims["exp"] - claims["iat"] == 300
    assert signer.jwks_url == "http://127.0.0.1:8095/auth/jwks"


def test_config_round_trips_with_secrets_and_private_mode(tmp_path: Path) -> None:
    clients = default_clients("http://app:1/", SecretStr("app-secret-x1"), SecretStr("jobs-secret-x2"))
    config = EhrConfig(
        port=1, upstream_fhir_url="http://f/fhir", app_url="http://app:1", state_dir=tmp_path, clients=clients
    )
    path = tmp_path / "ehr.json"
    config.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = EhrConfig.load(path)
    app = loaded.client(APP_CLIENT_ID)
    assert app is not None
    assert app.secret is not None
    assert app.secret.get_secret_value() == "app-secret-x1"
    assert app.redirect_uris == ["http://app:1/app/callback"]
    assert loaded.fhir_url == "http://127.0.0.1:1/fhir"
    assert "app-secret-x1" not in repr(loaded)


def test_client_kind_and_secret_agree() -> None:
    with pytest.raises(ValidationError):
        ClientRegistration(
            client_id="c", kind="confidential", scopes="openid", grant_types=["authorization_code"]
        )
    with pytest.raises(ValidationError):
        ClientRegistration(
            client_id="c",
            kind="public",
            secret=SecretStr("s"),
            scopes="openid",
            grant_types=["authorization_code"],
        )
