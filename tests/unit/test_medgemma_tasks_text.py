"""Whole-slide description, lab extraction, fact QA and running a task on a scripted backend."""

from __future__ import annotations

import numpy as np
import pytest

from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.tasks import ModelOutputError, fact_qa, lab_extraction, run_task, slide_description
from tools.medgemma.tasks.fact_qa import Fact
from tools.medgemma.tasks.lab_extraction import LabFlag
from tools.medgemma.types import GenerationSettings, ImagePart, TextPart


def patches(n: int) -> np.ndarray:
    return np.stack([np.full((6, 6, 3), k, dtype=np.uint8) for k in range(n)])


def test_slide_request_is_prompt_first_then_patches() -> None:
    (message,) = slide_description.build_request(patches(5), magnification="10X").messages
    prompt, *images = message.content
    assert isinstance(prompt, TextPart)
    assert "5 images below" in prompt.text
    assert "at 10X" in prompt.text
    assert [int(p.image[0, 0, 0]) for p in images if isinstance(p, ImagePart)] == [0, 1, 2, 3, 4]
    assert len(images) == 5


def test_slide_answers() -> None:
    good = '{"description": "Benign skin with a dermal nevus.", "findings": ["nevus cells", ""]}'
    result = slide_description.parse(f"```json\n{good}\n```")
    assert result.description == "Benign skin with a dermal nevus."
    assert result.findings == ("nevus cells",)
    truncated = '{"description": "Dense lymphoid infiltrate.", "findings": ["follicles",'
    assert slide_description.parse(truncated).findings == ("follicles",)
    for bad in ('{"findings": ["x"]}', "Looks like skin.", '{"description": "x", "findings": "y"}'):
        with pytest.raises(ModelOutputError) as info:
            slide_description.parse(bad)
        assert info.value.raw_text == bad


LABS = (
    '{"results": ['
    '{"name": "Hemoglobin", "value": 10.1, "unit": "g/dL", "reference_range": "12.0-16.0", "flag": "low"},'
    '{"name": "Glucose", "value": 250, "unit": "mg/dL", "reference_range": "70-99", "flag": "HH"},'
    '{"name": "HIV-1/2 Ab", "value": "Negative", "unit": null, "reference_range": "", "flag": null},'
    '{"name": "eGFR", "value": ">60", "unit": "mL/min/1.73m2"}'
    "]}"
)


def test_lab_request_labels_each_page() -> None:
    (message,) = lab_extraction.build_request(patches(2)).messages
    texts = [p.text for p in message.content if isinstance(p, TextPart)]
    assert texts[1:3] == ["PAGE 1", "PAGE 2"]
    assert '"reference_range"' in texts[-1]
    assert isinstance(message.content[1], ImagePart)


def test_lab_results_are_validated() -> None:
    result = lab_extraction.parse(f"<unused94>thought reading the table<unused95>Final Answer: {LABS}")
    rows = [(r.name, r.value, r.unit, r.reference_range, r.flag) for r in result.results]
    assert rows == [
        ("Hemoglobin", 10.1, "g/dL", "12.0-16.0", LabFlag.LOW),
        ("Glucose", 250.0, "mg/dL", "70-99", LabFlag.CRITICAL_HIGH),
        ("HIV-1/2 Ab", "Negative", None, None, None),
        ("eGFR", ">60", "mL/min/1.73m2", None, None),
    ]
    assert "thinking text removed" in result.parse_notes


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ('{"name": "", "value": 1}', "name"),
        ('{"name": "Na", "value": ""}', "value"),
        ('{"name": "Na", "value": true}', "value"),
        ('{"name": "Na", "value": 140, "flag": "very high"}', "flag"),
        ('{"name": "Na", "unit": "mmol/L"}', "value"),
    ],
)
def test_lab_schema_violations_are_errors(row: str, field: str) -> None:
    raw = f'{{"results": [{row}]}}'
    with pytest.raises(ModelOutputError, match=field) as info:
        lab_extraction.parse(raw)
    assert info.value.raw_text == raw


FACTS = [
    Fact(id="F1", text="HbA1c 8.1 % on 2026-05-01"),
    Fact(id="F2", text="Metformin 1000 mg\ntwice daily"),
]


def test_fact_request_puts_facts_then_question_last() -> None:
    (message,) = fact_qa.build_request(FACTS, "Is diabetes controlled?").messages
    (part,) = message.content
    assert isinstance(part, TextPart)
    text = part.text
    assert text.index("[F1] HbA1c 8.1 %") < text.index("[F2] Metformin 1000 mg twice daily")
    assert text.index("[F2]") < text.index("Question: Is diabetes controlled?")
    with pytest.raises(ValueError, match="unique"):
        fact_qa.build_request([FACTS[0], FACTS[0]], "q")


def test_fact_answers_cite_only_given_facts() -> None:
    ids = {f.id for f in FACTS}
    result = fact_qa.parse('{"answer": "Not at target.", "fact_ids": ["F1", "F1"]}', fact_ids=ids)
    assert (result.answer, result.fact_ids) == ("Not at target.", ("F1",))
    raw = '{"answer": "Yes.", "fact_ids": ["F9"]}'
    with pytest.raises(ModelOutputError, match=r"not given: \['F9'\]") as info:
        fact_qa.parse(raw, fact_ids=ids)
    assert info.value.raw_text == raw
    with pytest.raises(ModelOutputError):
        fact_qa.parse("Yes, it is controlled.")


async def test_run_task_returns_the_result_with_model_and_usage() -> None:
    backend = ScriptedBackend(['{"answer": "Not at target.", "fact_ids": ["F1"]}'])
    request = fact_qa.build_request(FACTS, "Is diabetes controlled?")
    run = await run_task(backend, request, fact_qa.parse, prompt_version=fact_qa.PROMPT_VERSION)
    assert run.result.fact_ids == ("F1",)
    assert run.model.backend == "fake"
    assert run.model_result.completion_tokens > 0
    assert run.prompt_version == "fact-qa/1"
    assert backend.requests == [request]


async def test_run_task_says_when_the_answer_hit_the_token_limit() -> None:
    backend = ScriptedBackend(['{"description": "a long answer that goes on", "findings": []}'])
    request = slide_description.build_request(patches(1), settings=GenerationSettings(max_new_tokens=3))
    with pytest.raises(ModelOutputError, match="max_new_tokens=3") as info:
        await run_task(backend, request, slide_description.parse, prompt_version="x")
    assert info.value.model_result is not None
    assert info.value.model_result.finish_reason == "length"
    assert info.value.raw_text == info.value.model_result.text
