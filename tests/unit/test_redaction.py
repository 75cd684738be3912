"""Credentials echoed by a server never reach an error message (FHIR, DICOMweb, the model server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from pydantic import SecretStr

from fhir_adapters import FhirClient, StaticBearer
from fhir_adapters.errors import FhirHttpError, outcome_issues
from fhir_adapters.redaction import REDACTED, redact_credentials
from tools.imaging.dicomweb import BasicAuth, DicomWebClient, DicomWebHttpError
from tools.medgemma.errors import ModelServerError
from tools.medgemma.openai_backend import OpenAIChatBackend
from tools.medgemma.types import Message, ModelRequest, TextPart

TOKEN = "tok-redaction-6c1f9a2e"
PASSWORD = "pw-redaction-0b7d"
JWT = "eyJhbGciOiJSUzM4NCJ9.eyJpc3MiOiJjaGFydGFnZW50In0.c2lnbmF0dXJlLWJ5dGVz"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Bearer {TOKEN}\r\nAccept: application/fhir+json", TOKEN),
        (f"authorization: Basic {PASSWORD}", PASSWORD),
        (f"Proxy-Authorization: Negotiate {TOKEN}", TOKEN),
        (f"Authorization: MyScheme k={TOKEN}, v=2", TOKEN),
        (f"headers: {{'authorization': 'Bearer {TOKEN}', 'accept': '*/*'}}", TOKEN),
        (f'{{"Authorization": "Bearer {TOKEN}", "Host": "ehr"}}', TOKEN),
        (f'diagnostics: {{\\"Authorization\\": \\"Bearer {TOKEN}\\"}}', TOKEN),
        (f"GET /fhir/Patient?access_token={TOKEN}&_count=5", TOKEN),
        (f"grant_type=refresh_token&refresh_token={TOKEN}", TOKEN),
        (f"client_id=x&client_secret={PASSWORD}&scope=system/*.rs", PASSWORD),
        (f"id_token={JWT}", JWT),
        (f"?api_key={TOKEN}", TOKEN),
        (f"user=x&password={PASSWORD}", PASSWORD),
        (f'{{"access_token": "{TOKEN}", "token_type": "bearer"}}', TOKEN),
        (f"{{'password': '{PASSWORD}'}}", PASSWORD),
        (f'{{"client_secret":"{PASSWORD}","api_key":"{TOKEN}"}}', PASSWORD),
        (f"rejected assertion {JWT} (expired)", JWT),
        (f"bad credentials: Bearer {TOKEN} rejected", TOKEN),
        (f"https://svc:{PASSWORD}@ehr.example/fhir", PASSWORD),
    ],
)
def test_credentials_are_redacted(text: str, secret: str) -> None:
    redacted = redact_credentials(text)
    assert secret not in redacted
    assert REDACTED in redacted


@pytest.mark.parametrize(
    "text",
    [
        "missing Authorization header",
        "Bearer authentication required",
        "the token has expired; the key was rejected",
        "Observation.valueQuantity: unit is required",
        "Patient/ca-7-0 not found",
        "",
    ],
)
def test_ordinary_diagnostics_are_kept(text: str) -> None:
    assert redact_credentials(text) == text


def test_unrelated_header_lines_stay_readable() -> None:
    redacted = redact_credentials(f"Host: ehr\r\nAuthorization: Bearer {TOKEN}\r\nAccept: */*")
    assert redacted == f"Host: ehr\r\nAuthorization: {REDACTED}\r\nAccept: */*"


def test_operation_outcome_and_oauth_errors_are_redacted() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "security", "diagnostics": f"Authorization: Bearer {TOKEN}"},
            {"severity": "error", "code": "invalid", "details": {"text": f"access_token={TOKEN} refused"}},
        ],
    }
    issues = outcome_issues(json.dumps(outcome).encode())
    assert [i.diagnostics for i in issues] == [
        f"Authorization: {REDACTED}",
        f"access_token={REDACTED} refused",
    ]
    oauth = {"error": "invalid_client", "error_description": f"client_assertion={JWT} is expired"}
    (issue,) = outcome_issues(json.dumps(oauth).encode())
    assert str(issue) == f"error/invalid_client: client_assertion={REDACTED} is expired"


# ------------------------------------------------------------------ a server that echoes headers


class _EchoHandler(BaseHTTPRequestHandler):
    """400 for everything, with the request's headers in the server's own error format."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        echoed = str(self.headers)
        if self.path.startswith("/fhir/"):
            body: object = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "invalid", "diagnostics": f"bad request; {echoed}"}],
            }
        elif self.path.startswith("/dicom-web/"):
            body = {"HttpStatus": 400, "Message": "Bad request", "Details": echoed}
        else:
            body = {"error": {"message": f"rejected upstream: {echoed}", "type": "BadRequestError"}}
        data = json.dumps(body).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_fhir_error_from_an_echoing_server_has_no_token(echo_server: str) -> None:
    client = FhirClient(f"{echo_server}/fhir", auth=StaticBearer(SecretStr(TOKEN)))
    try:
        with pytest.raises(FhirHttpError) as caught:
            await client.read("Patient", "p1")
    finally:
        await client.aclose()
    message = str(caught)
    assert "bad request" in message
    assert TOKEN not in message
    assert f"Authorization: {REDACTED}" in message


async def test_dicomweb_error_from_an_echoing_server_has_no_password(echo_server: str) -> None:
    client = DicomWebClient(f"{echo_server}/dicom-web", auth=BasicAuth("orthanc", SecretStr(PASSWORD)))
    try:
        with pytest.raises(DicomWebHttpError) as caught:
            await client.retrieve_metadata("1.2.3")
    finally:
        await client.aclose()
    message = str(caught)
    basic = BasicAuth("orthanc", SecretStr(PASSWORD))
    encoded = (await basic.authorization(httpx.AsyncClient(), echo_server) or "").split()[-1]
    assert "Bad request" in message
    assert encoded not in message
    assert REDACTED in message


async def model_error(backend: OpenAIChatBackend) -> ModelServerError:
    """The error one small request to ``backend`` raises (the backend is closed after it)."""
    request = ModelRequest(messages=(Message(role="user", content=(TextPart(text="hello there"),)),))
    try:
        with pytest.raises(ModelServerError) as caught:
            await backend.generate(request)
    finally:
        await backend.aclose()
    return caught.value


async def test_model_server_error_echoing_a_gateway_token_is_redacted(echo_server: str) -> None:
    # No API key is configured, so the backend cannot replace it literally: a gateway in
    # front of the model server added the Authorization header that is echoed.
    def gateway(request: httpx.Request) -> httpx.Response:
        echoed = f"authorization: Bearer {JWT}\nx-forwarded-for: 10.0.0.1"
        return httpx.Response(400, json={"error": {"message": f"rejected upstream: {echoed}"}})

    backend = OpenAIChatBackend(f"{echo_server}/v1", model="m", transport=httpx.MockTransport(gateway))
    caught = await model_error(backend)
    assert JWT not in str(caught)
    assert "rejected upstream" in str(caught)


async def test_model_server_echoing_our_key_header_is_redacted(echo_server: str) -> None:
    backend = OpenAIChatBackend(f"{echo_server}/v1", model="m", api_key=SecretStr(TOKEN))
    caught = await model_error(backend)
    assert TOKEN not in str(caught)
    assert "rejected upstream" in str(caught)
