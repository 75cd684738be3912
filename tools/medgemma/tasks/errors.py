"""The one error a task raises when the model's answer cannot be read strictly."""

from __future__ import annotations

from tools.medgemma.errors import ModelError
from tools.medgemma.types import ModelResult

# Raw text shown in messages is cut to this many characters; the full text stays on the error.
_PREVIEW = 200


class ModelOutputError(ModelError):
    """The model's answer to `task` could not be parsed; `raw_text` keeps the whole answer for audit.

    Parsers never guess: an answer that does not fit the task's schema is this error, with the
    reason naming what was wrong (where the JSON broke, which field failed validation). The message
    holds the reason only; the answer itself is in `raw_text`, for an audit trail, not for logs.
    """

    def __init__(
        self, task: str, reason: str, raw_text: str, *, model_result: ModelResult | None = None
    ) -> None:
        self.task = task
        self.reason = reason
        self.raw_text = raw_text
        # The backend's result (token counts, finish reason) when the error came from `run_task`.
        self.model_result = model_result
        super().__init__(f"{task}: cannot read the model's answer: {reason}")

    @property
    def preview(self) -> str:
        """The start of the raw answer, for a message a person reads (the full text is `raw_text`)."""
        text = self.raw_text.strip()
        return text if len(text) <= _PREVIEW else text[:_PREVIEW] + "..."


__all__ = ["ModelOutputError"]
