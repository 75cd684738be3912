"""Imaging errors: one hierarchy, each naming the input it is about (file or series) and the problem.

Messages carry origins (paths, URLs) and UIDs, never patient attributes.
"""

from __future__ import annotations

from fhir_adapters.error_tree import BadInputError


class ImagingError(BadInputError):
    """Base of every imaging error ChartAgent raises on purpose: an imaging input cannot be used."""


class DicomFileError(ImagingError):
    """One DICOM object (a file or a DICOMweb instance) cannot be used."""

    def __init__(self, origin: str, reason: str) -> None:
        self.origin = origin
        self.reason = reason
        super().__init__(f"{origin}: {reason}")


class SeriesError(ImagingError):
    """A series as a whole cannot be prepared (empty, ambiguous, inconsistent)."""

    def __init__(self, series_uid: str, reason: str) -> None:
        self.series_uid = series_uid
        self.reason = reason
        super().__init__(f"series {series_uid}: {reason}")


class WrongModalityError(SeriesError):
    """A series' modality does not fit the task (for example a CT preparation asked of an MR series)."""

    def __init__(self, series_uid: str, modality: str, task: str, expected: tuple[str, ...]) -> None:
        self.modality = modality
        self.task = task
        self.expected = expected
        super().__init__(
            series_uid,
            f"modality {modality or '(none)'} does not fit the {task} preparation "
            f"(expects {', '.join(expected)})",
        )


class SeriesSelectionError(ImagingError):
    """A source holds no usable series, or several and none was chosen."""

    def __init__(self, source: str, reason: str, series_uids: tuple[str, ...] = ()) -> None:
        self.source = source
        self.reason = reason
        self.series_uids = series_uids
        listed = "".join(f"\n  {uid}" for uid in series_uids)
        super().__init__(f"{source}: {reason}{listed}")


class BoxError(ImagingError):
    """A bounding box is malformed, empty or lies outside the image."""

    def __init__(self, box: object, reason: str) -> None:
        self.box = box
        self.reason = reason
        super().__init__(f"box {box!r}: {reason}")


__all__ = [
    "BoxError",
    "DicomFileError",
    "ImagingError",
    "SeriesError",
    "SeriesSelectionError",
    "WrongModalityError",
]
