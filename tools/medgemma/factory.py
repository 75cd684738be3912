"""The model backend the settings ask for: `create_backend(settings) -> ModelBackend | None`.

None means no model is configured (the default); every other outcome is a working backend or
an error at start-up: `ModelConfigurationError` for incomplete settings, the loader's
`ModelNotAvailableError` when the weights are not on this machine. The scripted fake is never
chosen here: tests construct it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tools.medgemma.config import ModelConfig, ModelSettings
from tools.medgemma.errors import ModelConfigurationError
from tools.medgemma.metrics import MeteredBackend
from tools.medgemma.openai_backend import OpenAIChatBackend
from tools.medgemma.types import ModelBackend

__all__ = ["create_backend", "open_backend"]


def create_backend(settings: ModelSettings | ModelConfig) -> ModelBackend | None:
    """Build the configured backend. The transformers backend loads the weights here (seconds
    to minutes) and, with compiled decoding, compiles its decode step; so call this once at
    start-up and share the backend (it is concurrency-safe)."""
    config = settings if isinstance(settings, ModelConfig) else ModelConfig.from_settings(settings)
    if config.backend == "none":
        return None
    return MeteredBackend(_configured(config))


def _configured(config: ModelConfig) -> ModelBackend:
    if config.backend == "openai":
        if config.url is None:
            raise ModelConfigurationError("the openai backend needs a URL (CHARTAGENT_MODEL_URL)")
        return OpenAIChatBackend(
            config.url,
            model=config.name,
            api_key=config.api_key,
            timeout=config.timeout_s,
            max_concurrency=config.max_concurrency,
            revision=config.revision,
            dtype=config.dtype,
        )
    # Imported here: torch and transformers take seconds to import and are not needed otherwise.
    from tools.medgemma.transformers_backend import TransformersBackend

    # One model per process, shared by every backend over it; missing weights raise the
    # loader's ModelNotAvailableError, which says how to get them.
    backend = TransformersBackend.from_pretrained(
        config.name, device=config.device, dtype=config.dtype, compile=config.compile
    )
    backend.warm_up()  # compiles the decode step now (a minute or two on a GPU), not in a request
    return backend


@asynccontextmanager
async def open_backend(settings: ModelSettings | ModelConfig) -> AsyncIterator[ModelBackend | None]:
    """`create_backend` for an `async with` block that closes the backend at its end."""
    backend = create_backend(settings)
    try:
        yield backend
    finally:
        if backend is not None:
            await backend.aclose()
