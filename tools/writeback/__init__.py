"""Write-back: AI-labelled, idempotent FHIR R4B resources for what ChartAgent computed (pure builders)."""

from tools.writeback.ai_labels import (
    AIAST,
    ModelIdentity,
    build_model_device,
    is_ai_asserted,
    trend_engine_identity,
)
from tools.writeback.builders import build_provenance, build_summary_report, build_trend_observation
from tools.writeback.extraction_labels import DOCUMENT_EXTRACTION_TAG, is_document_extraction
from tools.writeback.identifiers import (
    AI_OUTPUT_SYSTEM,
    Built,
    BusinessIdentifier,
    InputRef,
    business_identifier,
)
from tools.writeback.transaction import build_patient_transaction
from tools.writeback.trend_plots import MAX_PLOTS, plot_title, render_trend_plot, series_to_plot
from tools.writeback.trend_table import TrendRow, report_plain_text, report_xhtml, trend_rows

__all__ = [
    "AIAST",
    "AI_OUTPUT_SYSTEM",
    "DOCUMENT_EXTRACTION_TAG",
    "MAX_PLOTS",
    "Built",
    "BusinessIdentifier",
    "InputRef",
    "ModelIdentity",
    "TrendRow",
    "build_model_device",
    "build_patient_transaction",
    "build_provenance",
    "build_summary_report",
    "build_trend_observation",
    "business_identifier",
    "is_ai_asserted",
    "is_document_extraction",
    "plot_title",
    "render_trend_plot",
    "report_plain_text",
    "report_xhtml",
    "series_to_plot",
    "trend_engine_identity",
    "trend_rows",
]
