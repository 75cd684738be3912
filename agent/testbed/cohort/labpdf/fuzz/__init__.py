"""A layout fuzzer: the same kind of truth rendered in many ways, each PDF with its exact truth.

``fuzz_document(seed)`` draws a style (fonts, sizes, spacing, column order and optional
columns, separators, number/date/unit spellings, wrapped and qualified names, side-by-side
panels, page breaks with or without repeated headers, cumulative date columns, flag marks,
noise) and renders a report in it; ``scan_document`` turns one into an image-only scan for the
OCR path. ``grade`` pairs a reader's results with the truth by where the values are printed.
"""

from agent.testbed.cohort.labpdf.fuzz.render import FuzzedDocument, fuzz_document
from agent.testbed.cohort.labpdf.fuzz.scan import scan_document
from agent.testbed.cohort.labpdf.fuzz.style import FuzzStyle, draw_style
from agent.testbed.cohort.labpdf.fuzz.truth import FuzzTruth, UnreadableTruth, WrittenTruth

__all__ = [
    "FuzzStyle",
    "FuzzTruth",
    "FuzzedDocument",
    "UnreadableTruth",
    "WrittenTruth",
    "draw_style",
    "fuzz_document",
    "scan_document",
]
