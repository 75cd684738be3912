"""Checks of an answer against what was retrieved (pure).

A citation is a FHIR reference in brackets, `[Observation/123]`, after the sentence it supports.
- A cited reference that no tool returned in this conversation is removed, and the answer flagged.
- A number of the answer that no tool result holds is flagged (as the synthesis node checks).
- A sentence that states a number without any citation is flagged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from agent.prompts.summary import unsupported_numbers
from tools.registry.model import Citation

__all__ = ["CheckedAnswer", "check_answer", "known_text"]

# "[Observation/abc-1]" and "[Observation/abc-1, Condition/2]"
_BRACKETS: Final = re.compile(r"\[((?:[A-Z][A-Za-z]+/[A-Za-z0-9.\-]{1,64}(?:\s*[,;]\s*)?)+)\]")
_REFERENCE: Final = re.compile(r"[A-Z][A-Za-z]+/[A-Za-z0-9.\-]{1,64}")
_SENTENCE_END: Final = re.compile(r"(?<=[.!?])\s+(?=\S)|\n+")
_DIGIT: Final = re.compile(r"\d")


@dataclass
class CheckedAnswer:
    text: str
    cited: list[str] = field(default_factory=list)  # references kept, in order of first citation
    removed: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def known_text(citations: Mapping[str, Citation], fact_texts: Iterable[str]) -> str:
    """All text a number of the answer may come from: the facts and the cited values and times."""
    values = [f"{c.value} {c.time or ''}" for c in citations.values() if c.value is not None or c.time]
    return "\n".join([*fact_texts, *values])


def check_answer(answer: str, retrieved: Mapping[str, Citation], known: str) -> CheckedAnswer:
    out = CheckedAnswer(text=answer)

    def keep_known(match: re.Match[str]) -> str:
        refs = _REFERENCE.findall(match.group(1))
        kept = []
        for ref in refs:
            if ref in retrieved:
                kept.append(ref)
                if ref not in out.cited:
                    out.cited.append(ref)
            elif ref not in out.removed:
                out.removed.append(ref)
        return f"[{', '.join(kept)}]" if kept else ""

    text = _BRACKETS.sub(keep_known, answer)
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", text)).strip()
    out.text = text
    if out.removed:
        out.flags.append(
            f"removed {len(out.removed)} citation(s) of resources not retrieved in this conversation: "
            + ", ".join(out.removed)
        )
    bare = _BRACKETS.sub(" ", text)
    extra = unsupported_numbers(bare, known)
    if extra:
        out.flags.append(
            f"{len(extra)} number(s) in the answer are not in any tool result: {', '.join(extra)}"
        )
    uncited = [
        s
        for s in _SENTENCE_END.split(text)
        if _DIGIT.search(_BRACKETS.sub("", s)) and not _BRACKETS.search(s)
    ]
    if uncited:
        out.flags.append(f"{len(uncited)} sentence(s) with numbers cite nothing")
    return out
