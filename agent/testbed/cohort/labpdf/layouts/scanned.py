"""Layout (e): a scanned report: pages rendered to greyscale pixels, slightly rotated, with
sensor noise and dust, JPEG-compressed and placed as images in a new PDF with NO text layer."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Final

import numpy as np
import pymupdf
from PIL import Image

from agent.testbed.cohort.labpdf.canvas import finish, new_document, open_pdf
from agent.testbed.cohort.labpdf.layouts.hospital import render_hospital
from agent.testbed.cohort.labpdf.truth import LabReport

__all__ = ["rasterize", "render_scanned"]

_DPI: Final = 110


def _scan(page: pymupdf.Page, rng: np.random.Generator, max_angle: float, dpi: int) -> bytes:
    pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY, alpha=False)
    pixels = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width, pix.n)[:, :, 0]
    angle = float(rng.uniform(-max_angle, max_angle))
    image = Image.fromarray(pixels).rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=245)
    noisy = (
        np.asarray(image, dtype=np.float32) * 0.93
        + 10
        + rng.normal(0.0, 7.0, size=(image.height, image.width))
    )
    dust = rng.random(size=noisy.shape) < 0.0006
    noisy[dust] = 40
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def rasterize(
    pdf: bytes, seed: int, title: str, moment: datetime, max_angle: float = 1.2, dpi: int = _DPI
) -> bytes:
    """``pdf`` as a scan: every page an image, no text layer; deterministic for a given ``seed``."""
    rng = np.random.default_rng(seed)
    source = open_pdf(pdf)
    out = new_document()
    for index in range(source.page_count):
        page = source[index]
        scanned = out.new_page(width=page.rect.width, height=page.rect.height)
        scanned.insert_image(scanned.rect, stream=_scan(page, rng, max_angle, dpi))  # type: ignore[no-untyped-call]
    return finish(out, title, moment)


def render_scanned(report: LabReport, seed: int) -> bytes:
    """The hospital layout of ``report``, scanned (image only)."""
    return rasterize(render_hospital(report), seed, f"Scan {report.report_id}", report.reported)
