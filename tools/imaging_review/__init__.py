"""Imaging review: a patient's newest CT, MRI and chest X-ray compared with their priors by MedGemma.

`compare_imaging(record, dicomweb=..., model=..., now=...)` plans the comparisons from the record's
ImagingStudy resources (`plan`), refuses studies served from elsewhere than the configured
DICOMweb server (`endpoints`), fetches and prepares the series (`fetch`), asks the model and
parses strictly, and returns an `ImagingReview`: per comparison its status and reason, the
parsed result, a summary line for the narrative, and the write-back entries (`Built`) for the
patient's transaction (`tools.writeback.imaging_report`).
"""

from tools.imaging_review.outcome import ComparisonOutcome, ComparisonStatus, ImagingReview, summary_line
from tools.imaging_review.plan import ImagingKind, PlannedComparison, plan_comparisons
from tools.imaging_review.service import (
    NO_DICOMWEB,
    NO_MODEL,
    ReviewOptions,
    compare_imaging,
    review_pair,
    skipped_outcome,
)

__all__ = [
    "NO_DICOMWEB",
    "NO_MODEL",
    "ComparisonOutcome",
    "ComparisonStatus",
    "ImagingKind",
    "ImagingReview",
    "PlannedComparison",
    "ReviewOptions",
    "compare_imaging",
    "plan_comparisons",
    "review_pair",
    "skipped_outcome",
    "summary_line",
]
