"""An ASGI app served by uvicorn on its own thread and event loop, on a free loopback port."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import uvicorn

from agent.testbed.stack.ports import free_port


class LiveServer:
    def __init__(self, app: Any, *, port: int | None = None, name: str = "live-server") -> None:
        self.app = app
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        serving = asyncio.create_task(self._server.serve())
        while not self._server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has no event)
            await asyncio.sleep(0.02)
        self._ready.set()
        await serving

    def start(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(60):
            raise TimeoutError("the server did not start in 60 s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)
