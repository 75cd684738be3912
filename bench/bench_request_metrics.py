#!/usr/bin/env python3
"""Benchmark: what counting and timing every request costs (`agent.metrics.RequestMetrics`).

The same FastAPI app twice: with the service's metrics middleware (outermost, as `create_app`
installs it, given the app's routes) and without (the baseline). Three routes: a route with a
path parameter (`/api/patients/{patient_id}/x`, named by its template), a Starlette route (found
again among the routes, as MCP's is) and a path no route matches. Driven in process through
httpx's ASGI transport (no sockets: the figures are the app's own work), in interleaved rounds so
that drift hits both alike.

    .venv/bin/python bench/bench_request_metrics.py [--requests 3000]

Line: `bench request-metrics: <ratio>x (...)`, ratio = p50 with the middleware / p50 without, on
the FastAPI route; the Starlette route's and the unmatched path's beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from fastapi import FastAPI
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from agent.metrics import RequestMetrics

PATHS = {"fastapi": "/api/patients/p-1/x", "starlette": "/mcp", "unmatched": "/no/such/path"}


class _Asgi:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("ok")(scope, receive, send)


def build(counted: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/api/patients/{patient_id}/x")
    async def x(patient_id: str) -> dict[str, str]:
        return {"ok": "yes"}

    app.router.routes.append(Route("/mcp", endpoint=_Asgi(), methods=["GET"]))
    if counted:
        app.add_middleware(RequestMetrics, routes=app.router.routes)
    return app


async def run(requests: int) -> None:
    clients = {
        name: httpx.AsyncClient(transport=httpx.ASGITransport(app=build(name == "with")), base_url="http://b")
        for name in ("with", "without")
    }
    times: dict[tuple[str, str], list[float]] = {(c, p): [] for c in clients for p in PATHS}
    for client in clients.values():  # warm-up
        for path in PATHS.values():
            await client.get(path)
    rounds = 10
    for _ in range(rounds):
        for name, client in clients.items():
            for kind, path in PATHS.items():
                for _ in range(requests // rounds):
                    start = time.perf_counter()
                    await client.get(path)
                    times[(name, kind)].append(time.perf_counter() - start)
    for client in clients.values():
        await client.aclose()
    p50 = {key: statistics.median(values) * 1e6 for key, values in times.items()}
    parts = [
        f"{kind} {p50[('with', kind)] / p50[('without', kind)]:.2f}x "
        f"({p50[('with', kind)]:.0f} µs vs {p50[('without', kind)]:.0f} µs)"
        for kind in PATHS
    ]
    ratio = p50[("with", "fastapi")] / p50[("without", "fastapi")]
    print(f"bench request-metrics: {ratio:.2f}x (p50 per request, {requests} requests a route and side; "
          f"{'; '.join(parts)})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=3000)
    asyncio.run(run(parser.parse_args().requests))


if __name__ == "__main__":
    main()
