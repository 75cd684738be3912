"""Question answering over facts (the EHR navigator pattern): fact lines in, answer + cited ids out.

Prompt layout: the instruction, the facts one per line as `[id] text`, then the question last.
The answer asked for is JSON:
    {"answer": "...", "fact_ids": ["F2", "F7"]}
Every cited id must be one of the facts given (when `parse` is told them); citing none is allowed
(the prompt asks the model to say so when the facts do not answer the question).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tools.medgemma.tasks.errors import ModelOutputError
from tools.medgemma.tasks.output import AnswerSchema, TaskOutput
from tools.medgemma.tasks.parsing import extract_json, validate
from tools.medgemma.tasks.prompting import fenced_json_instruction, text, user_request
from tools.medgemma.types import GenerationSettings, ModelRequest

TASK = "fact-qa"
PROMPT_VERSION = "fact-qa/1"
DEFAULT_SETTINGS = GenerationSettings(max_new_tokens=512)

_FORMAT = fenced_json_instruction('{"answer": "...", "fact_ids": ["F1", "F3"]}') + (
    "\nCite in fact_ids the ids of every fact the answer rests on. If the facts do not answer the "
    'question, say so in "answer" and cite none. Use no knowledge beyond the facts.'
)


class Fact(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    text: str = Field(min_length=1)

    @field_validator("text")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return " ".join(value.split())


class _Answer(AnswerSchema):
    answer: str = Field(min_length=1)
    fact_ids: tuple[str, ...]


class FactAnswer(TaskOutput):
    answer: str
    fact_ids: tuple[str, ...]


def build_request(
    facts: Sequence[Fact],
    question: str,
    *,
    thinking: bool = False,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> ModelRequest:
    """Instruction, the facts as `[id] text` lines, then the question and the answer format last."""
    ids = [f.id for f in facts]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{TASK}: fact ids must be unique")
    if not question.strip():
        raise ValueError(f"{TASK}: the question is empty")
    lines = "\n".join(f"[{f.id}] {f.text}" for f in facts) or "(no facts)"
    intro = "You answer questions about one patient's health record using only the facts below."
    prompt = f"{intro}\n\nFacts:\n{lines}\n\nQuestion: {question.strip()}\n\n{_FORMAT}"
    return user_request([text(prompt)], settings=settings, thinking=thinking)


def parse(raw_text: str, *, fact_ids: Collection[str] | None = None) -> FactAnswer:
    """The answer and its citations; a citation of a fact that was not given is an error."""
    parsed = extract_json(raw_text, TASK)
    answer = validate(_Answer, parsed.value, task=TASK, raw_text=raw_text)
    if fact_ids is not None:
        unknown = [i for i in answer.fact_ids if i not in fact_ids]
        if unknown:
            raise ModelOutputError(TASK, f"cites facts that were not given: {unknown}", raw_text)
    cited = tuple(dict.fromkeys(answer.fact_ids))
    return FactAnswer(answer=answer.answer, fact_ids=cited, parse_notes=parsed.notes)


__all__ = ["DEFAULT_SETTINGS", "PROMPT_VERSION", "TASK", "Fact", "FactAnswer", "build_request", "parse"]
