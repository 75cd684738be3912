"""Pages without a text layer, read by MedGemma's lab-extraction task; cross-checks with the text.

``extract_with_model(pdf, backend)`` reads the text layer first (``extract_labs``), renders
each page listed in ``needs_model`` to an RGB image and sends it, one page per request, to
``tools.medgemma.tasks.lab_extraction``. With ``cross_check=True`` text-layer pages go to the
model as well and every model value is compared with the text layer on the same page.

Model values are kept apart from ``results``: they have no bbox (nothing in the document
locates them), so they are ``ModelReadLab`` records with a ``status``:

* ``unverified``: read from a page without text; a person must check it against the image.
* ``agrees``: the text layer prints the same test with the same value and flag on that page.
* ``disagrees`` / ``not in text``: flagged; the text layer wins.

Pages read by OCR (``tools.labs.pdf.ocr``: values with ``ocr`` set) always go to the model, and
an OCR value is kept in ``text.results`` only where the model reads the same test with the same
value and flag on that page (``agrees``). Any other OCR value (the model reads another value, or
none, or its answer is unreadable) moves to ``text.unparsed`` for review and its page to
``needs_model``; what the model reads there and OCR did not write is ``unverified``.
"""

from __future__ import annotations

import math
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tools.labs.loinc_catalog import normalize_name, resolve
from tools.labs.pdf.model import ExtractedLab, LabPdfExtraction, UnparsedRow
from tools.labs.pdf.reader import DEFAULT_MAX_PAGES, extract_labs, open_pdf
from tools.labs.pdf.rendering import DEFAULT_DPI, MAX_RENDER_PIXELS, render_dpi, render_page
from tools.medgemma.tasks import lab_extraction
from tools.medgemma.tasks.errors import ModelOutputError
from tools.medgemma.tasks.lab_extraction import LabFlag, LabResult
from tools.medgemma.tasks.runner import run_task
from tools.medgemma.types import ModelBackend

__all__ = [
    "MAX_RENDER_PIXELS",
    "ModelAssistedExtraction",
    "ModelReadLab",
    "compare",
    "extract_with_model",
    "ocr_values_to_review",
    "render_dpi",
    "render_page",
]

Status = Literal["unverified", "agrees", "disagrees", "not in text"]


class ModelReadLab(BaseModel):
    """A result the model read from a page image; never grounded by a bbox."""

    model_config = ConfigDict(frozen=True)

    page: int
    name: str
    loinc: str | None
    value: float | str
    unit: str | None
    reference_range: str | None
    flag: LabFlag | None
    status: Status
    detail: str | None = None


class ModelAssistedExtraction(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: LabPdfExtraction
    model_results: tuple[ModelReadLab, ...]
    warnings: tuple[str, ...] = ()

    @property
    def flagged(self) -> tuple[ModelReadLab, ...]:
        return tuple(r for r in self.model_results if r.status in ("disagrees", "not in text"))


def _same_value(a: float | str, b: float | str) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return str(a).strip().casefold() == str(b).strip().casefold()


def _key(name: str, unit: str | None) -> str:
    found = resolve(name, unit=unit)
    return found.loinc or normalize_name(name)


def _match(read: LabResult, printed: list[ExtractedLab]) -> ExtractedLab | None:
    key = _key(read.name, read.unit)
    return next((p for p in printed if (p.loinc or normalize_name(p.name)) == key), None)


def compare(page: int, read: LabResult, printed: list[ExtractedLab]) -> ModelReadLab:
    """The model's ``read`` of ``page`` against the text layer's results printed on that page."""
    match = _match(read, printed)
    status: Status
    detail = None
    if match is None:
        status = "not in text"
    elif not _same_value(read.value, match.value):
        status, detail = "disagrees", f"text layer prints {match.value_text!r}"
    elif (read.flag or None) != (match.flag or None) and not (
        read.flag is LabFlag.NORMAL and match.flag is None
    ):
        status, detail = "disagrees", f"text layer flag {match.flag}"
    else:
        status = "agrees"
    return ModelReadLab(
        page=page,
        name=read.name,
        loinc=resolve(read.name, unit=read.unit).loinc,
        value=read.value,
        unit=read.unit,
        reference_range=read.reference_range,
        flag=read.flag,
        status=status,
        detail=detail,
    )


async def extract_with_model(
    source: str | Path | bytes,
    backend: ModelBackend,
    *,
    cross_check: bool = False,
    dpi: int = DEFAULT_DPI,
    max_pages: int = DEFAULT_MAX_PAGES,
    name: str | None = None,
    text: LabPdfExtraction | None = None,
) -> ModelAssistedExtraction:
    """Text layer first; pages without text (and, with ``cross_check``, all pages) through the model.

    ``text``: ``extract_labs``'s result for ``source`` when the caller has it (it is not read again:
    OCR costs a second or so a page).
    """
    if text is None:
        text = extract_labs(source, max_pages=max_pages, name=name)
    ocr_pages = {r.page for r in text.results if r.ocr}
    pages = list(range(1, text.page_count + 1)) if cross_check else sorted({*text.needs_model, *ocr_pages})
    confirmed: set[int] = set()  # ids of the OCR results the model reads alike
    read: list[ModelReadLab] = []
    warnings: list[str] = []
    if not pages:
        return ModelAssistedExtraction(text=text, model_results=())
    doc, _ = open_pdf(source, name=name)
    try:
        for number in pages:
            page = doc[number - 1]
            used = render_dpi(page.rect.width, page.rect.height, dpi)
            if used < dpi:
                warnings.append(
                    f"page {number} is {page.rect.width:.0f} x {page.rect.height:.0f} pt: rendered at "
                    f"{used} dpi to stay under {MAX_RENDER_PIXELS:,} pixels"
                )
            request = lab_extraction.build_request(render_page(page, dpi))
            try:
                run = await run_task(
                    backend, request, lab_extraction.parse, prompt_version=lab_extraction.PROMPT_VERSION
                )
            except ModelOutputError as exc:
                warnings.append(f"page {number}: the model's answer was not readable ({exc.reason})")
                continue
            printed = [r for r in text.results if r.page == number]
            for result in run.result.results:
                if number in ocr_pages:
                    checked = compare(number, result, printed)
                    if checked.status == "agrees":
                        confirmed.add(id(_match(result, printed)))
                    elif checked.status == "not in text":  # OCR left it for review: the model's reading too
                        checked = checked.model_copy(update={"status": "unverified"})
                    read.append(checked)
                elif number in text.needs_model:
                    read.append(
                        ModelReadLab(
                            page=number,
                            name=result.name,
                            loinc=resolve(result.name, unit=result.unit).loinc,
                            value=result.value,
                            unit=result.unit,
                            reference_range=result.reference_range,
                            flag=result.flag,
                            status="unverified",
                        )
                    )
                else:
                    read.append(compare(number, result, printed))
    finally:
        doc.close()
    text = ocr_values_to_review(text, confirmed)
    return ModelAssistedExtraction(text=text, model_results=tuple(read), warnings=tuple(warnings))


def ocr_values_to_review(
    text: LabPdfExtraction, confirmed: AbstractSet[int] = frozenset()
) -> LabPdfExtraction:
    """``text`` with every OCR value the model did not read alike (whose ``id`` is not in
    ``confirmed``) moved to ``unparsed`` for review; with nothing confirmed (the model failed), all."""
    doubtful = [r for r in text.results if r.ocr and id(r) not in confirmed]
    if not doubtful:
        return text
    review = [
        UnparsedRow(
            page=r.page,
            text=f"{r.name} {r.value_text}",
            reason="read by OCR, not confirmed by the model: for review",
            bbox=r.bbox,
        )
        for r in doubtful
    ]
    return text.model_copy(
        update={
            "results": tuple(r for r in text.results if not (r.ocr and id(r) not in confirmed)),
            "unparsed": (*text.unparsed, *review),
            "needs_model": tuple(sorted({*text.needs_model, *(r.page for r in doubtful)})),
            "warnings": (
                *text.warnings,
                *(
                    f"page {r.page}: {r.name} read by OCR, not confirmed by the model: for review"
                    for r in doubtful
                ),
            ),
        }
    )
