"""Every modality's request through the real in-process code path: the production loader on the
tiny random-weight Gemma 3 model, the processor, `generate`, and the task's strict parser.

The random model's words are meaningless, so each parse must end in a clean `ModelOutputError`
that keeps the raw text (or, by chance, a valid result); what is checked for real is the prompt
layout the processor sees: 256 image tokens per image, in order, and the token accounting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tools.imaging.geometry import Padding
from tools.medgemma.tasks import (
    ModelOutputError,
    cxr_comparison,
    cxr_localization,
    fact_qa,
    lab_extraction,
    run_task,
    slide_description,
    volume_findings,
)
from tools.medgemma.tiny_model import tiny_medgemma_path
from tools.medgemma.transformers_backend import TransformersBackend
from tools.medgemma.types import GenerationSettings, ModelRequest

pytestmark = pytest.mark.integration

SHORT = GenerationSettings(max_new_tokens=12)
MRI = volume_findings.VolumeModality.MRI


def images(n: int, size: int = 256) -> list[np.ndarray[Any, np.dtype[np.uint8]]]:
    rng = np.random.default_rng(n)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


CASES: dict[str, tuple[Callable[[], ModelRequest], Callable[[str], object], str]] = {
    "mri-findings": (
        lambda: volume_findings.build_request(images(3), modality=MRI, settings=SHORT),
        lambda t: volume_findings.parse(t, modality=MRI, slice_count=3),
        volume_findings.PROMPT_VERSION,
    ),
    "wsi-description": (
        lambda: slide_description.build_request(images(4), magnification="10X", settings=SHORT),
        slide_description.parse,
        slide_description.PROMPT_VERSION,
    ),
    "cxr-localize": (
        lambda: cxr_localization.build_request(images(1, 320)[0], settings=SHORT),
        lambda t: cxr_localization.parse(t, Padding.centred(320, 256)),
        cxr_localization.PROMPT_VERSION,
    ),
    "cxr-compare": (
        lambda: cxr_comparison.build_request(*images(2), settings=SHORT),
        cxr_comparison.parse,
        cxr_comparison.PROMPT_VERSION,
    ),
    "lab-pdf-pages": (
        lambda: lab_extraction.build_request(images(2), settings=SHORT),
        lab_extraction.parse,
        lab_extraction.PROMPT_VERSION,
    ),
    "fact-qa": (
        lambda: fact_qa.build_request(
            [fact_qa.Fact(id="obs1", text="Creatinine 1.8 mg/dL on 2026-05-13")], "Latest creatinine?",
            settings=SHORT,
        ),
        fact_qa.parse,
        fact_qa.PROMPT_VERSION,
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def backend() -> TransformersBackend:
    return TransformersBackend.from_pretrained(str(tiny_medgemma_path()), device="cpu")


@pytest.mark.parametrize("case", sorted(CASES))
async def test_every_task_runs_on_the_tiny_model(backend: TransformersBackend, case: str) -> None:
    build, parse, version = CASES[case]
    request = build()
    error: ModelOutputError | None = None
    try:
        result = (await run_task(backend, request, parse, prompt_version=version)).model_result
    except ModelOutputError as exc:
        error = exc
    if error is not None:
        assert error.raw_text is not None  # kept for audit
        assert error.model_result is not None
        result = error.model_result
    assert result.completion_tokens <= SHORT.max_new_tokens
    # 256 soft tokens per image (exactly: tests/unit/test_medgemma_tiny_model.py), plus the text.
    assert result.prompt_tokens > 256 * request.image_count
