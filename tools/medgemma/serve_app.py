"""A small OpenAI-compatible server over any `ModelBackend` (tests, and a dev server).

    POST /v1/chat/completions   OpenAI chat format (`openai_wire`); images as data: URLs only
    GET  /v1/models             the one served model
    GET  /health                200 when up (as vLLM)

Not a production server: no auth, no streaming, one model. It lets `OpenAIChatBackend` be tested
end to end against the in-process transformers backend, and a developer run the tiny model
behind the same interface as vLLM:

    python -m tools.medgemma.serve_app --tiny /tmp/tiny-medgemma --port 8000
    CHARTAGENT_MODEL_BACKEND=openai CHARTAGENT_MODEL_URL=http://127.0.0.1:8000/v1 \
        CHARTAGENT_MODEL=<the name GET /v1/models lists> chartagent ...

Error answers use OpenAI's shape and never echo the request (it holds patient data).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from tools.medgemma.errors import ModelError
from tools.medgemma.openai_wire import (
    ChatCompletionRequest,
    ImageDataUrlError,
    from_chat_request,
    to_chat_completion,
)
from tools.medgemma.types import ModelBackend

__all__ = ["create_app", "main"]


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": kind, "code": status}}
    )


def _locations(errors: Any) -> str:
    where = sorted({".".join(str(p) for p in e["loc"]) for e in errors})
    return ", ".join(where[:5]) or "body"


def create_app(backend: ModelBackend, *, served_name: str | None = None) -> FastAPI:
    """The app serving `backend` under `served_name` (default: the backend's model name).

    The backend belongs to the caller, who closes it after the server stops.
    """
    name = served_name or backend.info.name
    created = int(time.time())
    app = FastAPI(title="ChartAgent model server", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Field locations only: FastAPI's default 422 body echoes the input.
        return _error(400, f"invalid request: bad or missing {_locations(exc.errors())}", "BadRequestError")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        model = {"id": name, "object": "model", "created": created, "owned_by": "chartagent"}
        return {"object": "list", "data": [model]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest) -> dict[str, Any] | JSONResponse:
        if body.model != name:
            return _error(404, f"model {body.model!r} is not served here; GET /v1/models", "NotFoundError")
        if body.stream:
            return _error(400, "stream=true is not supported: send stream=false", "BadRequestError")
        if body.n != 1:
            return _error(400, "n must be 1", "BadRequestError")
        try:  # image decoding is CPU-bound: off the event loop
            request = await asyncio.to_thread(from_chat_request, body)
        except ValidationError as exc:
            return _error(400, f"invalid request: bad {_locations(exc.errors())}", "BadRequestError")
        except ImageDataUrlError as exc:  # our own messages: no request content in them
            return _error(400, str(exc), "BadRequestError")
        try:
            result = await backend.generate(request)
        except ModelError as exc:
            return _error(500, f"the model failed: {exc}", type(exc).__name__)
        completion = to_chat_completion(
            result, model=name, completion_id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time())
        )
        return completion.model_dump(mode="json")

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve a local model folder (or a freshly built tiny one) with the transformers backend."""
    import uvicorn

    from tools.medgemma.config import ModelConfig
    from tools.medgemma.factory import create_backend

    parser = argparse.ArgumentParser(prog="python -m tools.medgemma.serve_app", description=main.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="local model folder or hub id (already downloaded)")
    source.add_argument("--tiny", type=Path, help="build the tiny random-weight model here and serve it")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.tiny is not None:
        from tools.medgemma.tiny_model import build_tiny_medgemma

        model = str(build_tiny_medgemma(args.tiny))
    else:
        model = args.model
    config = ModelConfig(backend="transformers", name=model, device=args.device, dtype=args.dtype)
    backend = create_backend(config)
    if backend is None:  # not reachable with backend="transformers"
        raise SystemExit("no backend")
    print(f"serving {backend.info.name} at http://{args.host}:{args.port}/v1")
    try:
        uvicorn.run(create_app(backend), host=args.host, port=args.port, log_level="info")
    finally:
        asyncio.run(backend.aclose())


if __name__ == "__main__":
    main()
