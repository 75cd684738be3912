"""What every task result shares: the notes on what parsing tolerated, for audit."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TaskOutput(BaseModel):
    model_config = ConfigDict(frozen=True)

    # What the parser removed or repaired (thinking text, fences, a truncation closed...); empty
    # when the answer was exactly the JSON asked for.
    parse_notes: tuple[str, ...] = ()


class AnswerSchema(BaseModel):
    """Base of the JSON a task asks the model for: unknown keys are ignored, known ones validated."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)


__all__ = ["AnswerSchema", "TaskOutput"]
