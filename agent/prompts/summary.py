"""The lab-trend summary prompt (pure): computed facts in, a short clinician-facing text out.

The EHR-navigator pattern: the model sees only facts that ChartAgent computed (the templated
summary's lines: values, units, dates, directions), then the instruction. Its answer is checked
before it is used: every number in it must be one of the facts' numbers, it must be complete
(not cut at max_new_tokens), and non-empty. A model cannot add a value to the chart this way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from tools.medgemma.types import GenerationSettings, Message, ModelInfo, ModelRequest, ModelResult, TextPart
from tools.narrative import HEADER, render_summary
from tools.trends import ALGORITHM_REVISION, ENGINE_NAME, Trend

__all__ = [
    "PROMPT_VERSION",
    "SETTINGS",
    "build_summary_request",
    "facts_text",
    "model_narrative",
    "rejection_reason",
    "unsupported_numbers",
]

# Part of the model identity, hence of every identifier the summary gets: change it with the text.
PROMPT_VERSION: Final = "lab-trend-summary/1"
# Greedy: the same facts give the same text, so a rerun writes nothing new.
SETTINGS: Final = GenerationSettings(max_new_tokens=400, temperature=0.0)

INSTRUCTION: Final = (
    "TASK: Write a short summary of these facts for the treating clinician, in at most five "
    "sentences of plain text. Mention worsened results first, then improved ones, then say "
    "briefly what is stable. Use only the facts above: add no numbers, dates, units, diagnoses, "
    "causes or recommendations that are not in them, and do not compute new values."
)
_NUMBER: Final = re.compile(r"\d+(?:\.\d+)?")


def facts_text(trends: Sequence[Trend], *, as_of: datetime) -> str:
    """The computed facts as text: the templated summary without its header."""
    rendered = render_summary(None, trends, as_of=as_of)
    if not rendered.startswith(HEADER + "\n"):
        raise ValueError("the templated summary no longer starts with its header")
    return rendered[len(HEADER) + 1 :].strip()


def build_summary_request(trends: Sequence[Trend], *, as_of: datetime) -> ModelRequest:
    text = (
        "You summarise laboratory trends that were computed from one patient's results.\n\n"
        "FACTS (the only information you have):\n"
        f"{facts_text(trends, as_of=as_of)}\n\n"
        f"{INSTRUCTION}"
    )
    return ModelRequest(messages=(Message(role="user", content=(TextPart(text=text),)),), settings=SETTINGS)


def unsupported_numbers(answer: str, facts: str) -> list[str]:
    """Numbers in `answer` that are not numbers of `facts` (compared as values: 02 == 2)."""
    known = {float(n) for n in _NUMBER.findall(facts)}
    return [n for n in _NUMBER.findall(answer) if float(n) not in known]


def rejection_reason(result: ModelResult, facts: str) -> str | None:
    """Why the model's answer cannot be the narrative, or None when it can. Never quotes the answer."""
    text = result.text.strip()
    if result.finish_reason == "length":
        return f"the answer was cut at max_new_tokens ({SETTINGS.max_new_tokens})"
    if result.finish_reason != "stop":
        return "the model did not finish its answer"
    if not text:
        return "the answer is empty"
    if "<unused" in text or "<start_of_turn>" in text or "<end_of_turn>" in text:
        return "the answer holds control tokens"
    extra = unsupported_numbers(text, facts)
    if extra:
        return f"the answer has {len(extra)} number(s) that are not in the computed facts"
    return None


def model_narrative(answer: str, info: ModelInfo, *, as_of: datetime) -> str:
    """The narrative written back: the AI-generated header, then the model's text."""
    header = (
        f"AI-generated lab trend summary, written by the language model {info.name} from trends "
        f"computed by {ENGINE_NAME} (rule revision {ALGORITHM_REVISION}). Not reviewed: verify "
        "against the source results before clinical use."
    )
    return f"{header}\nResults up to {as_of.date().isoformat()}.\n\n{answer.strip()}\n"
