"""The SMART App Launch client (fhir_adapters.smart_app_launch, smart_jwt) against an in-memory
issuer: PKCE, state, discovery checks, the token requests, id_token and JWKS checks."""

from __future__ import annotations

import asyncio
import base64
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from fake_smart_issuer import ISS, FakeIssuer, new_key, public_jwk
from pydantic import SecretStr, ValidationError

from fhir_adapters.error_tree import BadInputError, ServiceHttpError, ServiceProtocolError
from fhir_adapters.smart_app_launch import (
    Pkce,
    SmartAppClient,
    SmartConfiguration,
    SmartTokenRefused,
    TokenResponse,
    authorize_url,
    discover,
    new_state,
)
from fhir_adapters.smart_jwt import JwksCache, SmartProtocolError, TokenInvalid

CLIENT = "chartagent-app"
REDIRECT = "https://app.test/app/callback"


# ------------------------------------------------------------------------------ PKCE and state


def test_pkce_challenge_is_rfc7636s_s256_example() -> None:
    # RFC 7636 appendix B.
    pkce = Pkce(verifier=SecretStr("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"))
    assert pkce.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_new_verifiers_are_long_random_and_valid() -> None:
    a, b = Pkce.new(), Pkce.new()
    va = a.verifier.get_secret_value()
    assert 43 <= len(va) <= 128
    assert va != b.verifier.get_secret_value()
    assert "=" not in a.challenge
    assert va not in repr(a)


@pytest.mark.parametrize("verifier", ["x" * 42, "x" * 129, "a" * 50 + "+/"])
def test_a_verifier_outside_rfc7636_is_refused(verifier: str) -> None:
    with pytest.raises(ValidationError):
        Pkce(verifier=SecretStr(verifier))


def test_states_are_unguessable_and_distinct() -> None:
    states = {new_state() for _ in range(100)}
    assert len(states) == 100
    assert all(len(s) >= 43 for s in states)


# ------------------------------------------------------------------------------ discovery


def _discover(issuer: FakeIssuer) -> SmartConfiguration:
    async def go() -> SmartConfiguration:
        async with issuer.http() as http:
            return await discover(http, ISS)

    return asyncio.run(go())


def test_discovery_reads_the_endpoints() -> None:
    config = _discover(FakeIssuer())
    assert config.token_endpoint == "https://ehr.test/auth/token"
    assert config.jwks_uri == "https://ehr.test/auth/jwks"


def test_discovery_without_s256_is_refused() -> None:
    with pytest.raises(SmartProtocolError, match="PKCE S256"):
        _discover(FakeIssuer(code_challenge_methods=("plain",)))


def test_discovery_missing_an_endpoint_names_it() -> None:
    issuer = FakeIssuer()
    doc = issuer.configuration()
    del doc["token_endpoint"]
    issuer.configuration = lambda: doc  # type: ignore[method-assign]
    with pytest.raises(SmartProtocolError, match="token_endpoint") as caught:
        _discover(issuer)
    assert isinstance(caught.value, ServiceProtocolError)


def test_discovery_http_error() -> None:
    async def go() -> None:
        transport = httpx.MockTransport(lambda _r: httpx.Response(404))
        async with httpx.AsyncClient(transport=transport) as http:
            await discover(http, ISS)

    with pytest.raises(SmartProtocolError, match="HTTP 404"):
        asyncio.run(go())


def test_authorize_url_carries_every_parameter() -> None:
    config = _discover(FakeIssuer())
    pkce = Pkce.new()
    url = authorize_url(
        config,
        client_id=CLIENT,
        redirect_uri=REDIRECT,
        scope="launch openid fhirUser patient/*.rs",
        state="st",
        aud=ISS,
        pkce=pkce,
        launch="L1",
        nonce="n1",
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == config.authorization_endpoint
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {
        "response_type": "code",
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "scope": "launch openid fhirUser patient/*.rs",
        "state": "st",
        "aud": ISS,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "launch": "L1",
        "nonce": "n1",
    }
    assert pkce.verifier.get_secret_value() not in url


# ------------------------------------------------------------------------------ token requests


def _client(issuer: FakeIssuer, http: httpx.AsyncClient, secret: str | None = "app-secret") -> SmartAppClient:
    config = SmartConfiguration.model_validate(issuer.configuration())
    return SmartAppClient(
        http,
        config,
        iss=ISS,
        client_id=CLIENT,
        redirect_uri=REDIRECT,
        client_secret=SecretStr(secret) if secret else None,
        leeway_s=0,
    )


def _tokens(**extra: object) -> dict[str, object]:
    return {
        "access_token": "at-1",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.rs",
        **extra,
    }


def test_code_exchange_as_a_confidential_client() -> None:
    issuer = FakeIssuer()
    issuer.token_handler = lambda _r: httpx.Response(
        200, json=_tokens(patient="p1", need_patient_banner=True)
    )
    pkce = Pkce.new()

    async def go() -> TokenResponse:
        async with issuer.http() as http:
            return await _client(issuer, http).exchange_code("the-code", pkce)

    tokens = asyncio.run(go())
    assert (tokens.patient, tokens.need_patient_banner) == ("p1", True)
    sent = issuer.requests[-1]
    form = {k: v[0] for k, v in parse_qs(sent.content.decode()).items()}
    assert form == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": REDIRECT,
        "code_verifier": pkce.verifier.get_secret_value(),
    }
    assert (
        sent.headers["authorization"] == "Basic " + base64.b64encode(f"{CLIENT}:app-secret".encode()).decode()
    )
    assert "at-1" not in repr(tokens)


def test_a_public_client_names_itself_in_the_form() -> None:
    issuer = FakeIssuer()
    issuer.token_handler = lambda _r: httpx.Response(200, json=_tokens())

    async def go() -> None:
        async with issuer.http() as http:
            await _client(issuer, http, secret=None).exchange_code("c", Pkce.new())

    asyncio.run(go())
    sent = issuer.requests[-1]
    assert "authorization" not in sent.headers
    assert parse_qs(sent.content.decode())["client_id"] == [CLIENT]


def test_a_refused_exchange_names_the_step_and_the_oauth_error_never_the_code() -> None:
    issuer = FakeIssuer()  # refuses with invalid_grant

    async def go() -> None:
        async with issuer.http() as http:
            await _client(issuer, http).exchange_code("secret-code-value", Pkce.new())

    with pytest.raises(SmartTokenRefused) as caught:
        asyncio.run(go())
    assert isinstance(caught.value, ServiceHttpError)
    assert caught.value.status == 400
    assert str(caught.value) == "code exchange: the token endpoint answered HTTP 400 (invalid_grant)"


def test_refresh_sends_the_refresh_token_and_reads_a_rotated_one() -> None:
    issuer = FakeIssuer()
    issuer.token_handler = lambda _r: httpx.Response(200, json=_tokens(refresh_token="rt-2"))

    async def go() -> TokenResponse:
        async with issuer.http() as http:
            return await _client(issuer, http).refresh(SecretStr("rt-1"))

    tokens = asyncio.run(go())
    assert tokens.refresh_token is not None
    assert tokens.refresh_token.get_secret_value() == "rt-2"
    form = parse_qs(issuer.requests[-1].content.decode())
    assert form == {"grant_type": ["refresh_token"], "refresh_token": ["rt-1"]}


@pytest.mark.parametrize(
    "body",
    [{"token_type": "Bearer"}, _tokens(token_type="mac"), _tokens(access_token="")],
)
def test_an_unusable_token_response_is_a_protocol_error_without_its_content(body: dict[str, object]) -> None:
    issuer = FakeIssuer()
    issuer.token_handler = lambda _r: httpx.Response(200, json=body)

    async def go() -> None:
        async with issuer.http() as http:
            await _client(issuer, http).exchange_code("c", Pkce.new())

    with pytest.raises(SmartProtocolError) as caught:
        asyncio.run(go())
    assert "mac" not in str(caught.value)


# ------------------------------------------------------------------------------ id_token


def _verify(issuer: FakeIssuer, id_token: str, nonce: str | None = "n1") -> str | None:
    async def go() -> str | None:
        async with issuer.http() as http:
            claims = await _client(issuer, http).verify_id_token(SecretStr(id_token), nonce=nonce)
            return claims.fhir_user

    return asyncio.run(go())


def _id_claims(**extra: object) -> dict[str, object]:
    return {"aud": CLIENT, "nonce": "n1", "fhirUser": "Practitioner/p1", **extra}


def test_a_valid_id_token_gives_fhir_user() -> None:
    issuer = FakeIssuer()
    assert _verify(issuer, issuer.mint(_id_claims())) == "Practitioner/p1"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (_id_claims(iss="https://other.test/fhir"), "issuer"),
        (_id_claims(aud="another-client"), "audience"),
        (_id_claims(exp=int(time.time()) - 5), "expired"),
        (_id_claims(nonce="n2"), "nonce"),
        (_id_claims(azp="another-client"), "another client"),
    ],
)
def test_id_token_checks(claims: dict[str, object], reason: str) -> None:
    issuer = FakeIssuer()
    with pytest.raises(TokenInvalid, match=reason) as caught:
        _verify(issuer, issuer.mint(claims))
    assert isinstance(caught.value, BadInputError)
    assert str(caught.value).startswith("id_token: ")


def test_an_id_token_signed_by_another_key_is_refused() -> None:
    issuer = FakeIssuer()
    with pytest.raises(TokenInvalid, match="signature"):
        _verify(issuer, issuer.mint(_id_claims(), key=new_key()))


def test_an_id_token_with_an_unpublished_kid_is_refused() -> None:
    issuer = FakeIssuer()
    with pytest.raises(TokenInvalid, match="does not publish"):
        _verify(issuer, issuer.mint(_id_claims(), kid="k-unknown"))


def test_an_unsigned_id_token_is_refused() -> None:
    issuer = FakeIssuer()
    unsigned = jwt.encode({**_id_claims(), "iss": ISS, "exp": int(time.time()) + 60}, "", algorithm="none")
    with pytest.raises(TokenInvalid, match="algorithm"):
        _verify(issuer, unsigned)


# ------------------------------------------------------------------------------ JWKS cache


def test_jwks_is_cached_and_reread_once_for_a_rotated_key() -> None:
    issuer = FakeIssuer()
    now = [1000.0]
    cache = JwksCache("https://ehr.test/auth/jwks", min_refetch_s=30, clock=lambda: now[0])

    async def key_for(token: str) -> object:
        async with issuer.http() as http:
            return await cache.key_for(token, http)

    asyncio.run(key_for(issuer.mint({})))
    asyncio.run(key_for(issuer.mint({})))
    assert cache.fetches == 1
    # The issuer rotates its key: a token with the new kid makes the cache read the set again.
    issuer.key, issuer.kid = new_key(), "k2"
    now[0] += 31
    asyncio.run(key_for(issuer.mint({})))
    assert cache.fetches == 2
    # Unknown kids do not hammer the issuer: no re-read within min_refetch_s.
    with pytest.raises(TokenInvalid):
        asyncio.run(key_for(issuer.mint({}, kid="forged")))
    assert cache.fetches == 2


def test_jwks_skips_symmetric_and_encryption_keys() -> None:
    issuer = FakeIssuer()
    keys = [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "k1"},
        {**public_jwk(issuer.key, "k1"), "use": "enc"},
    ]
    transport = httpx.MockTransport(lambda _r: httpx.Response(200, json={"keys": keys}))
    cache = JwksCache("https://ehr.test/auth/jwks")

    async def go() -> None:
        async with httpx.AsyncClient(transport=transport) as http:
            await cache.key_for(issuer.mint({}), http)

    with pytest.raises(TokenInvalid, match="does not publish"):
        asyncio.run(go())
