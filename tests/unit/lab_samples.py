"""One transcribed lab result for the write-back tests: a potassium read from page 2 of a PDF."""

from __future__ import annotations

from datetime import date, time
from typing import Any

from tools.labs.pdf import ExtractedLab
from tools.medgemma.tasks.lab_extraction import LabFlag


def lab(**fields: Any) -> ExtractedLab:
    """The sample result, with ``fields`` replaced."""
    base: dict[str, Any] = {
        "name": "Potassium",
        "loinc": "2823-3",
        "name_status": "matched",
        "value": 5.9,
        "value_text": "5.9",
        "unit": "mmol/L",
        "reference_low": 3.5,
        "reference_high": 5.1,
        "reference_text": "3.5-5.1",
        "flag": LabFlag.HIGH,
        "effective": date(2024, 3, 4),
        "effective_time": time(7, 45),
        "page": 2,
        "bbox": (200.0, 110.5, 214.25, 119.0),
    }
    return ExtractedLab(**(base | fields))
