"""`ModelBackend` over an OpenAI-compatible chat-completions server (vLLM, TGI, Vertex AI).

On the wire: POST {base_url}/chat/completions, JSON as in `openai_wire` (images as PNG data
URLs), `Authorization: Bearer <api_key>` when a key is set. `base_url` is the OpenAI base:
    vLLM      http://host:8000/v1   (start it with --limit-mm-per-prompt '{"image": 128}': a CT
                                     study is 85 images, a whole slide up to 125 patches; the
                                     default allows one image per prompt; deploy/vllm/README.md)
    TGI       http://host:8080/v1
    Vertex AI https://REGION-aiplatform.googleapis.com/v1/projects/P/locations/R/endpoints/E
              (api_key: a short-lived OAuth access token, e.g. `gcloud auth print-access-token`)

Retries (`fhir_adapters.retry.RetryPolicy`): a chat completion writes nothing, so it is resent
on 429/502/503/504 (honouring Retry-After, capped by the policy) and when the connection
failed or dropped. A read timeout is not retried: the server was too slow for this request and
would be as slow again, with one more generation queued.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr, ValidationError

from fhir_adapters.redaction import redact_credentials
from fhir_adapters.retry import RETRYABLE_STATUSES, RetryPolicy, retry_after_seconds
from fhir_adapters.service_client import ServiceClient
from tools.medgemma.errors import ModelProtocolError, ModelServerError, ModelTransportError
from tools.medgemma.openai_wire import ChatCompletion, to_chat_request, to_model_result
from tools.medgemma.types import ModelInfo, ModelRequest, ModelResult, TextPart

# A model server's 500 is most often the request itself (too many images, a bad prompt): unlike a
# FHIR read's, it is not retried.
_RETRYABLE_STATUSES = RETRYABLE_STATUSES - {500}

__all__ = ["OpenAIChatBackend"]

_DETAIL_CHARS: Final = 200


class OpenAIChatBackend(ServiceClient):
    """Async client of one OpenAI-compatible model server; safe to call concurrently.

    Pass `transport` (e.g. `httpx.MockTransport`) or a ready `http` client (not closed by us);
    without either a plain `httpx.AsyncClient` is created. `timeout` bounds each attempt (a
    generation of 1000 tokens takes seconds on a GPU); `max_concurrency` bounds requests in
    flight from this process (vLLM batches them server-side).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: SecretStr | None = None,
        timeout: float = 120.0,
        max_concurrency: int = 8,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
        revision: str | None = None,
        dtype: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not model:
            raise ValueError("model must name the served model (vLLM: its --served-model-name)")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        super().__init__(
            base_url,
            transport=transport,
            http=http,
            max_concurrency=max_concurrency,
            retry=retry,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            sleep=sleep,
            url_example="http://127.0.0.1:8000/v1",
        )
        self.url = f"{self.base_url}/chat/completions"
        self.path = urlsplit(self.url).path
        self.model = model
        self._api_key = api_key
        self._info = ModelInfo(name=model, revision=revision, dtype=dtype, backend="openai")

    @property
    def info(self) -> ModelInfo:
        return self._info

    async def generate(self, request: ModelRequest) -> ModelResult:
        start = time.perf_counter()
        if request.image_count:  # PNG encoding is CPU-bound: keep the event loop free
            content = await asyncio.to_thread(self._body, request)
        else:
            content = self._body(request)
        resp = await self._post(content, _prompt_texts(request))
        try:
            completion = ChatCompletion.model_validate_json(resp.content)
        except ValidationError as exc:
            # Field locations only: pydantic's messages would echo the answer.
            where = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})
            raise ModelProtocolError(
                f"POST {self.path} answered {resp.status_code} with no chat completion "
                f"(bad or missing: {', '.join(where[:5])})"
            ) from None
        return to_model_result(completion, latency_s=time.perf_counter() - start)

    # ------------------------------------------------------------------ plumbing

    def _body(self, request: ModelRequest) -> bytes:
        return json.dumps(to_chat_request(request, self.model)).encode("utf-8")

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        return headers

    async def _post(self, content: bytes, prompt: list[str]) -> httpx.Response:
        """The one request function: semaphore, retries, status -> exception."""
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._semaphore:  # released during backoff so waits don't block others
                    resp = await self._http.post(self.url, content=content, headers=self._headers())
            except httpx.TransportError as exc:
                if self.retry.can_retry(attempt) and _transport_retryable(exc):
                    await self._sleep(self.retry.delay(attempt))
                    continue
                raise ModelTransportError(self.path, _transport_reason(exc)) from None
            status = resp.status_code
            if status < 300:
                return resp
            retry_after = retry_after_seconds(resp.headers.get("retry-after"))
            if status in _RETRYABLE_STATUSES and self.retry.can_retry(attempt):
                await self._sleep(self.retry.delay(attempt, retry_after))  # Retry-After wins, capped
                continue
            raise ModelServerError(
                status, self.path, self._detail(resp, prompt), _hint(status, self.base_url)
            )

    def _detail(self, resp: httpx.Response, prompt: list[str]) -> str | None:
        """The server's own error message, shortened, with the API key (OpenAI echoes a wrong
        one), any other credential it echoes (`redact_credentials`) and any prompt text it
        quotes whole replaced."""
        try:
            doc: Any = resp.json()
        except ValueError:
            return None
        message: Any = None
        if isinstance(doc, dict):
            error = doc.get("error")
            if isinstance(error, dict):  # OpenAI, vLLM
                message = error.get("message")
            elif isinstance(error, str):  # TGI
                message = error
            elif isinstance(doc.get("message"), str):
                message = doc["message"]
        if not isinstance(message, str) or not message.strip():
            return None
        text = " ".join(message.split())
        for part in prompt:
            text = text.replace(part, "<prompt text>")
        if self._api_key is not None:
            key = self._api_key.get_secret_value()
            if key:
                text = text.replace(key, "<api key>")
        text = redact_credentials(text)
        return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


def _prompt_texts(request: ModelRequest) -> list[str]:
    # Whitespace collapsed as in the detail; longest first so that no part is half-replaced.
    texts = {" ".join(p.text.split()) for m in request.messages for p in m.content if isinstance(p, TextPart)}
    return sorted((t for t in texts if len(t) >= 4), key=len, reverse=True)


def _transport_retryable(exc: httpx.TransportError) -> bool:
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    return not isinstance(exc, httpx.TimeoutException)


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return f"could not connect to the model server ({type(exc).__name__}); is it running?"
    if isinstance(exc, httpx.TimeoutException):
        return (
            f"no answer in time ({type(exc).__name__}); raise CHARTAGENT_MODEL_TIMEOUT_S "
            "or lower max_new_tokens"
        )
    return f"connection failed ({type(exc).__name__})"


def _hint(status: int, base_url: str) -> str | None:
    if status in (401, 403):
        return "check CHARTAGENT_MODEL_API_KEY"
    if status == 404 and not urlsplit(base_url).path.rstrip("/").endswith("/v1"):
        return "vLLM and TGI serve under /v1: end CHARTAGENT_MODEL_URL with /v1"
    if status == 404:
        return "check CHARTAGENT_MODEL_URL and that CHARTAGENT_MODEL names a served model"
    return None
