"""The lab-trend summary prompt (pure): computed facts in, a short clinician-facing text out.

The EHR-navigator pattern: the model sees only facts that ChartAgent computed (the templated
summary's lines: values, units, dates, directions), then the instruction. Its answer is checked
before it is used: every number in it must be one of the facts' numbers, it must be complete
(not cut at max_new_tokens), non-empty, and readable prose (no control tokens, no control or
invalid characters, no JSON or code, words of letters). A model cannot add a value to the chart
this way, and a malformed answer gives the templated narrative instead (`rejection_reason`).
"""

from __future__ import annotations

import re
import unicodedata
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
# Gemma's special tokens, leaked into the text when a server does not skip them.
_SPECIAL_TOKEN: Final = re.compile(
    r"<(?:unused\d+|start_of_turn|end_of_turn|start_of_image|end_of_image|image_soft_token|bos|eos|pad)>"
)
_WORD: Final = re.compile(r"[^\W\d_]{2,}")
# Five sentences of plain text: far below this; more is not the answer that was asked for.
MAX_ANSWER_CHARS: Final = 3000
_MAX_WORD_CHARS: Final = 60
_MIN_WORDS: Final = 3


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
    if _SPECIAL_TOKEN.search(text):
        return "the answer holds control tokens"
    malformed = _malformed(text)
    if malformed is not None:
        return malformed
    extra = unsupported_numbers(text, facts)
    if extra:
        return f"the answer has {len(extra)} number(s) that are not in the computed facts"
    return None


def _malformed(text: str) -> str | None:
    """Why `text` is not readable prose, or None. Never quotes it."""
    if len(text) > MAX_ANSWER_CHARS:
        return f"the answer is longer than {MAX_ANSWER_CHARS} characters"
    for c in text:
        category = unicodedata.category(c)
        if c == "\ufffd" or category in ("Cs", "Co") or (category == "Cc" and c not in "\n\t\r"):
            return "the answer holds control or invalid characters"
    if text[0] in "{[<" or text.startswith("```"):
        return "the answer is not plain text (JSON, markup or code)"
    if len(_WORD.findall(text)) < _MIN_WORDS:
        return f"the answer is not prose (fewer than {_MIN_WORDS} words)"
    if any(len(w) > _MAX_WORD_CHARS for w in text.split()):
        return f"the answer is not prose (a word longer than {_MAX_WORD_CHARS} characters)"
    return None


def model_narrative(answer: str, info: ModelInfo, *, as_of: datetime) -> str:
    """The narrative written back: the AI-generated header, then the model's text."""
    header = (
        f"AI-generated lab trend summary, written by the language model {info.name} from trends "
        f"computed by {ENGINE_NAME} (rule revision {ALGORITHM_REVISION}). Not reviewed: verify "
        "against the source results before clinical use."
    )
    return f"{header}\nResults up to {as_of.date().isoformat()}.\n\n{answer.strip()}\n"
