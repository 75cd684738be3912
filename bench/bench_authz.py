#!/usr/bin/env python3
"""Benchmark: what authorizing a request costs (`agent.service.authz.current_principal`).

An app with the service's launch routes and security headers (`smart_launch.install`) and two
routes answering the same small JSON: one open (the baseline), one that resolves the caller's
Principal. Driven in process through httpx's ASGI transport (no sockets, so the figures are the
service's own work), in interleaved rounds so that drift hits every mode alike. Callers:

- session: the app's session cookie (a dict look-up);
- session, shared: the same with `CHARTAGENT_APP_SESSION_KEY` set, on a second app: each request
  first reads the session's generation from the shared database (agent.service.shared_sessions;
  SQLite in a temporary state dir here, as one host's replicas share it);
- service key: `Authorization: Bearer <key>` (constant-time compare against each key);
- bearer JWT (new): a different RS256 access token of a trusted issuer on every request: each
  one verified (signature against the issuer's JWKS, fetched once and cached; iss, aud, exp);
- bearer JWT (reused): one token on every request, as a job or MCP client sends it: verified
  once, then recalled by its digest until it expires.

    .venv/bin/python bench/bench_authz.py [--requests 2000]

Line: `bench authz-bearer-jwt: <ratio>x (...)`, ratio = p50 with a new bearer JWT per request
/ p50 open; the other callers' ratios beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI
from pydantic import SecretStr

from agent.service import smart_launch
from agent.service.authz import current_principal, session_cookie_name
from agent.service.issuers import IssuerRegistry
from agent.service.principal import Principal
from agent.service.runtime import ServiceRuntime
from agent.service.sessions import Session
from agent.settings import ServiceKey, Settings
from fhir_adapters.smart_app_launch import SmartConfiguration
from fhir_adapters.smart_scopes import ScopeSet

ISS = "https://ehr.bench/fhir"
PUBLIC = "http://chartagent.bench"


def issuer_transport(key: rsa.RSAPrivateKey) -> httpx.MockTransport:
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "k1", "alg": "RS256"}
    config = {
        "issuer": ISS,
        "authorization_endpoint": "https://ehr.bench/auth/authorize",
        "token_endpoint": "https://ehr.bench/auth/token",
        "jwks_uri": "https://ehr.bench/auth/jwks",
        "code_challenge_methods_supported": ["S256"],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("smart-configuration"):
            return httpx.Response(200, json=config)
        return httpx.Response(200, json={"keys": [jwk]})

    return httpx.MockTransport(handler)


Caller = Callable[[int], dict[str, str]]  # request number -> headers


def service_app(settings: Settings, transport: httpx.MockTransport) -> tuple[FastAPI, Session]:
    """An app with the launch routes and the two routes, and one session of it."""
    runtime = ServiceRuntime(
        settings=settings,
        public_url=PUBLIC,
        fhir_url="http://fhir.bench/fhir",
        dicomweb_url=None,
        issuers=IssuerRegistry(http_factory=lambda: httpx.AsyncClient(transport=transport)),
    )
    app = FastAPI()
    app.state.runtime = runtime
    smart_launch.install(app)

    @app.get("/api/open")
    async def open_route() -> dict[str, str]:
        return {"patient": "p1"}

    @app.get("/api/authorized")
    async def authorized(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, str]:
        return {"patient": principal.patient_id or ""}

    session = runtime.sessions.create(
        iss=ISS,
        config=SmartConfiguration(
            authorization_endpoint="https://ehr.bench/auth/authorize",
            token_endpoint="https://ehr.bench/auth/token",
        ),
        patient_id="p1",
        fhir_user="Practitioner/1",
        scopes=ScopeSet.parse("patient/*.rs"),
        need_patient_banner=False,
        access_token=SecretStr("bench-access-token"),
        expires_in=3600,
        refresh_token=None,
        lifetime_s=3600,
    )
    return app, session


def cookie_of(app: FastAPI, session: Session) -> str:
    return f"{session_cookie_name(app.state.runtime)}={session.id}"


# Per caller the app it calls; the callers; each app with its session.
Built = tuple[dict[str, FastAPI], dict[str, Caller], list[tuple[FastAPI, Session]]]


def build(requests: int, state_dir: Path) -> Built:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    transport = issuer_transport(key)
    service_key = secrets.token_urlsafe(32)
    settings = Settings(
        app_issuers=(ISS,),
        service_keys={
            f"caller-{i}": ServiceKey(
                key=SecretStr(service_key if i == 0 else secrets.token_urlsafe(32)), scopes="system/*.rs"
            )
            for i in range(3)
        },
    )
    app, session = service_app(settings, transport)
    shared = SecretStr(base64.b64encode(os.urandom(32)).decode())
    shared_settings = settings.model_copy(update={"state_dir": state_dir, "app_session_key": shared})
    shared_app, shared_session = service_app(shared_settings, transport)
    now = int(time.time())

    def mint(n: int) -> str:
        claims = {
            "iss": ISS,
            "aud": ISS,
            "exp": now + 3600,
            "iat": now,
            "jti": str(n),
            "scope": "patient/*.rs",
        }
        return jwt.encode({**claims, "patient": "p1"}, key, algorithm="RS256", headers={"kid": "k1"})

    fresh = [mint(n) for n in range(requests + 100)]
    reused = mint(-1)
    callers: dict[str, Caller] = {
        "open": lambda _n: {},
        "session": lambda _n: {"Cookie": cookie_of(app, session)},
        "session-shared": lambda _n: {"Cookie": cookie_of(shared_app, shared_session)},
        "service-key": lambda _n: {"Authorization": f"Bearer {service_key}"},
        "jwt-new": lambda n: {"Authorization": f"Bearer {fresh[n]}"},
        "jwt-reused": lambda _n: {"Authorization": f"Bearer {reused}"},
    }
    apps = {name: shared_app if name == "session-shared" else app for name in callers}
    return apps, callers, [(app, session), (shared_app, shared_session)]


async def measure(built: Built, requests: int) -> dict[str, list[float]]:
    apps, callers, sessions = built
    times: dict[str, list[float]] = {name: [] for name in callers}
    count = dict.fromkeys(callers, 0)
    async with AsyncExitStack() as stack:
        clients = {}
        for app, session in sessions:
            # The ASGI transport runs no lifespan: enter the app's own (the shared sessions' store).
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            clients[id(app)] = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url=PUBLIC)
            )
            await app.state.runtime.sessions.share(session)  # as the launch's callback does

        async def one(name: str) -> float:
            path = "/api/open" if name == "open" else "/api/authorized"
            headers = callers[name](count[name])
            count[name] += 1
            client = clients[id(apps[name])]
            start = time.perf_counter()
            resp = await client.get(path, headers=headers)
            elapsed = time.perf_counter() - start
            assert resp.status_code == 200, resp.text
            return elapsed

        for name in callers:  # warm-up: JWKS fetched, code paths hot
            for _ in range(50):
                await one(name)
        rounds = 20
        for _ in range(rounds):
            for name in callers:
                for _ in range(requests // rounds):
                    times[name].append(await one(name))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-authz-") as state:
        built = build(args.requests, Path(state))
        callers = built[1]
        times = asyncio.run(measure(built, args.requests))
    p50 = {name: statistics.median(t) * 1e6 for name, t in times.items()}
    p95 = {name: statistics.quantiles(t, n=20)[18] * 1e6 for name, t in times.items()}
    for name in callers:
        print(f"  {name:12s} p50 {p50[name]:7.0f} us  p95 {p95[name]:7.0f} us  ({len(times[name])} requests)")
    base = p50["open"]
    others = ", ".join(
        f"{name} {p50[name] / base:.2f}x" for name in callers if name not in ("open", "jwt-new")
    )
    print(
        f"bench authz-bearer-jwt: {p50['jwt-new'] / base:.2f}x "
        f"(p50 {p50['jwt-new']:.0f} us with a new RS256 token per request vs {base:.0f} us open; "
        f"{others}; in-process ASGI)"
    )


if __name__ == "__main__":
    main()
