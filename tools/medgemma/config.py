"""Which model ChartAgent uses, checked once at start-up (pure).

The deployment settings (`agent.settings.Settings`, env `CHARTAGENT_MODEL*`) are read through
the `ModelSettings` protocol so that `tools` never imports `agent`:

    CHARTAGENT_MODEL_BACKEND   none (default) | transformers | openai
    CHARTAGENT_MODEL           hub id or local folder (transformers), served model name (openai);
                               default google/medgemma-1.5-4b-it
    CHARTAGENT_MODEL_URL       openai only: the server's OpenAI base, e.g. http://127.0.0.1:8000/v1
    CHARTAGENT_MODEL_API_KEY   openai only, optional: sent as `Authorization: Bearer`; never logged
    CHARTAGENT_MODEL_DEVICE    transformers only, optional: cuda, cuda:1, cpu (default: cuda if present)
    CHARTAGENT_MODEL_DTYPE     optional: bfloat16 | float16 | float32; for openai it declares what the
                               server runs (it decides the text, so it is part of the model identity)
    CHARTAGENT_MODEL_REVISION  optional: the weights' commit, when the backend cannot tell
    CHARTAGENT_MODEL_TIMEOUT_S, CHARTAGENT_MODEL_MAX_CONCURRENCY  openai client limits
    CHARTAGENT_MODEL_COMPILE   transformers only: auto (default; static KV cache + compiled decoding
                               on CUDA, eager generate on CPU) | on | off (see static_decoding)

The default is `none`: the deterministic parts (record, trends, templated summary, write-back)
run without any model and say that model findings were skipped. A model that is configured
but incomplete or contradictory is a `ModelConfigurationError` at start-up, never a silent
fallback to no model.
"""

from __future__ import annotations

import ipaddress
from typing import Final, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr

from tools.medgemma.errors import ModelConfigurationError
from tools.medgemma.static_decoding import CompileMode

__all__ = ["DEFAULT_MODEL", "BackendKind", "ModelConfig", "ModelSettings"]

DEFAULT_MODEL: Final = "google/medgemma-1.5-4b-it"
BackendKind = Literal["transformers", "openai", "none"]


class ModelSettings(Protocol):
    """The model fields of the deployment settings (read-only view)."""

    @property
    def environment(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def model_backend(self) -> BackendKind: ...
    @property
    def model_url(self) -> str | None: ...
    @property
    def model_api_key(self) -> SecretStr | None: ...
    @property
    def model_device(self) -> str | None: ...
    @property
    def model_dtype(self) -> str | None: ...
    @property
    def model_revision(self) -> str | None: ...
    @property
    def model_timeout_s(self) -> float: ...
    @property
    def model_max_concurrency(self) -> int: ...
    @property
    def model_compile(self) -> CompileMode: ...


class ModelConfig(BaseModel):
    """A checked model configuration; build it with `from_settings` (or directly in tests)."""

    model_config = ConfigDict(frozen=True)

    backend: BackendKind = "none"
    name: str = DEFAULT_MODEL
    url: str | None = None
    api_key: SecretStr | None = None
    device: str | None = None
    dtype: Literal["bfloat16", "float16", "float32"] | None = None
    revision: str | None = None
    timeout_s: float = 120.0
    max_concurrency: int = 8
    compile: CompileMode = "auto"

    @classmethod
    def from_settings(cls, settings: ModelSettings) -> ModelConfig:
        """Check the settings; raises `ModelConfigurationError` saying what to set."""
        backend = settings.model_backend
        if backend == "none":
            return cls(backend="none", name=settings.model)
        name = settings.model.strip()
        if not name:
            raise ModelConfigurationError(f"CHARTAGENT_MODEL is empty; set it (default {DEFAULT_MODEL})")
        dtype = settings.model_dtype
        if dtype not in (None, "bfloat16", "float16", "float32"):
            raise ModelConfigurationError(
                f"CHARTAGENT_MODEL_DTYPE={dtype!r} is not one of bfloat16, float16, float32"
            )
        if backend == "transformers":
            if settings.model_url:
                raise ModelConfigurationError(
                    "CHARTAGENT_MODEL_URL is set but CHARTAGENT_MODEL_BACKEND=transformers runs the model "
                    "in-process: set CHARTAGENT_MODEL_BACKEND=openai to use the server, or unset the URL"
                )
            return cls(
                backend="transformers",
                name=name,
                device=settings.model_device,
                dtype=dtype,
                revision=settings.model_revision,
                compile=settings.model_compile,
            )
        if backend != "openai":
            raise ModelConfigurationError(
                f"CHARTAGENT_MODEL_BACKEND={backend!r} is not one of none, transformers, openai"
            )
        if settings.model_device:
            raise ModelConfigurationError(
                "CHARTAGENT_MODEL_DEVICE applies to the transformers backend only; "
                "an OpenAI-compatible server places the model itself: unset it"
            )
        if settings.model_compile == "on":
            raise ModelConfigurationError(
                "CHARTAGENT_MODEL_COMPILE=on applies to the transformers backend only; "
                "an OpenAI-compatible server decodes itself: unset it"
            )
        url = _check_url(settings.model_url, settings.environment)
        return cls(
            backend="openai",
            name=name,
            url=url,
            api_key=settings.model_api_key,
            dtype=dtype,
            revision=settings.model_revision,
            timeout_s=settings.model_timeout_s,
            max_concurrency=settings.model_max_concurrency,
        )

    def describe(self) -> str:
        """One line for start-up logs and CLI output; no key, no credentials."""
        if self.backend == "none":
            return (
                "no model configured (CHARTAGENT_MODEL_BACKEND=none): model findings are skipped, "
                "deterministic results only"
            )
        if self.backend == "openai":
            return f"model {self.name} on the OpenAI-compatible server {self.url}"
        where = f" on {self.device}" if self.device else ""
        dtype = f" ({self.dtype})" if self.dtype else ""
        return f"model {self.name}{dtype} in-process (transformers){where}"


def _check_url(url: str | None, environment: str) -> str:
    if not url:
        raise ModelConfigurationError(
            "CHARTAGENT_MODEL_BACKEND=openai needs CHARTAGENT_MODEL_URL: the server's OpenAI base, "
            "e.g. http://127.0.0.1:8000/v1 for vLLM or TGI"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelConfigurationError(
            "CHARTAGENT_MODEL_URL must be an absolute http(s) URL, e.g. http://127.0.0.1:8000/v1"
        )
    if parts.username or parts.password:
        raise ModelConfigurationError(
            "CHARTAGENT_MODEL_URL must not carry credentials; put the key in CHARTAGENT_MODEL_API_KEY"
        )
    if parts.query or parts.fragment:
        raise ModelConfigurationError("CHARTAGENT_MODEL_URL must not carry a query or fragment")
    # Prompts carry patient data: outside local they travel encrypted unless they stay on this host.
    if environment != "local" and parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ModelConfigurationError(
            "CHARTAGENT_MODEL_URL must be https:// outside the local environment (prompts carry "
            "patient data); plain http is allowed to a loopback address only"
        )
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
