"""Scanned pages through the lab-extraction task (scripted backend); cross-checks with the text layer."""

from __future__ import annotations

import asyncio
import json

import numpy as np

from tools.labs.pdf.drawing import write_pdf
from tools.labs.pdf.model_pages import extract_with_model
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.types import ImagePart

TABLE = [
    (40, 100, "Test"), (200, 100, "Result"), (250, 100, "Flag"), (300, 100, "Units"),
    (40, 115, "Potassium"), (200, 115, "5.9"), (250, 115, "H"), (300, 115, "mmol/L"),
    (40, 128, "Sodium"), (200, 128, "140"), (300, 128, "mmol/L"),
]  # fmt: skip


def answer(*results: dict[str, object]) -> str:
    return "```json\n" + json.dumps({"results": list(results)}) + "\n```"


def test_scanned_page_is_rendered_sent_and_kept_unverified() -> None:
    pdf = write_pdf([TABLE, []], image_pages=[1])
    backend = ScriptedBackend([answer({"name": "Hemoglobin", "value": 9.1, "unit": "g/dL", "flag": "L"})])
    got = asyncio.run(extract_with_model(pdf, backend, dpi=50))
    assert len(backend.requests) == 1
    images = [p for m in backend.requests[0].messages for p in m.content if isinstance(p, ImagePart)]
    assert len(images) == 1
    assert images[0].image.dtype == np.uint8
    assert images[0].image.shape[2] == 3
    (hgb,) = got.model_results
    assert (hgb.page, hgb.loinc, hgb.value, hgb.status) == (2, "718-7", 9.1, "unverified")
    assert [r.name for r in got.text.results] == ["Potassium", "Sodium"]  # grounded results untouched


def test_cross_check_flags_model_values_that_differ_from_the_text_layer() -> None:
    pdf = write_pdf([TABLE])
    backend = ScriptedBackend(
        [
            answer(
                {"name": "Potassium", "value": 5.9, "unit": "mmol/L", "flag": "H"},
                {"name": "Sodium", "value": 148, "unit": "mmol/L", "flag": "H"},
                {"name": "Chloride", "value": 101, "unit": "mmol/L"},
            )
        ]
    )
    got = asyncio.run(extract_with_model(pdf, backend, cross_check=True, dpi=50))
    statuses = {r.name: r.status for r in got.model_results}
    assert statuses == {"Potassium": "agrees", "Sodium": "disagrees", "Chloride": "not in text"}
    assert {r.name for r in got.flagged} == {"Sodium", "Chloride"}
    assert [r.value for r in got.text.results] == [5.9, 140.0]  # the text layer wins


def test_an_unreadable_answer_is_a_warning_for_that_page() -> None:
    pdf = write_pdf([TABLE, []], image_pages=[1])
    got = asyncio.run(extract_with_model(pdf, ScriptedBackend(["I cannot read this"]), dpi=50))
    assert got.model_results == ()
    assert got.warnings[0].startswith("page 2: the model's answer was not readable")


def test_no_model_call_when_every_page_has_text() -> None:
    backend = ScriptedBackend(["unused"])
    got = asyncio.run(extract_with_model(write_pdf([TABLE]), backend))
    assert backend.requests == []
    assert got.model_results == ()
