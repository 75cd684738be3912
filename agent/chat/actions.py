"""What a planner may decide next (one action per step) and the answer's contract."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Action", "Answer", "AskResult", "CallTool", "CitedValue", "ProposeNote", "ToolCallEcho"]


class CallTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["call"] = "call"
    tool: str = Field(min_length=1, max_length=64)
    input: dict[str, Any] = Field(default_factory=dict)


class Answer(BaseModel):
    """The answer text; each factual sentence ends with the references it rests on, `[Observation/1]`."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["answer"] = "answer"
    answer: str = Field(min_length=1, max_length=6000)


class ProposeNote(BaseModel):
    """Save text to the chart: only ever a proposal, written after an explicit confirmation."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["propose_note"] = "propose_note"
    text: str = Field(min_length=1, max_length=6000)


Action = Annotated[CallTool | Answer | ProposeNote, Field(discriminator="action")]


class CitedValue(BaseModel):
    reference: str
    value: float | str | None = None
    time: str | None = None


class ToolCallEcho(BaseModel):
    tool: str
    input: dict[str, Any]


class AskResult(BaseModel):
    """What `chartagent ask --json` prints (a contract: keep the keys)."""

    answer: str
    citations: list[CitedValue]
    tool_calls: list[ToolCallEcho]
    model: str | None
    flags: list[str]
