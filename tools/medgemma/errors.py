"""One error hierarchy for the MedGemma runtime.

Messages name the backend, the server path and the HTTP status; they never carry the prompt,
the images, the model's answer or an API key, so they are safe to log and to show an agent.
"""

from __future__ import annotations

from fhir_adapters.error_tree import (
    ChartAgentError,
    ConfigurationError,
    ServiceHttpError,
    ServiceProtocolError,
    ServiceTransportError,
)

__all__ = [
    "ModelConfigurationError",
    "ModelError",
    "ModelProtocolError",
    "ModelServerError",
    "ModelTransportError",
]


class ModelError(ChartAgentError):
    """Base of every error raised by `tools.medgemma`; server failures and configuration problems
    also take their branch of the tree (`fhir_adapters.error_tree`)."""


class ModelConfigurationError(ModelError, ConfigurationError):
    """The model settings are incomplete or contradictory (raised at start-up, says what to set)."""


class ModelServerError(ModelError, ServiceHttpError):
    """A model server answered with an error status."""

    def __init__(self, status: int, path: str, detail: str | None = None, hint: str | None = None) -> None:
        self.path = path
        self.detail = detail
        message = f"POST {path} -> HTTP {status}"
        if detail:
            message += f": {detail}"
        if hint:
            message += f" ({hint})"
        super().__init__(status, message)


class ModelTransportError(ModelError, ServiceTransportError):
    """The model server could not be reached, or did not answer in time."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"POST {path} failed: {reason}")


class ModelProtocolError(ModelError, ServiceProtocolError):
    """The server answered 2xx with something that is not an OpenAI chat completion."""
