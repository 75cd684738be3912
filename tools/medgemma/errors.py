"""One error hierarchy for the MedGemma runtime.

Messages name the backend, the server path and the HTTP status; they never carry the prompt,
the images, the model's answer or an API key, so they are safe to log and to show an agent.
"""

from __future__ import annotations

__all__ = [
    "ModelConfigurationError",
    "ModelError",
    "ModelProtocolError",
    "ModelServerError",
    "ModelTransportError",
]


class ModelError(Exception):
    """Base of every error raised by `tools.medgemma`."""


class ModelConfigurationError(ModelError):
    """The model settings are incomplete or contradictory (raised at start-up, says what to set)."""


class ModelServerError(ModelError):
    """A model server answered with an error status."""

    def __init__(self, status: int, path: str, detail: str | None = None, hint: str | None = None) -> None:
        self.status = status
        self.path = path
        self.detail = detail
        message = f"POST {path} -> HTTP {status}"
        if detail:
            message += f": {detail}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class ModelTransportError(ModelError):
    """The model server could not be reached, or did not answer in time."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"POST {path} failed: {reason}")


class ModelProtocolError(ModelError):
    """The server answered 2xx with something that is not an OpenAI chat completion."""
