"""Grounded extraction of lab results from PDF text layers: every value with its page and bbox.

``extract_labs(path)`` reads the text layer (pymupdf words), rebuilds rows and columns, maps
names to LOINC (``tools.labs.loinc_catalog``) and lists pages without text as ``needs_model``;
``tools.labs.pdf.model_pages.extract_with_model`` sends those pages to MedGemma.
"""

from tools.labs.pdf.errors import (
    LabPdfError,
    PdfCorruptError,
    PdfEmptyError,
    PdfEncryptedError,
    PdfNotPdfError,
    PdfOverLimitError,
    PdfTooLargeError,
)
from tools.labs.pdf.model import BBox, ExtractedLab, LabPdfExtraction, UnparsedRow
from tools.labs.pdf.reader import (
    DEFAULT_MAX_PAGES,
    EXTRACTOR_NAME,
    EXTRACTOR_REVISION,
    extract_labs,
    extract_labs_async,
)

__all__ = [
    "DEFAULT_MAX_PAGES",
    "EXTRACTOR_NAME",
    "EXTRACTOR_REVISION",
    "BBox",
    "ExtractedLab",
    "LabPdfError",
    "LabPdfExtraction",
    "PdfCorruptError",
    "PdfEmptyError",
    "PdfEncryptedError",
    "PdfNotPdfError",
    "PdfOverLimitError",
    "PdfTooLargeError",
    "UnparsedRow",
    "extract_labs",
    "extract_labs_async",
]
