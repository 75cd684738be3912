"""What a feature keeps for the life of the process (an MCP session manager, an HTTP client):
`add_lifespan(app, part)` enters `part(app)` inside the app's lifespan, after what was there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

__all__ = ["add_lifespan"]


def add_lifespan(app: FastAPI, part: Callable[[FastAPI], AbstractAsyncContextManager[None]]) -> None:
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def chained(a: Any) -> AsyncIterator[Any]:
        async with previous(a) as state, part(app):
            yield state

    app.router.lifespan_context = chained
