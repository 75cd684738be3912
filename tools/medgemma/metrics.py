"""Prometheus counters of the model calls a process makes: what sizing a GPU, or a shared vLLM's
concurrency limit, is read from in production. `MeteredBackend` wraps the configured backend
(`factory.create_backend`): each `generate` counts by backend and outcome (the finish reason, the
exception's class, or `cancelled` when its caller went away, which is no failure), its seconds
(queueing for the concurrency limit included: what a patient's run waits), and its prompt and
completion tokens. No prompt, answer or image is ever a label. Served with the process's other
metrics (agent.metrics: `CHARTAGENT_METRICS_PORT`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

from prometheus_client import Counter, Histogram

from tools.medgemma.types import ModelBackend, ModelInfo, ModelRequest, ModelResult

__all__ = ["MODEL_REQUESTS", "MODEL_SECONDS", "MODEL_TOKENS", "MeteredBackend"]

MODEL_REQUESTS: Final = Counter(
    "chartagent_model_requests", "Model generations, by backend and outcome", ["backend", "outcome"]
)
MODEL_SECONDS: Final = Histogram(
    "chartagent_model_request_seconds",
    "Seconds of a model generation as its caller waits (queueing included), by backend",
    ["backend"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
)
MODEL_TOKENS: Final = Counter(
    "chartagent_model_tokens", "Tokens of model generations, by backend and kind", ["backend", "kind"]
)


class _Timed:
    """One generation's count and seconds; an exception counts by its class (and goes on)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.outcome = "stop"
        self.started = time.perf_counter()

    def __enter__(self) -> _Timed:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            outcome = self.outcome
        else:  # a chat closed mid-answer cancels its generation: not an alert's business
            outcome = "cancelled" if issubclass(kind, asyncio.CancelledError) else kind.__name__
        MODEL_REQUESTS.labels(self.backend, outcome).inc()
        MODEL_SECONDS.labels(self.backend).observe(time.perf_counter() - self.started)


class MeteredBackend:
    """`backend`, its calls counted and timed."""

    def __init__(self, backend: ModelBackend) -> None:
        self.backend = backend

    @property
    def info(self) -> ModelInfo:
        return self.backend.info

    async def generate(self, request: ModelRequest) -> ModelResult:
        kind = self.backend.info.backend
        with _Timed(kind) as timed:
            result = await self.backend.generate(request)
            timed.outcome = result.finish_reason
        MODEL_TOKENS.labels(kind, "prompt").inc(result.prompt_tokens)
        MODEL_TOKENS.labels(kind, "completion").inc(result.completion_tokens)
        return result

    async def aclose(self) -> None:
        await self.backend.aclose()

    async def __aenter__(self) -> MeteredBackend:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
