"""`{ehr}/fhir/*`: the FHIR server as apps see it, behind each token's scopes and compartment.

Every request but `metadata` needs a bearer token this stand-in signed for `{ehr}/fhir` (401
otherwise). Scopes are checked per interaction (read/vread/history -> r, search -> s, create -> c,
update/patch -> u, delete -> d; every entry of a transaction or batch). A patient-bound token
reaches only its patient's compartment (`compartment`): reads are checked on what the server
returns, searches are pinned to the patient and their results filtered, writes are checked on
the resource written and the one replaced. System and user tokens pass the compartment check.
Upstream URLs in answers (bundle links, fullUrl, Location) are rewritten to `{ehr}/fhir`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from fastapi import APIRouter, Request, Response

from agent.testbed.ehr.bearer import Caller, Unauthenticated, caller_of
from agent.testbed.ehr.compartment import (
    PATIENT_FIELD,
    CompartmentRefused,
    directly_in,
    parse_reference,
    pin_search,
    provenance_targets,
    targets_verdict,
)
from agent.testbed.ehr.state import EhrState, ehr_of
from fhir_adapters.error_tree import BadInputError
from fhir_adapters.smart_scopes import Interaction

router = APIRouter()

_REQUEST_HEADERS = ("content-type", "accept", "prefer", "if-match", "if-none-match", "if-none-exist",
                    "if-modified-since")  # fmt: skip
_RESPONSE_HEADERS = ("content-type", "location", "content-location", "etag", "last-modified",
                     "x-progress", "retry-after", "expires")  # fmt: skip
_FHIR_JSON = "application/fhir+json"
JsonDict = dict[str, Any]


class ScopeRefused(BadInputError):
    pass


class BadRequest(BadInputError):
    pass


def outcome(status: int, code: str, text: str, headers: Mapping[str, str] | None = None) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return Response(json.dumps(body), status_code=status, media_type=_FHIR_JSON, headers=dict(headers or {}))


_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


@router.api_route("/fhir", methods=_METHODS)
async def fhir_base(request: Request) -> Response:
    """The base itself (transactions, batches, system search): no redirect to `/fhir/`."""
    return await fhir_proxy(request, "")


@router.api_route("/fhir/{path:path}", methods=_METHODS)
async def fhir_proxy(request: Request, path: str) -> Response:
    ehr = ehr_of(request)
    segments = [s for s in path.split("/") if s]
    params = list(request.query_params.multi_items())
    try:
        if segments == ["metadata"] and request.method in ("GET", "HEAD"):
            return _answer(ehr, await _forward(ehr, request.method, segments, params, b"", request))
    except httpx.HTTPError as exc:
        return _unreachable(exc)
    try:
        caller = caller_of(request, ehr)
    except Unauthenticated as exc:
        challenge = f'Bearer realm="{ehr.config.fhir_url}", error="invalid_token", error_description="{exc}"'
        return outcome(401, "login", str(exc), {"WWW-Authenticate": challenge})
    try:
        return await _Handler(ehr, caller, request).handle(segments, params)
    except (CompartmentRefused, ScopeRefused) as exc:
        return outcome(403, "forbidden", str(exc))
    except BadRequest as exc:
        return outcome(400, "invalid", str(exc))
    except httpx.HTTPError as exc:
        return _unreachable(exc)


def _unreachable(exc: httpx.HTTPError) -> Response:
    """The FHIR server behind the proxy is down or slow: a gateway error, as an EHR would answer."""
    return outcome(502, "transient", f"the FHIR server did not answer ({type(exc).__name__})")


class _Handler:
    def __init__(self, ehr: EhrState, caller: Caller, request: Request) -> None:
        self.ehr = ehr
        self.caller = caller
        self.request = request
        self.patient = caller.patient_id
        self._looked_up: dict[str, JsonDict | None] = {}
        self._readable: dict[str, bool] = {}

    def require(self, resource_type: str, interaction: Interaction) -> None:
        if not self.caller.scopes.allows(resource_type, interaction, contexts=self.caller.contexts):
            raise ScopeRefused(f"scope does not allow {interaction!r} on {resource_type}")

    def readable(self, resource_type: str) -> bool:
        # Once per type: ScopeSet parses its scopes on every question, and answers have many entries.
        if resource_type not in self._readable:
            self._readable[resource_type] = self.caller.scopes.allows(
                resource_type, "r", contexts=self.caller.contexts
            )
        return self._readable[resource_type]

    def not_for_patient_tokens(self, what: str) -> None:
        if self.patient is not None:
            raise CompartmentRefused(f"{what} is not available to a patient-bound token")

    async def handle(self, segments: list[str], params: list[tuple[str, str]]) -> Response:
        method = self.request.method
        body = await self.request.body()
        if method == "HEAD":
            # Its answer has no body to check against the compartment.
            self.not_for_patient_tokens("HEAD")
        if not segments:
            if method == "POST":
                await self.check_bundle(_json(body))
            else:
                self.not_for_patient_tokens("a system-level search")
                self.require("*", "s")
            return await self.forward(method, segments, params, body)
        rtype, rest = segments[0], segments[1:]
        if not rtype[:1].isupper() and not rtype.startswith("$"):
            # Not a resource type: the server's own paths (bulk-status, bulk-files of $export).
            self.not_for_patient_tokens("this path")
            self.require("*", "r")
            return await self.forward(method, segments, params, body)
        if rtype.startswith("$") or (rest and rest[0].startswith("$")) or (rest and rest[0] == "_history"):
            # System and type-level operations ($export, ...) and type history span patients.
            self.not_for_patient_tokens("this operation")
            self.require(rtype if not rtype.startswith("$") else "*", "r" if method == "GET" else "u")
            return await self.forward(method, segments, params, body)
        if not rest or rest == ["_search"]:
            return await self.type_level(method, rtype, rest, params, body)
        rid = rest[0]
        if len(rest) >= 2 and rest[1].startswith("$"):
            if not (rtype == "Patient" and rest[1] == "$everything"):
                self.not_for_patient_tokens("this operation")
            self.require(rtype, "r")
            if self.patient is not None and rid != self.patient:
                raise CompartmentRefused("not this token's patient")
            # Every entry is filtered: $everything returns all types of the record.
            return await self.forward(method, segments, params, body, filter_bundle=True)
        if method in ("GET", "HEAD"):
            self.require(rtype, "r")
            return await self.forward(method, segments, params, body, check_read=True)
        if method in ("PUT", "PATCH"):
            self.require(rtype, "u")
            if self.patient is not None:
                await self.check_existing(rtype, rid)
                if method == "PUT":
                    await self.check_written(_json(body), {})
                elif b"/subject" in body or b"/patient" in body:
                    raise CompartmentRefused("a patch may not change the resource's patient")
            return await self.forward(method, segments, params, body)
        if method == "DELETE":
            self.require(rtype, "d")
            if self.patient is not None:
                await self.check_existing(rtype, rid)
            return await self.forward(method, segments, params, body)
        return outcome(405, "not-supported", f"{method} is not supported here")

    async def type_level(
        self, method: str, rtype: str, rest: list[str], params: list[tuple[str, str]], body: bytes
    ) -> Response:
        if rest == ["_search"] or method in ("GET", "HEAD"):
            if rest == ["_search"]:
                # POST _search: the form body holds parameters too; forward it as a GET.
                params = [*params, *parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)]
                method, body = "GET", b""
            self.require(rtype, "s")
            if self.patient is not None:
                params = pin_search(rtype, params, self.patient)
            includes = any(k.split(":")[0] in ("_include", "_revinclude") for k, _ in params)
            return await self.forward(
                method, [rtype], params, body, filter_bundle=self.patient is not None or includes
            )
        if method == "POST":
            self.require(rtype, "c")
            if self.patient is not None:
                await self.check_written(_json(body), {})
            return await self.forward(method, [rtype], params, body)
        # Conditional update or delete: which resource it hits is the server's choice.
        self.not_for_patient_tokens("a conditional update or delete")
        self.require(rtype, "u" if method in ("PUT", "PATCH") else "d")
        return await self.forward(method, [rtype], params, body)

    async def check_bundle(self, bundle: JsonDict) -> None:
        kind = bundle.get("type")
        if bundle.get("resourceType") != "Bundle" or kind not in ("transaction", "batch"):
            raise BadRequest("only transaction and batch bundles are accepted at the base")
        entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
        local = {
            e["fullUrl"]: e["resource"]
            for e in entries
            if "fullUrl" in e and isinstance(e.get("resource"), dict)
        }
        for entry in entries:
            req = entry.get("request") or {}
            method = str(req.get("method", "")).upper()
            parts = urlsplit(str(req.get("url", "")))
            segs = [s for s in parts.path.split("/") if s]
            if not segs:
                raise BadRequest("a bundle entry without a resource type")
            rtype = segs[0]
            interaction: Interaction
            if method == "GET":
                interaction = "r" if len(segs) > 1 else "s"
                self.not_for_patient_tokens("a read inside a bundle")
            elif method == "POST":
                interaction = "c"
            elif method in ("PUT", "PATCH"):
                interaction = "u"
            elif method == "DELETE":
                interaction = "d"
            else:
                raise BadRequest(f"bundle entry method {method!r} is not supported")
            self.require(rtype, interaction)
            if self.patient is None:
                continue
            if method in ("PUT", "PATCH", "DELETE"):
                if len(segs) < 2:
                    raise CompartmentRefused("a conditional update or delete is not available here")
                await self.check_existing(rtype, segs[1])
            if method == "PATCH":
                raise CompartmentRefused("a patch inside a bundle is not available to a patient-bound token")
            if method in ("POST", "PUT"):
                await self.check_written(entry.get("resource") or {}, local)

    async def check_written(self, resource: JsonDict, local: Mapping[str, JsonDict]) -> None:
        if await self.in_compartment(resource, local) is False:
            raise CompartmentRefused("the resource belongs to another patient's record")

    async def check_existing(self, rtype: str, rid: str) -> None:
        existing = await self.lookup(rtype, rid)
        if existing is not None and await self.in_compartment(existing, {}) is False:
            raise CompartmentRefused("not this token's patient")

    async def in_compartment(self, resource: Mapping[str, Any], local: Mapping[str, JsonDict]) -> bool:
        assert self.patient is not None
        direct = directly_in(resource, self.patient)
        if direct is not None:
            return direct
        if resource.get("resourceType") != "Provenance":
            return True  # not patient data
        verdicts: list[bool | None] = []
        for ref in provenance_targets(resource):
            if ref in local:
                verdicts.append(directly_in(local[ref], self.patient))
                continue
            parsed = parse_reference(ref)
            if parsed is None:
                verdicts.append(False)
            elif parsed[0] == "Patient":
                verdicts.append(parsed[1] == self.patient)
            elif parsed[0] in PATIENT_FIELD:
                target = await self.lookup(*parsed)
                verdicts.append(directly_in(target, self.patient) if target is not None else False)
            else:
                verdicts.append(None)
        return targets_verdict(verdicts)

    async def lookup(self, rtype: str, rid: str) -> JsonDict | None:
        key = f"{rtype}/{rid}"
        if key not in self._looked_up:
            response = await self.ehr.upstream.get(f"{self.ehr.config.upstream_fhir_url}/{key}")
            self._looked_up[key] = response.json() if response.status_code == 200 else None
        return self._looked_up[key]

    async def forward(
        self,
        method: str,
        segments: list[str],
        params: list[tuple[str, str]],
        body: bytes,
        *,
        check_read: bool = False,
        filter_bundle: bool = False,
    ) -> Response:
        upstream = await _forward(self.ehr, method, segments, params, body, self.request)
        if upstream.status_code != 200 or not (check_read or filter_bundle):
            return _answer(self.ehr, upstream)
        if self.patient is None and not filter_bundle:
            return _answer(self.ehr, upstream)
        payload = upstream.json()
        # A read answering with a Bundle is an instance history: filtered like a search.
        if payload.get("resourceType") == "Bundle":
            searched = segments[0] if segments else None
            entries = payload.get("entry") or []
            kept = [entry for entry in entries if await self.may_see(entry, searched)]
            if len(kept) < len(entries):
                payload["entry"] = kept
                return _answer(self.ehr, upstream, content=json.dumps(payload).encode())
        elif self.patient is not None and not await self.in_compartment(payload, {}):
            raise CompartmentRefused("not this token's patient")
        # Nothing dropped: the server's own bytes.
        return _answer(self.ehr, upstream)

    async def may_see(self, entry: JsonDict, searched: str | None) -> bool:
        """An entry of a search answer, $everything or an _include: the searched type was checked
        for `s`; any other type needs `r`; and all must lie in the token's compartment."""
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            return True
        rtype = str(resource.get("resourceType"))
        if rtype not in ("OperationOutcome", searched) and not self.readable(rtype):
            return False
        return self.patient is None or await self.in_compartment(resource, {})


async def _forward(
    ehr: EhrState,
    method: str,
    segments: list[str],
    params: list[tuple[str, str]],
    body: bytes,
    request: Request,
) -> httpx.Response:
    headers = {h: request.headers[h] for h in _REQUEST_HEADERS if h in request.headers}
    upstream_base = ehr.config.upstream_fhir_url
    # Absolute references to the proxy's base point at the same resources upstream.
    body = body.replace(ehr.config.fhir_url.encode(), upstream_base.encode())
    return await ehr.upstream.request(
        method,
        f"{upstream_base}/{'/'.join(segments)}",
        params=tuple(params),
        content=body or None,
        headers=headers,
    )


def _answer(ehr: EhrState, upstream: httpx.Response, *, content: bytes | None = None) -> Response:
    old, new = ehr.config.upstream_fhir_url, ehr.config.fhir_url
    data = (upstream.content if content is None else content).replace(old.encode(), new.encode())
    headers = {h: upstream.headers[h].replace(old, new) for h in _RESPONSE_HEADERS if h in upstream.headers}
    return Response(data, status_code=upstream.status_code, headers=headers)


def _json(body: bytes) -> JsonDict:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError as exc:
        raise BadRequest("the body is not JSON") from exc
    if not isinstance(parsed, dict):
        raise BadRequest("the body is not a JSON object")
    return parsed
