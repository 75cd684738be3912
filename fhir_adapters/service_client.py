"""What every HTTP service client of ChartAgent shares (FHIR, DICOMweb, a model server): a
checked base URL, an injected or owned `httpx.AsyncClient`, a concurrency bound, the retry
policy and its sleep, and the async context-manager lifecycle. The request loops stay in the
clients: their retry rules and error types differ by protocol.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import httpx

from fhir_adapters.retry import RetryPolicy

# httpx's own defaults, for clients that set no limits of their own.
_HTTPX_DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """One TLS context (CA certificates, SSL_CERT_FILE/SSL_CERT_DIR honoured) for every client of the
    process: loading the certificates costs about 30 ms, and the service opens a client per request."""
    return httpx.create_ssl_context()


def checked_base_url(base_url: str, *, example: str = "") -> str:
    """An absolute http(s) URL without query or fragment, trailing slash removed."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        hint = f", e.g. {example}" if example else ""
        raise ValueError(f"base_url must be an absolute http(s) URL{hint}")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not carry a query or fragment")
    return base_url.rstrip("/")


class ServiceClient:
    """Pass `transport` (e.g. `httpx.MockTransport`, or a wrapper injecting latency or faults) or
    a ready `http` client; without either a plain `httpx.AsyncClient` is created. A client passed
    in is not closed by us."""

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None,
        http: httpx.AsyncClient | None,
        max_concurrency: int,
        retry: RetryPolicy | None,
        timeout: httpx.Timeout,
        sleep: Callable[[float], Awaitable[None]],
        limits: httpx.Limits | None = None,
        url_example: str = "",
    ) -> None:
        self.base_url = checked_base_url(base_url, example=url_example)
        if http is not None and transport is not None:
            raise ValueError("pass either http or transport, not both")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.max_concurrency = max_concurrency
        self.retry = retry or RetryPolicy()
        self._owns_http = http is None
        if http is None:
            http = httpx.AsyncClient(
                transport=transport,
                timeout=timeout,
                limits=limits or _HTTPX_DEFAULT_LIMITS,
                verify=shared_tls_context(),
            )
        self._http = http
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._sleep = sleep

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
