"""Scanned versions of fuzzed documents for the OCR path: rasterized, slightly skewed, noisy, JPEG.

The scan itself is ``layouts.scanned.rasterize`` (one way to scan); this module only draws the
scan's settings from the seed: 150 to 300 dpi and a skew of a few tenths of a degree. The truth
is the fuzzed document's: boxes move by at most a few points under such a skew.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Final

from agent.testbed.cohort.labpdf.fuzz.render import FuzzedDocument
from agent.testbed.cohort.labpdf.layouts.scanned import rasterize

__all__ = ["MAX_SKEW_DEGREES", "scan_document"]

MAX_SKEW_DEGREES: Final = 0.5
_DPIS: Final = (150, 200, 300)


def scan_document(document: FuzzedDocument, seed: int) -> bytes:
    """``document`` scanned: every page an image (no text layer), deterministic for ``seed``."""
    rng = random.Random(f"labpdf-fuzz-scan:{seed}")
    dpi = rng.choice(_DPIS)
    skew = rng.uniform(0.1, MAX_SKEW_DEGREES)
    moment = datetime(2024, 1, 1) + (max(r.effective for r in document.truth.results) - datetime(2024, 1, 1))
    return rasterize(document.pdf, rng.randrange(2**31), f"Scan of {document.name}", moment, skew, dpi)
