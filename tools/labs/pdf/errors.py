"""Errors raised while reading a lab-report PDF; each names the file and says what to do."""

from __future__ import annotations

from fhir_adapters.error_tree import BadInputError

__all__ = [
    "LabPdfError",
    "PdfCorruptError",
    "PdfEmptyError",
    "PdfEncryptedError",
    "PdfNotPdfError",
    "PdfOverLimitError",
    "PdfTooLargeError",
]


class LabPdfError(BadInputError):
    """Base of every error this package raises (the PDF cannot be read); the CLI maps it to exit code 2."""


class PdfEncryptedError(LabPdfError):
    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(
            f"{source}: the PDF is encrypted (password-protected) and cannot be read; "
            "attach an unprotected copy"
        )


class PdfCorruptError(LabPdfError):
    def __init__(self, source: str, detail: str) -> None:
        self.source = source
        super().__init__(f"{source}: not a readable PDF ({detail}); check the file is a complete PDF")


class PdfEmptyError(LabPdfError):
    def __init__(self, source: str, detail: str) -> None:
        self.source = source
        super().__init__(f"{source}: {detail}; there is nothing to extract")


class PdfTooLargeError(LabPdfError):
    def __init__(self, source: str, pages: int, limit: int) -> None:
        self.source = source
        self.pages = pages
        self.limit = limit
        super().__init__(
            f"{source}: {pages} pages is over the page limit of {limit}; "
            f"raise the limit (--max-pages {pages}) to read it all, or split the file"
        )


class PdfNotPdfError(PdfCorruptError):
    """No `%PDF-` signature in the first 1024 bytes (where readers tolerate it): another kind of file."""

    def __init__(self, source: str, kind: str | None) -> None:
        self.source = source
        self.kind = kind
        what = f"looks like {kind}" if kind else "no %PDF- signature in its first 1024 bytes"
        LabPdfError.__init__(
            self, f"{source}: not a readable PDF: not a PDF at all ({what}); attach the lab report as a PDF"
        )


class PdfOverLimitError(LabPdfError):
    """A PDF refused before its content is decoded, to keep memory bounded (a stream bomb, a giant page)."""

    def __init__(self, source: str, detail: str) -> None:
        self.source = source
        self.detail = detail
        super().__init__(f"{source}: refused: {detail}")
