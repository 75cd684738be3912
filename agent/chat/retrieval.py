"""The chat without a language model: the facts that match the question, with their citations.

Pure. The question's words choose the tools: an analyte name or LOINC code (the lab-PDF catalog's
synonyms and the analyte table) -> its lab series; modality words -> imaging studies; condition or
medication words -> the problem and medication lists; document words -> lab-report documents.
Date words choose which facts are shown: "latest"/"last"/"current" -> the newest value only; a
year -> facts of that year; otherwise latest, previous and trend.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from agent.chat.actions import Action, Answer, CallTool
from agent.chat.view import PlanView
from tools.labs.analytes import ANALYTES
from tools.labs.loinc_catalog import normalize_name, resolve
from tools.registry import ToolResult

__all__ = ["NO_MODEL_NOTE", "RetrievalPlanner", "retrieval_answer", "retrieval_calls"]

NO_MODEL_NOTE: Final = (
    "No language model is configured: these are the facts of the record that match the question."
)
_LOINC: Final = re.compile(r"\b\d{1,7}-\d\b")
_YEAR: Final = re.compile(r"\b(19|20)\d{2}\b")
_LATEST: Final = frozenset({"latest", "last", "current", "recent", "most", "newest", "now", "today"})
_TREND: Final = frozenset(
    {"trend", "trends", "history", "over", "since", "all", "changed", "change", "series"}
)
_MODALITIES: Final = {
    "ct": "CT",
    "mri": "MR",
    "mr": "MR",
    "xray": "CR",
    "x-ray": "CR",
    "radiograph": "CR",
    "cxr": "CR",
    "slide": "SM",
    "pathology": "SM",
    "biopsy": "SM",
}
_IMAGING: Final = frozenset({"imaging", "scan", "scans", "study", "studies", "image", "images", *_MODALITIES})
_CONDITIONS: Final = frozenset(
    {"condition", "conditions", "diagnosis", "diagnoses", "problem", "problems", "disease", "history"}
)
_MEDICATIONS: Final = frozenset(
    {"medication", "medications", "meds", "drug", "drugs", "prescription", "taking"}
)
_DOCUMENTS: Final = frozenset({"report", "reports", "pdf", "document", "documents"})


def _words(question: str) -> list[str]:
    return re.findall(r"[a-z0-9][a-z0-9\-]*", question.lower())


def _analytes(question: str) -> list[str]:
    """Names in the question that mean a lab test, one per LOINC code, in order of mention."""
    words = _words(question)
    found: dict[str, str] = {}
    for code in _LOINC.findall(question):
        found.setdefault(code, code)
    displays = {normalize_name(a.display): a.key for a in ANALYTES} | {a.key: a.key for a in ANALYTES}
    for size in (3, 2, 1):
        for i in range(len(words) - size + 1):
            phrase = " ".join(words[i : i + size])
            if len(phrase) < 2:
                continue
            key = displays.get(normalize_name(phrase))
            entry = resolve(phrase).entry
            code = entry.loinc if entry is not None else key
            if code is not None and not any(phrase in p for p in found.values()):
                found.setdefault(code, phrase)
    return list(found.values())


def retrieval_calls(question: str) -> list[CallTool]:
    words = set(_words(question))
    calls = [CallTool(tool="lab_trend", input={"analyte": a}) for a in _analytes(question)]
    if words & _IMAGING:
        modalities = sorted({_MODALITIES[w] for w in words if w in _MODALITIES})
        if len(modalities) == 1:
            calls.append(CallTool(tool="list_imaging_studies", input={"modality": modalities[0]}))
        else:
            calls.append(CallTool(tool="list_imaging_studies", input={}))
    if words & (_CONDITIONS | _MEDICATIONS):
        calls.append(CallTool(tool="conditions_and_medications", input={}))
    if words & _DOCUMENTS and not calls:
        calls.append(CallTool(tool="search_resources", input={"resource_type": "DocumentReference"}))
    return calls


def _shown(result: ToolResult, words: set[str], years: set[str]) -> list[str]:
    lines = []
    for fact in result.facts:
        times = [c.time or "" for c in fact.citations]
        if years and not any(t[:4] in years for t in times):
            continue
        if result.tool == "lab_trend" and not years:
            latest_only = bool(words & _LATEST) and not words & _TREND
            if latest_only and not fact.text.startswith("Latest "):
                continue
            # Without date words: the latest, the previous and the trend line (not every point).
            if (
                not words & _TREND
                and not fact.text.startswith(("Latest ", "Previous "))
                and " trend " not in fact.text
            ):
                continue
        refs = ", ".join(dict.fromkeys(c.reference for c in fact.citations))
        lines.append(f"- {fact.text} [{refs}]" if refs else f"- {fact.text}")
    return lines


def retrieval_answer(question: str, results: Sequence[ToolResult]) -> str:
    words = set(_words(question))
    years = {m.group(0) for m in _YEAR.finditer(question)}
    lines: list[str] = []
    for result in results:
        if result.tool == "record_manifest" and len(results) > 1:
            continue  # the manifest only chose the tools; it answers nothing asked
        if not result.ok:
            lines.append(f"- {result.tool} could not run: {result.error}")
            continue
        shown = _shown(result, words, years)
        lines += shown
        if not shown and result.note:
            lines.append(f"- {result.tool}: {result.note}")
    if not lines:
        lines.append("- nothing in the record matches the question's words")
    return NO_MODEL_NOTE + "\n" + "\n".join(lines)


class RetrievalPlanner:
    """Calls the tools the question's words choose, then answers with the matching facts."""

    name: str | None = None

    async def next_action(self, view: PlanView) -> Action:
        done = view.called()
        for call in retrieval_calls(view.question):
            if (call.tool, repr(sorted(call.input.items()))) not in done:
                return call
        return Answer(answer=retrieval_answer(view.question, view.results))
