"""OpenAIChatBackend end to end over real HTTP: `serve_app` in uvicorn on a loopback port,
serving the tiny random-weight MedGemma through the in-process transformers backend (the real
processor, chat template and image path; the text is meaningless). Images go as PNG data URLs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from prometheus_client import REGISTRY

from agent.testbed.stack.ports import free_port
from tools.medgemma.config import ModelConfig
from tools.medgemma.errors import ModelServerError
from tools.medgemma.factory import create_backend
from tools.medgemma.metrics import MeteredBackend
from tools.medgemma.openai_backend import OpenAIChatBackend
from tools.medgemma.serve_app import create_app
from tools.medgemma.tiny_model import build_tiny_medgemma
from tools.medgemma.transformers_backend import TransformersBackend
from tools.medgemma.types import GenerationSettings, ImagePart, Message, ModelInfo, ModelRequest, TextPart

pytestmark = pytest.mark.integration


class Served:
    """uvicorn on its own thread and event loop; the backend lives and is closed on that loop."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.info: ModelInfo | None = None
        self.server: uvicorn.Server | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="model-server", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start()
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        # Small image size keeps the test at seconds; the code path is the one of the 4B model.
        backend = TransformersBackend.from_pretrained(str(self.model_dir), device="cpu", dtype="float32")
        self.info = backend.info
        config = uvicorn.Config(
            create_app(backend), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        serving = asyncio.create_task(self.server.serve())
        while not self.server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has no event)
            await asyncio.sleep(0.02)
        self.ready.set()
        try:
            await serving
        finally:
            await backend.aclose()

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(120):
            raise TimeoutError("the model server did not start in 120 s")
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    model_dir = build_tiny_medgemma(
        tmp_path_factory.mktemp("tiny-medgemma"), image_size=224, image_seq_length=16
    )
    server = Served(model_dir)
    server.start()
    yield server
    server.stop()


def ct_like(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (64, 48, 3), dtype=np.uint8) for _ in range(n)]


def request(images: list[np.ndarray], *, max_new_tokens: int = 6) -> ModelRequest:
    parts: list[TextPart | ImagePart] = [TextPart(text="Describe the findings.")]
    for i, img in enumerate(images, 1):
        parts += [ImagePart(image=img), TextPart(text=f"SLICE {i}")]
    return ModelRequest(
        messages=(Message(role="user", content=tuple(parts)),),
        settings=GenerationSettings(max_new_tokens=max_new_tokens),
    )


def _generations() -> float:
    """The openai backend's generations counted so far (every finish reason but errors)."""
    return sum(
        REGISTRY.get_sample_value("chartagent_model_requests_total", {"backend": "openai", "outcome": o})
        or 0.0
        for o in ("stop", "length")
    )


async def test_generate_with_images_end_to_end(served: Served) -> None:
    assert served.info is not None
    config = ModelConfig(backend="openai", name=served.info.name, url=served.base_url)
    backend = create_backend(config)
    assert isinstance(backend, MeteredBackend)  # counted and timed (tools.medgemma.metrics)
    assert isinstance(backend.backend, OpenAIChatBackend)
    requests_before = _generations()
    async with backend:
        with_images = await backend.generate(request(ct_like(2)))
        text_only = await backend.generate(request([]))
        again = await backend.generate(request(ct_like(2)))
    # 16 image tokens per image reach the model: the images went through the processor.
    assert with_images.prompt_tokens >= text_only.prompt_tokens + 2 * 16
    assert 1 <= with_images.completion_tokens <= 6
    assert with_images.finish_reason in ("stop", "length")
    assert isinstance(with_images.text, str)
    assert again.text == with_images.text  # greedy: the same request gives the same text
    assert backend.info.backend == "openai"
    assert _generations() == requests_before + 3


async def test_concurrent_requests_and_listing(served: Served) -> None:
    assert served.info is not None
    async with OpenAIChatBackend(served.base_url, model=served.info.name, max_concurrency=4) as backend:
        results = await asyncio.gather(
            *(backend.generate(request(ct_like(1), max_new_tokens=3)) for _ in range(4))
        )
    assert len({r.text for r in results}) == 1
    async with httpx.AsyncClient() as http:
        listing = (await http.get(f"{served.base_url}/models")).json()
    assert [m["id"] for m in listing["data"]] == [served.info.name]


async def test_wrong_model_name_is_a_clear_404(served: Served) -> None:
    async with OpenAIChatBackend(served.base_url, model="not-served") as backend:
        with pytest.raises(ModelServerError, match=r"POST /v1/chat/completions -> HTTP 404.*not-served"):
            await backend.generate(request([]))
