"""Deterministic synthetic cohort: generation (pure) and seeding into a FHIR server."""

from agent.testbed.cohort.generate import REFERENCE_DATE, Cohort, CohortPatient, generate_cohort, patient_id
from agent.testbed.cohort.labdocs import PlannedLabDocument, PlannedLabResult
from agent.testbed.cohort.labs import ANALYTES, Analyte, AnalyteSpec, Course, analyte_for_coding
from agent.testbed.cohort.profiles import LabDialect

__all__ = [
    "ANALYTES",
    "REFERENCE_DATE",
    "Analyte",
    "AnalyteSpec",
    "Cohort",
    "CohortPatient",
    "Course",
    "LabDialect",
    "PlannedLabDocument",
    "PlannedLabResult",
    "analyte_for_coding",
    "generate_cohort",
    "patient_id",
]
