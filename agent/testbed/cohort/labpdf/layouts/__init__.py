"""Page layouts: each turns report truth into PDF bytes, deterministically."""

from agent.testbed.cohort.labpdf.layouts.commercial import render_commercial
from agent.testbed.cohort.labpdf.layouts.cumulative import cumulative_truth, render_cumulative
from agent.testbed.cohort.labpdf.layouts.hospital import render_hospital
from agent.testbed.cohort.labpdf.layouts.panel import render_panel
from agent.testbed.cohort.labpdf.layouts.scanned import rasterize, render_scanned

__all__ = [
    "cumulative_truth",
    "rasterize",
    "render_commercial",
    "render_cumulative",
    "render_hospital",
    "render_panel",
    "render_scanned",
]
