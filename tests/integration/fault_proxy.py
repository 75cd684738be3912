"""A fault-injecting HTTP/1.1 proxy in front of a real FHIR server, for reliability tests (issue 9).

    with FaultProxy(fhir_base_url, FaultPlan(seed=3, rate=0.2, kinds=TRANSIENT)) as proxy:
        ...  # point a client (or `chartagent summarize --fhir-url {proxy.base_url}`) at proxy.base_url
    proxy.log  # one ProxyEvent per request: method, path, fault, forwarded?, upstream status

The proxy listens on 127.0.0.1 (a port the OS picks) and runs its own event loop in a daemon
thread, so it serves async tests in the same process (their loop is never blocked by it) and
client subprocesses alike. `{proxy.base_url}/...` maps onto `{upstream}/...` with the same path:
only scheme, host and port differ.

Which requests get a fault, and which:
- `FaultPlan.script`: `ScriptedFault`s for specific requests ("the first POST: commit upstream,
  then cut the body"); they win over the random plan.
- otherwise the seeded plan: a request that passes the plan's method/path filters gets the next
  eligible index n (arrival order), and `FaultPlan.decide(n)` hashes (seed, n), so a given seed
  always yields the same fault sequence; with concurrent requests the sequence is the same but
  which request arrives n-th may vary.

Fault kinds (`FaultKind`), by whether the upstream saw the request:
- not forwarded: `429` (Retry-After), `503` (Retry-After), `500-before`, `reset-before`, and
  `202` (Retry-After, `X-Progress`: what a Bulk Data status poll answers while the export runs,
  so that a script can keep an export "in progress" as long as a test needs) and `410` (what a
  Bulk Data file link answers once the server dropped the file; not retryable); these two are
  never chosen by a seeded plan unless its `kinds` name them (not in `ALL_KINDS`);
- forwarded (the server processed and possibly committed it): `500-after` (the client gets a
  500 for a request that succeeded: outcome unknown), `slow` (the real answer, `slow_s` late),
  `cut` (status line and headers with the full Content-Length, part of the body, then close),
  `reset-after` (the connection is dropped, no answer), `rewrite-links` (Bundle `link[].url`
  moved to `rewrite_origin`, Content-Length fixed; bodies without Bundle links pass unchanged).
Resets send a TCP RST (SO_LINGER 0); a cut closes gracefully after the partial body.

Notes for users:
- Flavour: sekmet writes absolute URLs (paging `next`, Location, `fullUrl`) from its own
  configured base URL, i.e. the upstream's port, and the proxy leaves them alone (except under
  `rewrite-links`). A FhirClient behind the proxy must therefore use the `sekmet` flavour
  (`flavour="sekmet"`, `CHARTAGENT_FHIR_FLAVOUR=sekmet`, or `detect_flavour()`, whose
  CapabilityStatement passes through unchanged): it maps loopback links onto the proxy's origin, so
  later pages and Location reads go through the proxy too. The `generic` flavour refuses them.
- `rewrite-links` checks refusal only with a `rewrite_origin` the client must not follow. The
  default, `http://fault-proxy.invalid`, is refused by every flavour. A loopback origin with the
  same path prefix (e.g. another port on 127.0.0.1) is refused by `generic` but silently mapped
  back to the base by `sekmet`.
- Timeouts: `slow` only tests a client timeout when `slow_s` exceeds it (e.g.
  `CHARTAGENT_FHIR_TIMEOUT_S=1` with `slow_s=3`); the proxy gives up on the upstream after
  `upstream_timeout_s` and answers 502 then.
- Upstream responses are read uncompressed (the proxy asks for `Accept-Encoding: identity`).
- Nothing is printed or logged: the event log keeps paths and query parameter *names*, never
  query values or bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx

__all__ = [
    "ALL_KINDS",
    "FORWARDED_KINDS",
    "NOT_FORWARDED_KINDS",
    "TRANSIENT",
    "FaultKind",
    "FaultPlan",
    "FaultProxy",
    "ProxyEvent",
    "ScriptedFault",
]


class FaultKind(StrEnum):
    TOO_MANY_REQUESTS = "429"
    UNAVAILABLE = "503"
    ERROR_BEFORE = "500-before"
    RESET_BEFORE = "reset-before"
    ERROR_AFTER = "500-after"
    SLOW = "slow"
    CUT = "cut"
    RESET_AFTER = "reset-after"
    REWRITE_LINKS = "rewrite-links"
    STILL_RUNNING = "202"
    GONE = "410"


# The faults of any request (STILL_RUNNING and GONE only make sense for Bulk Data requests).
ALL_KINDS: tuple[FaultKind, ...] = tuple(
    k for k in FaultKind if k not in (FaultKind.STILL_RUNNING, FaultKind.GONE)
)
NOT_FORWARDED_KINDS = frozenset(
    {
        FaultKind.TOO_MANY_REQUESTS,
        FaultKind.UNAVAILABLE,
        FaultKind.ERROR_BEFORE,
        FaultKind.RESET_BEFORE,
        FaultKind.STILL_RUNNING,
        FaultKind.GONE,
    }
)
FORWARDED_KINDS = frozenset(ALL_KINDS) - NOT_FORWARDED_KINDS
# Failures a client may always retry (the server never saw the request).
TRANSIENT: tuple[FaultKind, ...] = (FaultKind.TOO_MANY_REQUESTS, FaultKind.UNAVAILABLE)

# RFC 9110 7.6.1 plus the proxy-only ones; `Connection` may name more.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Request headers not copied upstream: httpx sets Host and Content-Length; bodies are read whole
# before forwarding (no 100-continue); responses are asked for uncompressed.
_NOT_FORWARDED_REQUEST = _HOP_BY_HOP | {"host", "content-length", "expect", "accept-encoding"}
_NOT_FORWARDED_RESPONSE = _HOP_BY_HOP | {"content-length"}

_MAX_HEAD_BYTES = 64 * 1024
_MAX_BODY_BYTES = 64 * 1024 * 1024
_MAX_HEADERS = 200
_MAX_CHUNKS = 100_000


@dataclass(frozen=True)
class ScriptedFault:
    """Inject `kind` into specific requests: of those matching `method` and `path`, let `skip`
    through, then fault the next `times`. `path` is a regular expression searched in the request
    path (no query), e.g. r"/Observation$". Each entry counts its matches on its own."""

    kind: FaultKind
    method: str | None = None
    path: str | None = None
    skip: int = 0
    times: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        if self.method is not None:
            object.__setattr__(self, "method", self.method.upper())
        if self.skip < 0 or self.times < 0:
            raise ValueError("skip and times must be >= 0")

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or method == self.method) and (
            self.path is None or re.search(self.path, path) is not None
        )


@dataclass(frozen=True)
class FaultPlan:
    """Which requests get which fault, and the faults' parameters. The default injects nothing.

    `rate`: share of eligible requests faulted by the seeded plan; `kinds`: chosen among (uniform,
    by the same hash); `methods`/`path`: only matching requests are eligible (and counted);
    `script`: scripted faults, checked first for every request.
    """

    seed: int = 0
    rate: float = 0.0
    kinds: tuple[FaultKind, ...] = ALL_KINDS
    methods: frozenset[str] | None = None
    path: str | None = None
    script: tuple[ScriptedFault, ...] = ()
    retry_after: str = "0"
    slow_s: float = 2.0
    cut_fraction: float = 0.5
    rewrite_origin: str = "http://fault-proxy.invalid"

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(FaultKind(k) for k in self.kinds))
        object.__setattr__(self, "script", tuple(self.script))
        if self.methods is not None:
            object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be in [0, 1]")
        if self.rate > 0 and not self.kinds:
            raise ValueError("a positive rate needs at least one fault kind")
        if self.slow_s < 0 or not 0.0 <= self.cut_fraction < 1.0:
            raise ValueError("slow_s must be >= 0 and cut_fraction in [0, 1)")
        parts = urlsplit(self.rewrite_origin)
        if not parts.scheme or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError("rewrite_origin must be scheme://host[:port]")

    def eligible(self, method: str, path: str) -> bool:
        return (self.methods is None or method.upper() in self.methods) and (
            self.path is None or re.search(self.path, path) is not None
        )

    def decide(self, index: int) -> FaultKind | None:
        """The seeded plan's fault for the `index`-th eligible request (0-based); pure."""
        if self.rate <= 0.0:
            return None
        digest = hashlib.sha256(f"fault-proxy:{self.seed}:{index}".encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2.0**64 >= self.rate:
            return None
        return self.kinds[int.from_bytes(digest[8:16], "big") % len(self.kinds)]

    def sequence(self, n: int) -> list[FaultKind | None]:
        return [self.decide(i) for i in range(n)]


@dataclass(frozen=True)
class ProxyEvent:
    """What the proxy did with one request. `path` has no query; `params` are the query's names.

    `forwarded`: the request was sent upstream; `upstream_status`: its answer (None when not
    forwarded or the upstream failed); `client_status`: the status line the client was sent
    (None when the connection was dropped first); `detail`: a short note, never patient data;
    `done`: False while the proxy is still working on it (e.g. sleeping for `slow`).
    """

    seq: int
    connection: int
    method: str
    path: str
    params: tuple[str, ...]
    fault: FaultKind | None
    forwarded: bool
    upstream_status: int | None
    client_status: int | None
    detail: str = ""
    done: bool = True


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes | None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def connection_tokens(self) -> set[str]:
        return {t.strip().lower() for k, v in self.headers if k.lower() == "connection" for t in v.split(",")}

    def keep_alive(self) -> bool:
        tokens = self.connection_tokens()
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


@dataclass
class _Upstream:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class _Record:
    seq: int
    connection: int
    method: str
    path: str
    params: tuple[str, ...]
    fault: FaultKind | None = None
    forwarded: bool = False
    upstream_status: int | None = None
    client_status: int | None = None
    details: list[str] = field(default_factory=list)
    done: bool = False

    def event(self) -> ProxyEvent:
        return ProxyEvent(
            seq=self.seq,
            connection=self.connection,
            method=self.method,
            path=self.path,
            params=self.params,
            fault=self.fault,
            forwarded=self.forwarded,
            upstream_status=self.upstream_status,
            client_status=self.client_status,
            detail="; ".join(self.details),
            done=self.done,
        )


class _Drop(Exception):
    """Close the connection now (after a cut or a reset)."""


class FaultProxy:
    """The proxy; a context manager (sync, or async via a worker thread) that starts and stops it."""

    def __init__(
        self,
        upstream_base_url: str,
        plan: FaultPlan | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        upstream_timeout_s: float = 60.0,
        idle_timeout_s: float = 30.0,
    ) -> None:
        upstream = urlsplit(upstream_base_url.rstrip("/"))
        if upstream.scheme not in ("http", "https") or not upstream.netloc:
            raise ValueError("upstream_base_url must be an absolute http(s) URL")
        self.upstream_base_url = upstream_base_url.rstrip("/")
        self._upstream_root = urlunsplit((upstream.scheme, upstream.netloc, "", "", ""))
        self._base_path = upstream.path
        self._host = host
        self._requested_port = port
        self._upstream_timeout_s = upstream_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._lock = threading.Lock()
        self._plan = plan or FaultPlan()
        self._eligible = 0
        self._script_seen: list[int] = [0] * len(self._plan.script)
        self._seq = 0
        self._connections = 0
        self._records: list[_Record] = []
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # -- public API ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the proxy is not running")
        return self._port

    @property
    def origin(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The upstream base URL with the proxy's origin (same path)."""
        return f"{self.origin}{self._base_path}"

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    def set_plan(self, plan: FaultPlan) -> None:
        """Swap the plan (e.g. after seeding through the proxy); its counters start from zero."""
        with self._lock:
            self._plan = plan
            self._eligible = 0
            self._script_seen = [0] * len(plan.script)

    @property
    def log(self) -> list[ProxyEvent]:
        """Every request so far in arrival order, in-flight ones with `done=False` (a snapshot)."""
        with self._lock:
            return [r.event() for r in sorted(self._records, key=lambda r: r.seq)]

    def clear_log(self) -> None:
        with self._lock:
            self._records.clear()

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        return self._connections

    def counts(self) -> Counter[str]:
        """`requests`, `forwarded`, `faulted`, and one count per fault kind's value (e.g. "429")."""
        counts: Counter[str] = Counter()
        for event in self.log:
            counts["requests"] += 1
            counts["forwarded"] += event.forwarded
            if event.fault is not None:
                counts["faulted"] += 1
                counts[event.fault.value] += 1
        return counts

    def start(self, *, timeout_s: float = 10.0) -> None:
        if self._thread is not None:
            raise RuntimeError("the proxy is already running")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout_s)
        except BaseException:
            self.stop(timeout_s=timeout_s)
            raise

    def stop(self, *, timeout_s: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout_s)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout_s)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = None
            self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- lifecycle (proxy thread) --------------------------------------------------------------

    async def _serve(self) -> None:
        self._closing = False
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(self._upstream_timeout_s),
            follow_redirects=False,
            trust_env=False,  # never through an environment proxy
        )
        self._server = await asyncio.start_server(
            self._on_connection, self._host, self._requested_port, limit=_MAX_HEAD_BYTES
        )
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- one connection ------------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._connections += 1
        connection = self._connections
        try:
            # Bounded: ends on EOF, a closing request or fault, an idle timeout, or cancellation.
            while True:
                try:
                    async with asyncio.timeout(self._idle_timeout_s):
                        request = await self._read_request(reader)
                except (TimeoutError, ConnectionError):
                    return
                except _BadRequest as bad:
                    await self._send_simple(writer, bad.status, str(bad), close=True)
                    return
                if request is None:
                    return
                if not await self._handle(request, connection, writer):
                    return
        except (_Drop, ConnectionError):
            return
        except asyncio.CancelledError:
            # Our own shutdown: end normally (Python 3.11's start_server logs a cancelled handler).
            if self._closing:
                return
            raise
        finally:
            if task is not None:
                self._tasks.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial.strip():
                raise _BadRequest(400, "incomplete request head") from None
            return None  # the client closed an idle keep-alive connection
        except asyncio.LimitOverrunError:
            raise _BadRequest(431, "request head too large") from None
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[0].isalpha():
            raise _BadRequest(400, "bad request line")
        method, target, version = parts[0].upper(), parts[1], parts[2]
        if target.startswith(("http://", "https://")):  # absolute-form: keep path and query
            absolute = urlsplit(target)
            target = urlunsplit(("", "", absolute.path or "/", absolute.query, ""))
        if not target.startswith("/"):
            raise _BadRequest(400, "unsupported request target")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or line[0] in " \t":
                raise _BadRequest(400, "bad header line")
            headers.append((name, value.strip()))
        if len(headers) > _MAX_HEADERS:
            raise _BadRequest(431, "too many headers")
        request = _Request(method, target, version, headers, None)
        transfer = (request.header("transfer-encoding") or "").lower()
        length = request.header("content-length")
        if transfer:
            if transfer != "chunked":
                raise _BadRequest(501, "unsupported transfer-encoding")
            request.body = await self._read_chunked(reader)
        elif length is not None:
            if not length.isdigit() or int(length) > _MAX_BODY_BYTES:
                raise _BadRequest(400, "bad content-length")
            try:
                request.body = await reader.readexactly(int(length))
            except asyncio.IncompleteReadError:
                raise ConnectionResetError("client closed mid-body") from None
        return request

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        body = bytearray()
        try:
            for _ in range(_MAX_CHUNKS):
                size_line = (await reader.readuntil(b"\r\n"))[:-2].split(b";")[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise _BadRequest(400, "bad chunk size") from None
                if size == 0:
                    for _ in range(_MAX_HEADERS):  # trailers, dropped
                        if await reader.readuntil(b"\r\n") == b"\r\n":
                            return bytes(body)
                    raise _BadRequest(400, "too many trailers")
                if len(body) + size > _MAX_BODY_BYTES:
                    raise _BadRequest(413, "request body too large")
                body += await reader.readexactly(size)
                if await reader.readexactly(2) != b"\r\n":
                    raise _BadRequest(400, "bad chunk")
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("client closed mid-body") from None
        except asyncio.LimitOverrunError:
            raise _BadRequest(400, "bad chunk") from None
        raise _BadRequest(413, "too many chunks")

    # -- one request ---------------------------------------------------------------------------

    def _admit(self, request: _Request, connection: int) -> tuple[_Record, FaultPlan]:
        """Number the request and decide its fault (one atomic step, in arrival order)."""
        path, _, query = request.target.partition("?")
        params = tuple(name for name, _ in parse_qsl(query, keep_blank_values=True))
        with self._lock:
            plan = self._plan
            record = _Record(self._seq, connection, request.method, path, params)
            self._seq += 1
            for i, scripted in enumerate(plan.script):
                if scripted.matches(request.method, path):
                    seen = self._script_seen[i]
                    self._script_seen[i] += 1
                    if record.fault is None and scripted.skip <= seen < scripted.skip + scripted.times:
                        record.fault = scripted.kind
                        record.details.append(f"scripted #{i}")
            if plan.eligible(request.method, path):
                index = self._eligible
                self._eligible += 1
                if record.fault is None:
                    record.fault = plan.decide(index)
            self._records.append(record)
        return record, plan

    async def _handle(self, request: _Request, connection: int, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close."""
        record, plan = self._admit(request, connection)
        keep_alive = request.keep_alive()
        try:
            fault = record.fault
            if fault in (
                FaultKind.TOO_MANY_REQUESTS,
                FaultKind.UNAVAILABLE,
                FaultKind.STILL_RUNNING,
                FaultKind.GONE,
            ):
                status = int(fault.value)
                record.client_status = status
                await self._send_simple(
                    writer,
                    status,
                    f"injected {fault.value}",
                    close=not keep_alive,
                    retry_after=plan.retry_after,
                )
                return keep_alive
            if fault is FaultKind.ERROR_BEFORE:
                record.client_status = 500
                await self._send_simple(writer, 500, "injected 500 before forwarding", close=not keep_alive)
                return keep_alive
            if fault is FaultKind.RESET_BEFORE:
                _reset(writer)
                raise _Drop

            try:
                record.forwarded = True
                upstream = await self._forward(request)
            except (httpx.HTTPError, httpx.InvalidURL) as e:
                record.details.append(f"upstream {type(e).__name__}")
                record.client_status = 502
                await self._send_simple(writer, 502, "upstream failed", close=True)
                raise _Drop from None
            record.upstream_status = upstream.status

            if fault is FaultKind.ERROR_AFTER:
                record.client_status = 500
                await self._send_simple(writer, 500, "injected 500 after forwarding", close=not keep_alive)
                return keep_alive
            if fault is FaultKind.RESET_AFTER:
                _reset(writer)
                raise _Drop
            if fault is FaultKind.SLOW:
                record.details.append(f"delayed {plan.slow_s:g}s")
                await asyncio.sleep(plan.slow_s)
            if fault is FaultKind.REWRITE_LINKS:
                upstream.body, rewritten = _rewrite_links(upstream, plan.rewrite_origin)
                record.details.append(f"rewrote {rewritten} links")
            if fault is FaultKind.CUT:
                head = _response_head(
                    upstream.status, upstream.reason, upstream.headers, max(1, len(upstream.body)), close=True
                )
                sent = int(len(upstream.body) * plan.cut_fraction)
                record.client_status = upstream.status
                record.details.append(f"cut after {sent} of {len(upstream.body)} bytes")
                writer.write(head + upstream.body[:sent])
                await writer.drain()
                raise _Drop
            record.client_status = upstream.status
            await self._send(writer, request, upstream, close=not keep_alive)
            return keep_alive
        except asyncio.CancelledError:
            record.details.append("cancelled")
            raise
        finally:
            with self._lock:
                record.done = True

    async def _forward(self, request: _Request) -> _Upstream:
        assert self._http is not None
        dropped = _NOT_FORWARDED_REQUEST | request.connection_tokens()
        headers = [(k, v) for k, v in request.headers if k.lower() not in dropped]
        headers.append(("Accept-Encoding", "identity"))
        upstream_request = self._http.build_request(
            request.method,
            httpx.URL(self._upstream_root + request.target),
            headers=headers,
            content=request.body,
        )
        response = await self._http.send(upstream_request, stream=True)
        try:
            body = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        connection_named = {
            t.strip().lower() for t in response.headers.get_list("connection", split_commas=True)
        }
        kept = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in response.headers.raw
            if k.decode("latin-1").lower() not in _NOT_FORWARDED_RESPONSE | connection_named
        ]
        return _Upstream(response.status_code, response.reason_phrase, kept, body)

    async def _send(
        self, writer: asyncio.StreamWriter, request: _Request, upstream: _Upstream, *, close: bool
    ) -> None:
        # No body: keep whatever Content-Length the upstream sent (HEAD describes the GET).
        no_body = request.method == "HEAD" or upstream.status in (204, 304) or upstream.status < 200
        length = None if no_body else len(upstream.body)
        writer.write(_response_head(upstream.status, upstream.reason, upstream.headers, length, close=close))
        if not no_body:
            writer.write(upstream.body)
        await writer.drain()

    async def _send_simple(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        diagnostics: str,
        *,
        close: bool,
        retry_after: str | None = None,
    ) -> None:
        code = {429: "throttled", 503: "transient", 202: "informational", 410: "not-found"}.get(
            status, "exception"
        )
        severity = "information" if status < 300 else "error"
        body = json.dumps(
            {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": severity, "code": code, "diagnostics": f"fault-proxy: {diagnostics}"}],
            }
        ).encode()
        headers = [("Content-Type", "application/fhir+json")]
        if retry_after is not None:
            headers.append(("Retry-After", retry_after))
        if status == 202:
            headers.append(("X-Progress", "still running (fault proxy)"))
        writer.write(_response_head(status, "", headers, len(body), close=close) + body)
        await writer.drain()


def _response_head(
    status: int, reason: str, headers: Iterable[tuple[str, str]], length: int | None, *, close: bool
) -> bytes:
    if not reason:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers if length is None or k.lower() != "content-length"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: close" if close else "Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP RST (no answer, no graceful close)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _rewrite_links(upstream: _Upstream, origin: str) -> tuple[bytes, int]:
    """The body with every Bundle `link[].url` moved to `origin` (same path and query)."""
    encoding = next((v for k, v in upstream.headers if k.lower() == "content-encoding"), "identity")
    if encoding.lower() != "identity":
        return upstream.body, 0
    try:
        doc = json.loads(upstream.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return upstream.body, 0
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
        return upstream.body, 0
    target = urlsplit(origin)
    rewritten = 0
    for link in doc.get("link") or []:
        if isinstance(link, dict) and isinstance(link.get("url"), str):
            url = urlsplit(link["url"])
            link["url"] = urlunsplit((target.scheme, target.netloc, url.path, url.query, url.fragment))
            rewritten += 1
    if not rewritten:
        return upstream.body, 0
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(), rewritten
