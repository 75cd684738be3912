"""The async FHIR client: one request function (auth, bounded concurrency, retries, status -> error),
and the FHIR interactions on top of it. Returns raw JSON dicts; parsing happens in `parsing`.

On the wire (base = the FHIR base URL):
    read(T, id)            GET  {base}/T/id
    search(T, params)      GET  {base}/T?params&_count=..  then each Bundle.link[next] (same origin only)
    everything(p)          GET  {base}/Patient/p/$everything (+ next), else per-type searches
    transaction(b)/batch(b) POST {base}  Bundle
    create(r, if_none_exist) POST {base}/T  If-None-Exist: <query>
    capabilities()         GET  {base}/metadata
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx

from fhir_adapters.auth import AuthProvider
from fhir_adapters.errors import (
    FhirError,
    FhirInvalid,
    FhirNotFound,
    FhirOutcomeUnknown,
    FhirProtocolError,
    FhirServerError,
    FhirTransportError,
    error_for_status,
    redact_target,
)
from fhir_adapters.flavours import GENERIC, Flavour, flavour_from_capabilities, get_flavour
from fhir_adapters.metrics import FHIR_REQUESTS, FHIR_SECONDS, resource_label
from fhir_adapters.retry import (
    MAYBE_PROCESSED_STATUSES,
    Failure,
    RetryPolicy,
    is_retryable,
    retry_after_seconds,
)
from fhir_adapters.search import Param, Params, build_params, patient_search_param, query_string
from fhir_adapters.service_client import ServiceClient

__all__ = ["FhirClient", "JsonDict", "is_conditional_only"]

JsonDict = dict[str, Any]
FHIR_JSON = "application/fhir+json"
# Statuses with which a server says "no $everything here" (besides a flavour that knows it).
_NO_EVERYTHING = (FhirNotFound, FhirInvalid)
# Methods whose failure can leave a change half-known.
_CHANGES_DATA = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_RETURN_MINIMAL: Final = {"Prefer": "return=minimal"}


@dataclass(frozen=True, slots=True)
class TransactionAnswer:
    """A transaction's answer, and whether the Bundle was resent after an attempt whose answer was
    lost (a timeout, a 5xx, a cut body: the server may have committed it). Then an entry the answer
    calls "already there" may be that attempt's own write (`fhir_adapters.confirmed`)."""

    response: JsonDict
    resent_after_lost_answer: bool = False


@dataclass
class _Resends:
    """Filled by `_send`: whether it resent a request the server may have processed."""

    after_lost_answer: bool = False


class FhirClient(ServiceClient):
    """Async FHIR R4 client over httpx.

    Pass `transport` (e.g. `httpx.MockTransport`, or a wrapper injecting latency/faults) or a
    ready `http` client; without either a plain `httpx.AsyncClient` is created. A client passed
    in is not closed by us.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
        flavour: Flavour | str = GENERIC,
        max_concurrency: int = 8,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(
            base_url,
            transport=transport,
            http=http,
            max_concurrency=max_concurrency,
            retry=retry,
            timeout=httpx.Timeout(timeout),
            sleep=sleep,
        )
        self.auth = auth
        self.flavour = get_flavour(flavour) if isinstance(flavour, str) else flavour

    async def read(self, resource_type: str, resource_id: str) -> JsonDict:
        return await self._request("GET", f"{self.base_url}/{resource_type}/{resource_id}")

    async def capabilities(self) -> JsonDict:
        return await self._request("GET", f"{self.base_url}/metadata")

    async def detect_flavour(self) -> Flavour:
        """Set `flavour` from the CapabilityStatement's software name (GENERIC if unknown)."""
        self.flavour = flavour_from_capabilities(await self.capabilities())
        return self.flavour

    async def search_pages(
        self,
        resource_type: str,
        params: Params | None = None,
        *,
        count: int | None = None,
        include: Iterable[str] = (),
        revinclude: Iterable[str] = (),
        max_pages: int | None = None,
    ) -> AsyncIterator[JsonDict]:
        """Each searchset Bundle page, following `next` links (on the base URL's origin only)."""
        query = build_params(
            params, count=self.flavour.clamp_count(count), include=include, revinclude=revinclude
        )
        url = f"{self.base_url}/{resource_type}"
        if query:
            url = f"{url}?{query_string(query)}"
        async for page in self._pages(url, max_pages):
            yield page

    async def search(
        self,
        resource_type: str,
        params: Params | None = None,
        *,
        count: int | None = None,
        include: Iterable[str] = (),
        revinclude: Iterable[str] = (),
        max_pages: int | None = None,
    ) -> list[JsonDict]:
        """All resources of all pages (matches and `_include`d ones)."""
        out: list[JsonDict] = []
        pages = self.search_pages(
            resource_type, params, count=count, include=include, revinclude=revinclude, max_pages=max_pages
        )
        async for page in pages:
            out.extend(_bundle_resources(page))
        return out

    async def search_patient(
        self,
        resource_type: str,
        patient_id: str,
        params: Params | None = None,
        *,
        count: int | None = None,
    ) -> list[JsonDict]:
        """`resource_type` resources of one patient, via its compartment search parameter.

        Applies the flavour's required parameters (Epic: one search per Observation category)
        and keeps only `resource_type` matches, de-duplicated by id.
        """
        base: list[Param] = [(patient_search_param(resource_type), patient_id)]
        base += build_params(params)
        searches = self.flavour.expand_search(resource_type, base)
        if len(searches) == 1:
            results = [await self.search(resource_type, searches[0], count=count)]
        else:
            results = list(
                await asyncio.gather(*(self.search(resource_type, s, count=count) for s in searches))
            )
        seen: set[str] = set()
        out: list[JsonDict] = []
        for resources in results:
            for res in resources:
                rid = res.get("id")
                if res.get("resourceType") != resource_type or (isinstance(rid, str) and rid in seen):
                    continue
                if isinstance(rid, str):
                    seen.add(rid)
                out.append(res)
        return out

    async def everything(self, patient_id: str, *, types: Sequence[str] | None = None) -> list[JsonDict]:
        """The patient and their compartment: Patient/$everything (following `next`), or, where the
        server lacks it, a Patient read plus one search per type in `types` (required then)."""
        if self.flavour.supports_everything:
            url = f"{self.base_url}/Patient/{patient_id}/$everything"
            if types:
                url = f"{url}?{query_string([('_type', ','.join(['Patient', *types]))])}"
            try:
                resources: list[JsonDict] = []
                async for page in self._pages(url, None):
                    resources.extend(_bundle_resources(page))
            except _NO_EVERYTHING:
                pass  # unsupported here (or unknown patient: the fallback's read says which)
            except FhirServerError as exc:
                if exc.status != 501:
                    raise
            else:
                if types is None:
                    return resources
                # Servers may ignore `_type` (sekmet does): filter here too.
                wanted = {"Patient", *types}
                return [r for r in resources if r.get("resourceType") in wanted]
        if types is None:
            raise FhirError("this server has no Patient/$everything; pass `types` for per-type searches")
        patient, per_type = await asyncio.gather(
            self.read("Patient", patient_id),
            asyncio.gather(*(self.search_patient(t, patient_id) for t in types)),
        )
        return [patient, *(r for group in per_type for r in group)]

    async def transaction(self, bundle: Mapping[str, Any]) -> JsonDict:
        """POST a transaction Bundle: all entries succeed or none is kept (server-side atomicity).

        A Bundle of conditional creates only is resent after a timeout or a 5xx (a resend matches
        what a first, committed attempt wrote). Raises `FhirOutcomeUnknown` when the last attempt
        may have been committed: read the server back (`fhir_adapters.confirmed`). The answer's
        entries carry their `response` (status, location), not the resources (`Prefer: return=minimal`).
        """
        return (await self.transaction_answer(bundle)).response

    async def transaction_answer(self, bundle: Mapping[str, Any]) -> TransactionAnswer:
        """`transaction`, saying whether the answer came from a resend after a lost answer."""
        _require_bundle(bundle, "transaction")
        resends = _Resends()
        response = await self._post_bundle(bundle, resends)
        return TransactionAnswer(response, resent_after_lost_answer=resends.after_lost_answer)

    async def batch(self, bundle: Mapping[str, Any]) -> JsonDict:
        """POST a batch Bundle; each entry succeeds or fails on its own (see `entry.response.status`)."""
        _require_bundle(bundle, "batch")
        return await self._post_bundle(bundle)

    async def _post_bundle(self, bundle: Mapping[str, Any], resends: _Resends | None = None) -> JsonDict:
        # Each entry's answer is read for its status and location only, so the resources are not
        # asked back: a summary's report with its plots would come back as 300 kB for the server
        # to encode and us to parse. A server that ignores Prefer answers in full, read the same.
        resp = await self._send(
            "POST",
            self.base_url,
            body=bundle,
            headers=_RETURN_MINIMAL,
            idempotent=is_conditional_only(bundle),
            resends=resends,
        )
        try:
            doc = _json_body(resp, "POST", "/")
        except FhirProtocolError as exc:  # a success status with a body cut or garbled on the way
            raise FhirOutcomeUnknown("POST", "/", "the answer could not be read") from exc
        return doc if doc is not None else {}

    async def create(
        self, resource: Mapping[str, Any], *, if_none_exist: Params | str | None = None
    ) -> JsonDict:
        """POST a resource; with `if_none_exist` the server returns the existing match instead of creating.

        Beware: servers that ignore unknown search parameters (sekmet does) treat an unsupported
        `if_none_exist` parameter as "match everything".
        """
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not rtype:
            raise ValueError("resource has no resourceType")
        headers: dict[str, str] = {"Prefer": "return=representation"}
        if if_none_exist is not None:
            cond = (
                if_none_exist if isinstance(if_none_exist, str) else query_string(build_params(if_none_exist))
            )
            if not cond:
                raise ValueError("if_none_exist is empty")
            headers["If-None-Exist"] = cond
        resp = await self._send("POST", f"{self.base_url}/{rtype}", body=resource, headers=headers,
                                idempotent=if_none_exist is not None)  # fmt: skip
        try:
            doc = _json_body(resp, "POST", rtype)
        except FhirProtocolError as exc:  # a success status with a body cut or garbled on the way
            raise FhirOutcomeUnknown("POST", rtype, "the answer could not be read") from exc
        if doc is None:  # return=minimal servers: read what the Location names
            location = resp.headers.get("location") or resp.headers.get("content-location")
            if not location:
                raise FhirProtocolError(
                    f"POST {rtype} answered {resp.status_code} without a body or Location"
                )
            return await self._request("GET", self.flavour.resolve_link(location, self.base_url))
        return doc

    # ------------------------------------------------------------------ plumbing

    async def _pages(self, url: str, max_pages: int | None) -> AsyncIterator[JsonDict]:
        next_url: str | None = url
        pages = 0
        while next_url is not None and (max_pages is None or pages < max_pages):
            page = await self._request("GET", next_url)
            if page.get("resourceType") != "Bundle":
                raise FhirProtocolError(f"expected a Bundle, got {page.get('resourceType')!r}")
            pages += 1
            yield page
            link = _next_link(page)
            next_url = self.flavour.resolve_link(link, self.base_url) if link else None

    async def _request(self, method: str, url: str, *, body: Mapping[str, Any] | None = None) -> JsonDict:
        resp = await self._send(method, url, body=body, idempotent=method != "POST")
        doc = _json_body(resp, method, redact_target(url, self.base_url))
        return doc if doc is not None else {}

    async def _send(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        resends: _Resends | None = None,
    ) -> httpx.Response:
        """The one request function: auth, semaphore, retries and status -> exception. `resends`
        is told when a data-changing request is resent after an attempt the server may have done."""
        target = redact_target(url, self.base_url)
        addressed = resource_label(url, self.base_url)
        content = json.dumps(body).encode() if body is not None else None
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            req_headers = {"Accept": FHIR_JSON, **(headers or {})}
            if content is not None:
                req_headers["Content-Type"] = FHIR_JSON
            if self.auth is not None:
                value = await self.auth.authorization(self._http, self.base_url)
                if value:
                    req_headers["Authorization"] = value
            try:
                async with self._semaphore:  # released during backoff so waits don't block others
                    started = time.perf_counter()
                    try:
                        resp = await self._http.request(method, url, content=content, headers=req_headers)
                    finally:
                        FHIR_SECONDS.labels(method, addressed).observe(time.perf_counter() - started)
            except httpx.TransportError as exc:
                FHIR_REQUESTS.labels(method, addressed, type(exc).__name__).inc()
                failure = _failure_kind(exc)
                if self.retry.can_retry(attempt) and is_retryable(idempotent=idempotent, failure=failure):
                    if resends is not None and failure is Failure.MAYBE_PROCESSED:
                        resends.after_lost_answer = True
                    await self._sleep(self.retry.delay(attempt))
                    continue
                error = FhirTransportError(method, target, type(exc).__name__)
                if method in _CHANGES_DATA and failure is Failure.MAYBE_PROCESSED:
                    raise FhirOutcomeUnknown(method, target, type(exc).__name__) from error
                raise error from exc

            status = resp.status_code
            FHIR_REQUESTS.labels(method, addressed, str(status)).inc()
            if status < 300:
                return resp
            if status < 400:  # redirects are not followed: they could lead to another origin
                raise FhirProtocolError(f"{method} {target} answered a redirect ({status}); not followed")
            if status == 401 and self.auth is not None and not refreshed:
                refreshed = True  # a stale token: refresh once; this retry does not use up an attempt
                if await self.auth.refresh(self._http, self.base_url):
                    attempt -= 1
                    continue
            retry_after = retry_after_seconds(resp.headers.get("retry-after"))
            if self.retry.can_retry(attempt) and is_retryable(idempotent=idempotent, status=status):
                if resends is not None and status in MAYBE_PROCESSED_STATUSES:
                    resends.after_lost_answer = True
                await self._sleep(self.retry.delay(attempt, retry_after))  # Retry-After wins, capped
                continue
            http_error = error_for_status(status, method, target, resp.content, retry_after=retry_after)
            if method in _CHANGES_DATA and status in MAYBE_PROCESSED_STATUSES:
                raise FhirOutcomeUnknown(method, target, f"HTTP {status}") from http_error
            raise http_error


def _failure_kind(exc: httpx.TransportError) -> Failure:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Failure.NOT_SENT
    return Failure.MAYBE_PROCESSED


def _json_body(resp: httpx.Response, method: str, target: str) -> JsonDict | None:
    if not resp.content.strip():
        return None
    try:
        doc = resp.json()
    except ValueError:
        raise FhirProtocolError(
            f"{method} {target} answered {resp.status_code} with a non-JSON body"
        ) from None
    if not isinstance(doc, dict):
        raise FhirProtocolError(f"{method} {target} answered {resp.status_code} with a non-object JSON body")
    return doc


def _bundle_resources(bundle: Mapping[str, Any]) -> list[JsonDict]:
    return [
        e["resource"]
        for e in bundle.get("entry") or []
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        # OperationOutcomes with search.mode=outcome are warnings about the search, not results.
        and (e.get("search") or {}).get("mode") != "outcome"
    ]


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def is_conditional_only(bundle: Mapping[str, Any]) -> bool:
    """True when every entry is a conditional create (``POST`` with ``ifNoneExist``): sending the
    Bundle twice stores what sending it once does."""
    entries = bundle.get("entry") or []
    return bool(entries) and all(
        isinstance(e, Mapping)
        and isinstance(e.get("request"), Mapping)
        and e["request"].get("method") == "POST"
        and bool(e["request"].get("ifNoneExist"))
        for e in entries
    )


def _require_bundle(bundle: Mapping[str, Any], kind: str) -> None:
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != kind:
        raise ValueError(f"expected a Bundle of type {kind!r}")
