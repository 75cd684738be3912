"""Generated lab-report PDFs with ground truth, in several layouts, plus bad inputs.

The truth (``LabReport``) is what the extraction benchmark scores; every layout renders the
same truth deterministically (same inputs, byte-identical PDF).
"""

from agent.testbed.cohort.labpdf.catalog import CATALOG, AnalyteDef, Panel, analyte, panel_keys
from agent.testbed.cohort.labpdf.layouts import (
    cumulative_truth,
    rasterize,
    render_commercial,
    render_cumulative,
    render_hospital,
    render_panel,
    render_scanned,
)
from agent.testbed.cohort.labpdf.make import Dialect, make_report, sample_results
from agent.testbed.cohort.labpdf.truth import Comparator, Flag, LabReport, LabResultTruth

__all__ = [
    "CATALOG",
    "AnalyteDef",
    "Comparator",
    "Dialect",
    "Flag",
    "LabReport",
    "LabResultTruth",
    "Panel",
    "analyte",
    "cumulative_truth",
    "make_report",
    "panel_keys",
    "rasterize",
    "render_commercial",
    "render_cumulative",
    "render_hospital",
    "render_panel",
    "render_scanned",
    "sample_results",
]
