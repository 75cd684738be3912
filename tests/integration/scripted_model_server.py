"""A scripted model behind the project's own OpenAI-compatible server, for tests that need a model
server on the wire (faults between ChartAgent and it) but not a model's cost.

    with ScriptedModelServer(ScriptedBackend([answer], cycle=True)) as served:
        Settings(model_backend="openai", model_url=served.base_url, model=served.name, ...)

`tools.medgemma.serve_app` in uvicorn, on its own thread and event loop (the test's loop is never
blocked by it), on a free loopback port.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Self

import uvicorn

from agent.testbed.stack.ports import free_port
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.serve_app import create_app

__all__ = ["ScriptedModelServer"]


class ScriptedModelServer:
    def __init__(self, backend: ScriptedBackend) -> None:
        self.backend = backend
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scripted-model-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def name(self) -> str:
        return self.backend.info.name

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        config = uvicorn.Config(
            create_app(self.backend), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        serving = asyncio.create_task(self._server.serve())
        while not self._server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has no event)
            await asyncio.sleep(0.02)
        self._ready.set()
        await serving

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(60):
            raise TimeoutError("the scripted model server did not start in 60 s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)
