"""OCR off the event loop: ``extract_labs_async`` runs Tesseract on the OCR threads, so the loop (a
job's other patients, the service's other requests) runs on while a scanned page is read; the
steps' driver closes the document when cancelled, and both drivers read the same values."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator

import pytest
from test_labpdf_ocr import scanned

from tools.labs.pdf import extract_labs, extract_labs_async, ocr
from tools.labs.pdf.ocr import OcrRead, OcrRequest


def test_async_reading_matches_the_synchronous_one() -> None:
    pdf = scanned()[0]
    assert asyncio.run(extract_labs_async(pdf)) == extract_labs(pdf)


def test_the_loop_runs_on_while_tesseract_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The OCR of a page waits for a coroutine scheduled on the loop to run: with the OCR on the
    loop's own thread that would never happen (the wait gives up and the test fails)."""
    real = ocr.run_ocr
    seen: list[tuple[bool, bool]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        async def probe() -> bool:
            return True

        def run_ocr(request: OcrRequest) -> OcrRead:
            ran = asyncio.run_coroutine_threadsafe(probe(), loop)
            try:
                loop_free = ran.result(timeout=10)
            except TimeoutError:
                loop_free = False
            seen.append((threading.get_ident() != loop_thread, loop_free))
            return real(request)

        monkeypatch.setattr(ocr, "run_ocr", run_ocr)
        got = await extract_labs_async(scanned()[0])
        assert any(lab.ocr for lab in got.results), got.warnings

    asyncio.run(main())
    assert seen == [(True, True)]


def test_a_cancelled_reading_closes_its_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[bool] = []
    started = threading.Event()
    release = threading.Event()

    def steps() -> Generator[OcrRequest, OcrRead, str]:
        try:
            yield OcrRequest(ocr_engine(), 1, b"\xff", 1, 1, 300, 1.0, 1.0)
            return "read"
        finally:
            closed.append(True)

    def slow_ocr(request: OcrRequest) -> OcrRead:
        started.set()
        release.wait(10)
        return []

    monkeypatch.setattr(ocr, "run_ocr", slow_ocr)

    async def main() -> None:
        reading = steps()  # held here: only an explicit close runs its `finally` now, not collection
        task = asyncio.create_task(ocr.run_steps_async(reading))
        try:
            await asyncio.to_thread(started.wait, 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert closed == [True]
        finally:
            release.set()

    asyncio.run(main())


def ocr_engine() -> ocr.OcrEngine:
    return ocr.OcrEngine(path="tesseract", version="test")
