"""A scripted model behind the project's own OpenAI-compatible server, for tests that need a model
server on the wire (faults between ChartAgent and it) but not a model's cost.

    with ScriptedModelServer(ScriptedBackend([answer], cycle=True)) as served:
        Settings(model_backend="openai", model_url=served.base_url, model=served.name, ...)

`tools.medgemma.serve_app` served by `live_app.serve_on` (uvicorn on its own thread: the test's
loop is never blocked by it), on a free loopback port.
"""

from __future__ import annotations

from contextlib import ExitStack
from types import TracebackType
from typing import Self

from live_app import serve_on

from agent.testbed.stack.ports import free_port
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.serve_app import create_app

__all__ = ["ScriptedModelServer"]


class ScriptedModelServer:
    def __init__(self, backend: ScriptedBackend) -> None:
        self.backend = backend
        self.port = free_port()
        self._serving = ExitStack()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def name(self) -> str:
        return self.backend.info.name

    def __enter__(self) -> Self:
        self._serving.enter_context(serve_on(create_app(self.backend), self.port, "scripted-model-server"))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._serving.close()
