"""SMART App Launch 2.2 client (authorization code + PKCE): what a backend-for-frontend needs.

On the wire (iss = the EHR's FHIR base URL):
    GET  {iss}/.well-known/smart-configuration            discovery (S256 required)
    302  {authorization_endpoint}?response_type=code&client_id&redirect_uri&scope&state&aud={iss}
         &code_challenge=<S256 of the verifier>&code_challenge_method=S256[&launch][&nonce]
    POST {token_endpoint}  grant_type=authorization_code&code&redirect_uri&code_verifier
         (confidential client: HTTP Basic client_id:client_secret; public client: client_id in form)
    POST {token_endpoint}  grant_type=refresh_token&refresh_token (the answer may rotate it)
    GET  {jwks_uri}                                        the id_token's signing keys

Errors are `SmartError`s (fhir_adapters.smart_jwt) naming the step; none quotes a token or code.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from fhir_adapters.error_tree import ServiceHttpError
from fhir_adapters.smart_jwt import (
    LEEWAY_S,
    JwksCache,
    SmartError,
    SmartProtocolError,
    SmartTransportError,
    TokenInvalid,
    read_unverified,
    verify_jwt,
)

__all__ = [
    "IdTokenClaims",
    "Pkce",
    "SmartAppClient",
    "SmartConfiguration",
    "SmartTokenRefused",
    "TokenResponse",
    "authorize_url",
    "check_id_token_claims",
    "discover",
    "new_state",
]

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


class SmartTokenRefused(SmartError, ServiceHttpError):
    """The token endpoint refused a grant (a used code, a wrong verifier, a spent refresh token)."""

    def __init__(self, status: int, step: str, error: str | None) -> None:
        # `error` is the OAuth error code (invalid_grant ...), a fixed vocabulary, never a token.
        code = error if error and re.fullmatch(r"[a-z_]{1,40}", error) else "no OAuth error code"
        self.error = error
        super().__init__(status, f"{step}: the token endpoint answered HTTP {status} ({code})")


class SmartConfiguration(BaseModel):
    """`.well-known/smart-configuration`: the fields this client uses (the rest are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    issuer: str | None = None
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str | None = None
    introspection_endpoint: str | None = None
    code_challenge_methods_supported: tuple[str, ...] = ()
    grant_types_supported: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()

    @field_validator("authorization_endpoint", "token_endpoint", "jwks_uri", "introspection_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("not an http(s) URL")
        return value


async def discover(http: httpx.AsyncClient, iss: str) -> SmartConfiguration:
    """The issuer's SMART configuration; refuses one without PKCE S256 (we never send `plain`)."""
    url = f"{iss.rstrip('/')}/.well-known/smart-configuration"
    try:
        resp = await http.get(url, headers={"Accept": "application/json"})
    except httpx.TransportError as exc:
        raise SmartTransportError(
            f"SMART discovery: no answer from the issuer ({type(exc).__name__})"
        ) from exc
    if resp.status_code != 200:
        raise SmartProtocolError(f"SMART discovery: the issuer answered HTTP {resp.status_code}")
    try:
        doc = resp.json()
    except ValueError as exc:
        raise SmartProtocolError("SMART discovery: the answer is not JSON") from exc
    try:
        config = SmartConfiguration.model_validate(doc)
    except ValidationError as exc:
        fields = ", ".join(sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})) or "the document"
        raise SmartProtocolError(f"SMART discovery: unusable or missing {fields}") from None
    if "S256" not in config.code_challenge_methods_supported:
        raise SmartProtocolError("SMART discovery: the issuer does not support PKCE S256")
    return config


class Pkce(BaseModel):
    """A PKCE pair: the verifier stays in our server-side launch state, the challenge goes out."""

    model_config = ConfigDict(frozen=True)

    verifier: SecretStr

    @field_validator("verifier")
    @classmethod
    def _valid_verifier(cls, value: SecretStr) -> SecretStr:
        if not _VERIFIER.match(value.get_secret_value()):
            raise ValueError("a PKCE verifier is 43-128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636)")
        return value

    @classmethod
    def new(cls) -> Pkce:
        # 64 random bytes -> 86 base64url characters, within RFC 7636's 43-128.
        return cls(verifier=SecretStr(secrets.token_urlsafe(64)))

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.get_secret_value().encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    """An unguessable `state` (also used for the OpenID `nonce`)."""
    return secrets.token_urlsafe(32)


def authorize_url(
    config: SmartConfiguration,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    state: str,
    aud: str,
    pkce: Pkce,
    launch: str | None = None,
    nonce: str | None = None,
) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "aud": aud,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    if launch is not None:
        params["launch"] = launch
    if nonce is not None:
        params["nonce"] = nonce
    sep = "&" if "?" in config.authorization_endpoint else "?"
    return f"{config.authorization_endpoint}{sep}{urlencode(params)}"


class TokenResponse(BaseModel):
    """The token endpoint's answer (SMART App Launch 2.2 fields); secrets never in repr."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    access_token: SecretStr
    token_type: str
    expires_in: int | None = Field(default=None, ge=0)
    scope: str = ""
    patient: str | None = None
    encounter: str | None = None
    id_token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    need_patient_banner: bool = False
    smart_style_url: str | None = None

    @field_validator("token_type")
    @classmethod
    def _bearer(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError("token_type is not Bearer")
        return value

    @field_validator("access_token")
    @classmethod
    def _nonempty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("access_token is empty")
        return value


class IdTokenClaims(BaseModel):
    """What the app keeps of a verified id_token."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sub: str
    fhir_user: str | None = Field(default=None, alias="fhirUser")


def check_id_token_claims(claims: dict[str, Any], *, client_id: str, nonce: str | None) -> IdTokenClaims:
    """The checks on a signature-verified id_token beyond iss/aud/exp: our nonce, our client."""
    if nonce is not None and claims.get("nonce") != nonce:
        raise TokenInvalid("id_token: the nonce is not the one this launch sent")
    azp = claims.get("azp")
    if azp is not None and azp != client_id:
        raise TokenInvalid("id_token: issued to another client (azp)")
    try:
        return IdTokenClaims.model_validate(claims)
    except ValidationError:
        raise TokenInvalid("id_token: no subject (sub)") from None


class SmartAppClient:
    """One registered app at one issuer: code exchange, refresh and id_token checks.

    `client_secret` None: a public client (PKCE alone protects the code). The httpx client is the
    caller's, so tests can inject a transport.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        config: SmartConfiguration,
        *,
        iss: str,
        client_id: str,
        redirect_uri: str,
        client_secret: SecretStr | None = None,
        jwks: JwksCache | None = None,
        leeway_s: float = LEEWAY_S,
    ) -> None:
        self._http = http
        self.config = config
        self.iss = iss.rstrip("/")
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self._secret = client_secret
        self._leeway_s = leeway_s
        self._jwks = jwks or (JwksCache(config.jwks_uri) if config.jwks_uri else None)

    def __repr__(self) -> str:
        return f"SmartAppClient(iss={self.iss!r}, client_id={self.client_id!r})"

    async def exchange_code(self, code: str, pkce: Pkce) -> TokenResponse:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": pkce.verifier.get_secret_value(),
        }
        return await self._token_request("code exchange", form)

    async def refresh(self, refresh_token: SecretStr) -> TokenResponse:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token.get_secret_value()}
        return await self._token_request("token refresh", form)

    async def verify_id_token(self, id_token: SecretStr, *, nonce: str | None) -> IdTokenClaims:
        """Signature (the issuer's JWKS), iss, aud = our client_id, exp, nonce; then `fhirUser`."""
        if self._jwks is None:
            raise SmartProtocolError("id_token check: the issuer's configuration has no jwks_uri")
        token = id_token.get_secret_value()
        header, _ = read_unverified(token)
        key = await self._jwks.key_for_header(header, self._http)
        issuer = self.config.issuer or self.iss
        try:
            claims = verify_jwt(
                token, key, issuer=issuer, audiences=[self.client_id], leeway_s=self._leeway_s
            )
        except TokenInvalid as exc:
            raise TokenInvalid(f"id_token: {exc}") from None
        return check_id_token_claims(claims, client_id=self.client_id, nonce=nonce)

    async def _token_request(self, step: str, form: dict[str, str]) -> TokenResponse:
        auth: httpx.Auth
        if self._secret is not None:
            auth = httpx.BasicAuth(self.client_id, self._secret.get_secret_value())
        else:  # a public client names itself in the form
            auth = _NO_AUTH
            form = {**form, "client_id": self.client_id}
        try:
            resp = await self._http.post(
                self.config.token_endpoint, data=form, auth=auth, headers={"Accept": "application/json"}
            )
        except httpx.TransportError as exc:
            raise SmartTransportError(
                f"{step}: no answer from the token endpoint ({type(exc).__name__})"
            ) from exc
        if resp.status_code != 200:
            raise SmartTokenRefused(resp.status_code, step, _oauth_error(resp))
        try:
            doc = resp.json()
        except ValueError as exc:
            raise SmartProtocolError(f"{step}: the token endpoint's answer is not JSON") from exc
        try:
            return TokenResponse.model_validate(doc)
        except ValidationError:
            # pydantic's text would quote the input (the tokens): name the fields only.
            raise SmartProtocolError(
                f"{step}: the token endpoint's answer has no usable Bearer token"
            ) from None


_NO_AUTH = httpx.Auth()  # the base class adds nothing to the request


def _oauth_error(resp: httpx.Response) -> str | None:
    try:
        doc = resp.json()
    except ValueError:
        return None
    error = doc.get("error") if isinstance(doc, dict) else None
    return error if isinstance(error, str) else None
