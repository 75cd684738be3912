"""The real service app (`create_app`) served by uvicorn on a loopback port chosen first, so that
its public URL (the CDS hook's audience, the MCP endpoint) is known before the app is built."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serve_on(app: Any, port: int, name: str = "chartagent-service") -> Iterator[str]:
    """Serve `app` on 127.0.0.1:`port` in a thread (its lifespan included); yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    try:
        for _ in range(3000):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not server.started:
            raise TimeoutError(f"{name} did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
