"""FHIR Bulk Data export (Bulk Data Access 2.0): kick-off, status polling, NDJSON downloads, cancel.

On the wire (base = the FHIR base URL):
    kick-off   GET    {base}/$export | {base}/Patient/$export | {base}/Group/{id}/$export
                      ?_outputFormat=application/fhir+ndjson&_type=..&_since=..&_typeFilter=..
                      Prefer: respond-async    -> 202, Content-Location: <status URL>
    status     GET    <status URL>             -> 202 (X-Progress, Retry-After) | 200 manifest | 4xx/5xx
    download   GET    manifest.output[].url    -> NDJSON (Authorization only if requiresAccessToken)
    cancel     DELETE <status URL>             -> 202

The client rides on a `FhirClient`: its httpx client (transport, fault proxies, TLS) and its auth
provider (a 401 refreshes once). A token goes only to the FHIR base's origin: a status or file URL
elsewhere that would need it is refused. Polling outlives a process: the caller saves the status
URL (`on_status_url`) before polling starts and may later `wait` on the saved URL instead.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fhir_adapters.client import FhirClient, JsonDict
from fhir_adapters.error_tree import ChartAgentError, ServiceError
from fhir_adapters.errors import (
    FhirError,
    FhirHttpError,
    FhirProtocolError,
    FhirTransportError,
    outcome_issues,
)
from fhir_adapters.retry import RETRYABLE_STATUSES, RetryPolicy, retry_after_seconds
from fhir_adapters.search import query_string

__all__ = [
    "NDJSON",
    "BulkExportClient",
    "BulkExportHttpError",
    "BulkExportIncomplete",
    "BulkExportTimeout",
    "ExportFile",
    "ExportManifest",
    "ExportRequest",
    "PollPolicy",
    "StatusUrlCallback",
    "fhir_instant",
]

NDJSON: Final = "application/fhir+ndjson"
_FHIR_JSON: Final = "application/fhir+json"
# X-Progress is free text from the server: keep what is passed on short.
_PROGRESS_CHARS: Final = 100
T = TypeVar("T")
StatusUrlCallback = Callable[[str], Awaitable[None] | None]


def fhir_instant(when: datetime) -> str:
    """`2026-12-04T17:13:58.194Z`: UTC, milliseconds floored (so a string compare of `_since`, as
    some servers do, includes rather than misses the boundary)."""
    if when.tzinfo is None:
        raise ValueError("an instant needs a time zone")
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class ExportRequest(BaseModel):
    """What to export: the whole system, every patient's compartment, or one Group's members."""

    model_config = ConfigDict(frozen=True)

    level: Literal["system", "patient", "group"] = "patient"
    group_id: str | None = None
    types: tuple[str, ...] = ()
    since: datetime | None = None
    type_filters: tuple[str, ...] = ()

    def url(self, base_url: str) -> str:
        if (self.level == "group") != (self.group_id is not None):
            raise ValueError("group_id goes with level 'group', and only with it")
        path = {"system": "$export", "patient": "Patient/$export"}.get(self.level)
        if path is None:
            path = f"Group/{self.group_id}/$export"
        params = [("_outputFormat", NDJSON)]
        if self.types:
            params.append(("_type", ",".join(self.types)))
        if self.since is not None:
            params.append(("_since", fhir_instant(self.since)))
        params += [("_typeFilter", f) for f in self.type_filters]
        return f"{base_url}/{path}?{query_string(params)}"


class ExportFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    type: str
    url: str
    count: int | None = None


class ExportManifest(BaseModel):
    """The complete-status body (Bulk Data 2.0 "Response - Complete Status")."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    transaction_time: datetime = Field(alias="transactionTime")
    request: str
    requires_access_token: bool = Field(alias="requiresAccessToken")
    output: tuple[ExportFile, ...] = ()
    error: tuple[ExportFile, ...] = ()


class BulkExportHttpError(FhirHttpError):
    """A final error status at one step of the export (`step`: kick-off, status, download, cancel)."""

    def __init__(self, step: str, status: int, body: bytes | None) -> None:
        self.step = step
        method = "DELETE" if step == "cancel" else "GET"
        super().__init__(status, method, f"bulk export {step}", outcome_issues(body))


class BulkExportTimeout(FhirError, ServiceError):
    """The export was not complete by the deadline; it may still finish: `wait` on its status URL."""


class BulkExportIncomplete(FhirError, ServiceError):
    """The export finished with error files (OperationOutcomes): some resources were not exported."""


@dataclass(frozen=True)
class PollPolicy:
    """How long to wait between status requests and for how long in all.

    `interval` is the first wait when the server gives no Retry-After; it grows by `growth` up to
    `max_interval`. A Retry-After (seconds or an HTTP date) is honoured up to `max_interval`.
    429, 5xx and transport failures back off per `errors` (exponential, full jitter, capped; its
    Retry-After cap applies); `errors.max_attempts` consecutive failures end the step.
    """

    interval: float = 1.0
    growth: float = 1.5
    max_interval: float = 120.0
    deadline: float = 6 * 3600.0
    errors: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            max_attempts=8, base_delay=1.0, max_delay=60.0, max_retry_after=300.0
        )
    )


def _now() -> datetime:
    return datetime.now(UTC)


class BulkExportClient:
    """Bulk Data export over a `FhirClient`'s HTTP client and auth.

    `sleep` and `clock` are injectable for tests (`clock` gives the time for the deadline and for
    Retry-After dates). Downloads run at most `download_concurrency` files at once.
    """

    def __init__(
        self,
        fhir: FhirClient,
        *,
        policy: PollPolicy | None = None,
        download_concurrency: int = 4,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = _now,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        if download_concurrency < 1:
            raise ValueError("download_concurrency must be >= 1")
        self.fhir = fhir
        self.policy = policy or PollPolicy()
        self._downloads = asyncio.Semaphore(download_concurrency)
        self._sleep = sleep
        self._clock = clock
        self._on_progress = on_progress
        # The FHIR client's own httpx client: same transport, TLS context and connection pool.
        self._http: httpx.AsyncClient = fhir._http
        self._origin = _origin(fhir.base_url)

    # ------------------------------------------------------------------ the steps

    async def kick_off(
        self, request: ExportRequest, *, on_status_url: StatusUrlCallback | None = None
    ) -> str:
        """Start an export; returns its status URL (after `on_status_url` has stored it)."""
        resp = await self._call("kick-off", "GET", request.url(self.fhir.base_url),
                                headers={"Prefer": "respond-async"}, deadline=None)  # fmt: skip
        if resp.status_code != 202:
            raise FhirProtocolError(f"bulk export kick-off answered {resp.status_code}, not 202")
        location = resp.headers.get("content-location")
        if not location:
            raise FhirProtocolError("bulk export kick-off answered 202 without Content-Location")
        # Same origin as the FHIR base (the flavour maps a loopback server's own links onto it).
        status_url = self.fhir.flavour.resolve_link(str(location), self.fhir.base_url)
        if on_status_url is not None:
            saved = on_status_url(status_url)
            if inspect.isawaitable(saved):
                await saved
        return status_url

    async def wait(self, status_url: str) -> ExportManifest:
        """Poll `status_url` until the manifest (also for a status URL saved before a crash)."""
        started = self._clock()
        deadline = started.timestamp() + self.policy.deadline
        interval = self.policy.interval
        while True:
            resp = await self._call("status", "GET", status_url, headers={}, deadline=deadline)
            if resp.status_code == 200:
                return _manifest(resp)
            if resp.status_code != 202:
                raise FhirProtocolError(f"bulk export status answered {resp.status_code}")
            progress = resp.headers.get("x-progress")
            if progress and self._on_progress is not None:
                self._on_progress(progress[:_PROGRESS_CHARS])
            retry_after = retry_after_seconds(resp.headers.get("retry-after"), self._clock())
            wait = retry_after if retry_after is not None else interval
            interval = min(self.policy.max_interval, interval * self.policy.growth)
            await self._pause(min(wait, self.policy.max_interval), deadline, "status")

    async def export(
        self, request: ExportRequest, *, on_status_url: StatusUrlCallback | None = None
    ) -> tuple[str, ExportManifest]:
        status_url = await self.kick_off(request, on_status_url=on_status_url)
        return status_url, await self.wait(status_url)

    async def cancel(self, status_url: str) -> bool:
        """DELETE the export; False when the server no longer knows it (404/410)."""
        try:
            await self._call("cancel", "DELETE", status_url, headers={}, deadline=None)
        except BulkExportHttpError as exc:
            if exc.status in (404, 410):
                return False
            raise
        return True

    async def read_files(
        self,
        manifest: ExportManifest,
        consume: Callable[[ExportFile, AsyncIterator[JsonDict]], Awaitable[T]],
        *,
        types: Iterable[str] | None = None,
    ) -> list[T]:
        """`consume(file, resources)` per output file (of `types`, all if None), at most
        `download_concurrency` at once; results in manifest order.

        Resources are streamed line by line. A download that fails or is cut (transport error,
        429/5xx, fewer lines than the manifest's `count`) is retried whole: `consume` is called
        again with a fresh iterator, so it must keep its results in its return value only. A line
        that is not a JSON object ends the export with an error naming the file and line.
        """
        wanted = None if types is None else set(types)
        files = [f for f in manifest.output if wanted is None or f.type in wanted]
        numbers = _file_numbers(files)

        async def one(index: int) -> T:
            async with self._downloads:
                return await self._read_file(files[index], numbers[index], manifest, consume)

        return list(await asyncio.gather(*(one(i) for i in range(len(files)))))

    # ------------------------------------------------------------------ plumbing

    async def _read_file(
        self,
        file: ExportFile,
        name: str,
        manifest: ExportManifest,
        consume: Callable[[ExportFile, AsyncIterator[JsonDict]], Awaitable[T]],
    ) -> T:
        with_token = manifest.requires_access_token
        url = self._file_url(file.url, with_token)
        attempt = 0
        while True:
            attempt += 1
            headers = {"Accept": NDJSON}
            if with_token:
                headers.update(await self._authorization(url, step=f"download of {name}"))
            try:
                async with self._http.stream("GET", url, headers=headers) as resp:
                    if resp.status_code >= 300:
                        await resp.aread()
                        raise _Status(resp)
                    counted = _Counted(resp, name)
                    result = await consume(file, counted.resources())
                    await counted.drain()
                    if file.count is not None and counted.count != file.count:
                        raise _Cut(f"{counted.count} of {file.count} resources")
                    return result
            except (httpx.TransportError, _Cut) as exc:
                failure = type(exc).__name__
                retry_after = None
                status = None
            except _Status as exc:
                status = exc.response.status_code
                if status not in RETRYABLE_STATUSES:
                    raise BulkExportHttpError(f"download of {name}", status, exc.response.content) from None
                failure = f"HTTP {status}"
                retry_after = retry_after_seconds(exc.response.headers.get("retry-after"), self._clock())
            if not self.policy.errors.can_retry(attempt):
                if status is not None:
                    raise BulkExportHttpError(f"download of {name}", status, None)
                raise FhirTransportError("GET", f"bulk export download of {name}", failure)
            await self._sleep(self.policy.errors.delay(attempt, retry_after))

    def _file_url(self, url: str, with_token: bool) -> str:
        """A file on the FHIR base's origin (mapped as `next` links are); without a token needed,
        another http(s) origin too (files handed out by a storage service)."""
        try:
            return self.fhir.flavour.resolve_link(url, self.fhir.base_url)
        except FhirProtocolError:
            if with_token or urlsplit(url).scheme not in ("http", "https"):
                raise
            return url

    async def _call(
        self, step: str, method: str, url: str, *, headers: dict[str, str], deadline: float | None
    ) -> httpx.Response:
        """One request of `step`, retried on 429, 5xx and transport failures; a status < 300 back."""
        failures = 0
        refreshed = False
        while True:
            req_headers = {"Accept": _FHIR_JSON, **headers, **await self._authorization(url, step=step)}
            try:
                resp = await self._http.request(method, url, headers=req_headers)
            except httpx.TransportError as exc:
                failures += 1
                if not self.policy.errors.can_retry(failures):
                    raise FhirTransportError(method, f"bulk export {step}", type(exc).__name__) from exc
                await self._pause(self.policy.errors.delay(failures), deadline, step)
                continue
            status = resp.status_code
            if status < 300:
                return resp
            if status == 401 and self.fhir.auth is not None and not refreshed:
                refreshed = True
                if await self.fhir.auth.refresh(self._http, self.fhir.base_url):
                    continue
            if status in RETRYABLE_STATUSES:
                failures += 1
                if self.policy.errors.can_retry(failures):
                    retry_after = retry_after_seconds(resp.headers.get("retry-after"), self._clock())
                    await self._pause(self.policy.errors.delay(failures, retry_after), deadline, step)
                    continue
            if 300 <= status < 400:  # not followed: a redirect could lead to another origin
                raise FhirProtocolError(f"bulk export {step} answered a redirect ({status}); not followed")
            raise BulkExportHttpError(step, status, resp.content)

    async def _authorization(self, url: str, *, step: str) -> dict[str, str]:
        if self.fhir.auth is None:
            return {}
        value = await self.fhir.auth.authorization(self._http, self.fhir.base_url)
        if not value:
            return {}
        if _origin(url) != self._origin:
            raise FhirProtocolError(f"bulk export {step}: URL on another origin than the FHIR server; "
                                    "no token is sent there")  # fmt: skip
        return {"Authorization": value}

    async def _pause(self, seconds: float, deadline: float | None, step: str) -> None:
        if deadline is not None:
            left = deadline - self._clock().timestamp()
            if left <= 0:
                raise BulkExportTimeout(
                    f"bulk export {step}: not complete after {self.policy.deadline:.0f} s; "
                    "poll the saved status URL to resume"
                )
            seconds = min(seconds, left)  # one last request at the deadline
        await self._sleep(seconds)


def _manifest(resp: httpx.Response) -> ExportManifest:
    try:
        doc = resp.json()
    except ValueError:
        raise FhirProtocolError("bulk export status answered 200 with a non-JSON body") from None
    try:
        return ExportManifest.model_validate(doc)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise FhirProtocolError(f"bulk export manifest is invalid at {', '.join(fields)}") from None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _file_numbers(files: Sequence[ExportFile]) -> list[str]:
    """`Observation file 2 of 3`: how a file is named in errors (its URL may hold a signature)."""
    totals: dict[str, int] = {}
    for f in files:
        totals[f.type] = totals.get(f.type, 0) + 1
    seen: dict[str, int] = {}
    names = []
    for f in files:
        seen[f.type] = seen.get(f.type, 0) + 1
        names.append(f"{f.type} file {seen[f.type]} of {totals[f.type]}")
    return names


class _Status(ChartAgentError):
    """Internal control flow: an error status of a download, never leaves this module."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response


class _Cut(ChartAgentError):
    """Internal control flow: a download with fewer resources than announced."""


class _Counted:
    """The resources of one NDJSON body, line by line, counted."""

    def __init__(self, resp: httpx.Response, name: str) -> None:
        self._lines = resp.aiter_lines()
        self._name = name
        self.count = 0
        self._line = 0

    async def resources(self) -> AsyncIterator[JsonDict]:
        async for line in self._lines:
            self._line += 1
            if not line.strip():
                continue
            yield self._parse(line)

    async def drain(self) -> None:
        """Read (and check) what `consume` left unread, so that cuts and counts are seen."""
        async for _ in self.resources():
            pass

    def _parse(self, line: str) -> JsonDict:
        try:
            doc: Any = json.loads(line)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
            raise FhirProtocolError(
                f"bulk export {self._name}, line {self._line}: not a FHIR resource in JSON"
            )
        self.count += 1
        return doc
