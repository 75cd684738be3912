#!/usr/bin/env python3
"""Benchmark: the chat endpoint (`POST /api/agent`, AG-UI over SSE) with an instant model.

The real app (`create_app`) is served by uvicorn on loopback over an embedded FHIR server
holding a small synthetic cohort, with the SQLite checkpointer in a temp state dir. The planner
is a scripted OpenAI-compatible server that answers at once (the chat's native-tool planner
talks to it through the SDK over HTTP): it calls `lab_trend`, then answers citing the result.
The caller is a patient-bound token principal (the authorization dependency is replaced: this measures
the chat, not the session lookup).

- chat-first-event: time from sending the request to the first SSE event (RUN_STARTED), and to
  the first answer text, against a bare `GET /healthz` round trip measured in the same run
  (same server, same client). ratio = first event p50 / healthz p50.
- chat-50-streams: 50 runs started at once, each on its own thread, each read to its end;
  p50/p95 of the whole run, and errors (a status other than 200, RUN_ERROR, or no RUN_FINISHED).
  Errors must be none: each one is printed. Beside them: the wall time of all 50 against 50
  times a run alone (from the sequential runs above): near 1x means the runs share the CPU
  without contention of their own (no lock serialises them beyond the work itself).

    .venv/bin/python bench/bench_chat_stream.py [--runs 30] [--streams 50]

Lines: `bench chat-first-event: <ratio>x (...)` and `bench chat-50-streams: p95 ... errors N`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The scripted planner server and the uvicorn thread of the chat endpoint's tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import httpx
from bench_fhir_gather import embedded_server
from fastapi import Request
from live_app import serve_on
from percentiles import percentile
from planner_server import ScriptedPlanner, answer, call, references, tool_answers

from agent.service.app import create_app
from agent.service.authz import current_principal
from agent.service.principal import Principal
from agent.settings import Settings
from agent.testbed.cohort import generate_cohort
from agent.testbed.cohort.load import seed_cohort
from agent.testbed.stack.ports import free_port
from fhir_adapters import FhirClient
from fhir_adapters.smart_scopes import ScopeSet

QUESTION = "What is the latest HbA1c?"


def script(messages: list[dict[str, Any]]) -> dict[str, Any]:
    trends = tool_answers(messages, "lab_trend")
    if not trends:
        return call("lab_trend", {"analyte": "HbA1c"})
    cited = references(trends[-1])
    return answer(f"The latest HbA1c is in the record [{cited[0]}]." if cited else "No HbA1c found.")


def body(thread: str) -> dict[str, Any]:
    return {
        "threadId": thread,
        "runId": str(uuid.uuid4()),
        "messages": [{"id": "m1", "role": "user", "content": QUESTION}],
    }


async def one_run(
    http: httpx.AsyncClient, url: str, patient: str, thread: str
) -> tuple[float, float, float, str | None]:
    """(first event s, first text s, whole run s, error or None)."""
    start = time.perf_counter()
    first = first_text = 0.0
    finished = False
    async with http.stream(
        "POST", f"{url}/api/agent", json=body(thread), headers={"x-bench-patient": patient}
    ) as resp:
        if resp.status_code != 200:
            return 0.0, 0.0, time.perf_counter() - start, f"HTTP {resp.status_code}"
        async for line in resp.aiter_lines():
            if not line.startswith("data: "):
                continue
            now = time.perf_counter() - start
            first = first or now
            event = json.loads(line[6:])
            if event["type"] == "TEXT_MESSAGE_CONTENT" and not first_text:
                first_text = now
            if event["type"] == "RUN_ERROR":
                return first, first_text, now, f"RUN_ERROR {event.get('code')}: {event.get('message')}"
            finished = finished or event["type"] == "RUN_FINISHED"
    total = time.perf_counter() - start
    return first, first_text, total, None if finished else "no RUN_FINISHED"


async def measure(url: str, patients: list[str], runs: int, streams: int) -> None:
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        # Warm-up: the chat's parts open on first use; one run per patient gathers nothing ahead.
        for p in patients:
            await one_run(http, url, p, f"warm-{p}")
            await http.get(f"{url}/healthz")
        health: list[float] = []
        firsts: list[float] = []
        texts: list[float] = []
        alone: list[float] = []
        for i in range(runs):  # interleaved: both sides see the same machine load
            start = time.perf_counter()
            resp = await http.get(f"{url}/healthz")
            health.append(time.perf_counter() - start)
            assert resp.status_code == 200, resp.status_code
            first, first_text, whole, error = await one_run(
                http, url, patients[i % len(patients)], f"seq-{i}"
            )
            assert error is None, error
            firsts.append(first)
            texts.append(first_text)
            alone.append(whole)
        h, f, t = statistics.median(health), statistics.median(firsts), statistics.median(texts)
        print(
            f"bench chat-first-event: {f / h:.1f}x (first event p50 {f * 1000:.1f} ms, p95 "
            f"{percentile(firsts, 0.95) * 1000:.1f} ms; first answer text p50 {t * 1000:.1f} ms; "
            f"vs GET /healthz p50 {h * 1000:.2f} ms; {runs} runs, instant scripted planner)"
        )

        wall = time.perf_counter()
        outcomes = await asyncio.gather(
            *(one_run(http, url, patients[i % len(patients)], f"conc-{i}") for i in range(streams)),
            return_exceptions=True,
        )
        wall = time.perf_counter() - wall
        serial = streams * statistics.median(alone)
        errors = [repr(o) if isinstance(o, BaseException) else o[3] for o in outcomes]
        errors = [e for e in errors if e is not None]
        totals = [o[2] for o in outcomes if not isinstance(o, BaseException) and o[3] is None]
        for e in errors:
            print(f"  error: {e}")
        p50 = statistics.median(totals) if totals else float("nan")
        p95 = percentile(totals, 0.95) if totals else float("nan")
        print(
            f"bench chat-{streams}-streams: p95 {p95 * 1000:.0f} ms, p50 {p50 * 1000:.0f} ms, "
            f"errors {len(errors)} ({streams} concurrent runs to RUN_FINISHED, one thread each, "
            f"SQLite checkpointer; all done in {wall:.1f} s vs {serial:.1f} s for {streams} runs one "
            f"after another, a run alone p50 {statistics.median(alone) * 1000:.0f} ms)"
        )
        if errors:
            raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--streams", type=int, default=50)
    args = parser.parse_args()

    cohort = generate_cohort(4, 7)
    patients = [p.id for p in cohort.patients]
    scopes = ScopeSet.parse("launch openid fhirUser patient/*.rs")

    async def bench_principal(request: Request) -> Principal:
        return Principal(
            kind="token", patient_id=request.headers["x-bench-patient"], scopes=scopes, label="bench"
        )

    with embedded_server() as fhir_url, tempfile.TemporaryDirectory(prefix="bench-chat-") as state:

        async def load() -> None:
            async with FhirClient(fhir_url) as client:
                await seed_cohort(client, cohort)

        asyncio.run(load())
        planner = ScriptedPlanner(script)
        with serve_on(planner.app, free_port(), "scripted-planner") as planner_url:
            settings = Settings(
                state_dir=Path(state),
                planner_url=f"{planner_url}/v1",
                planner_model="scripted-planner",
                planner_protocol="tools",
            )
            app = create_app(settings, public_url="http://127.0.0.1", fhir_url=fhir_url)
            app.dependency_overrides[current_principal] = bench_principal
            with serve_on(app, free_port()) as url:
                asyncio.run(measure(url, patients, args.runs, args.streams))


if __name__ == "__main__":
    main()
