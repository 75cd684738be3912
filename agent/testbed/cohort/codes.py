"""Terminology used by the synthetic cohort: code systems, conditions, medications.

Lab and vital-sign codes come from the analyte table (`tools.labs.analytes`, see `labs.py`);
this module holds the codes that carry no numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "COHORT_TAG",
    "CONDITIONS",
    "EPIC_LOCAL_LAB_SYSTEM",
    "ICD10CM",
    "LOINC",
    "MEDICATIONS",
    "MRN_SYSTEM",
    "RXNORM",
    "SNOMED",
    "UCUM",
    "V2_0203",
    "Code",
    "ConditionKind",
    "ConditionSpec",
    "Medication",
    "MedicationSpec",
]

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
# Epic publishes lab component ids under an organisation-specific OID of this shape.
EPIC_LOCAL_LAB_SYSTEM = "urn:oid:1.2.840.114350.1.13.0.1.7.2.768282"
# example.org is reserved (RFC 2606): these identifiers can never collide with a real one.
MRN_SYSTEM = "https://chartagent.example.org/fhir/sid/mrn"
COHORT_TAG_SYSTEM = "https://chartagent.example.org/fhir/CodeSystem/tag"


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str

    def coding(self) -> dict[str, Any]:
        return {"system": self.system, "code": self.code, "display": self.display}


# Every seeded resource carries this tag, so a server can be searched or cleaned by `_tag`.
COHORT_TAG = Code(COHORT_TAG_SYSTEM, "synthetic-cohort", "ChartAgent synthetic cohort")


class ConditionKind(StrEnum):
    CKD3 = "ckd3"
    T2DM = "t2dm"
    IRON_DEFICIENCY_ANAEMIA = "iron_deficiency_anaemia"
    HYPERLIPIDAEMIA = "hyperlipidaemia"
    HYPERTENSION = "hypertension"


@dataclass(frozen=True)
class ConditionSpec:
    kind: ConditionKind
    snomed: Code
    icd10: Code
    text: str


CONDITIONS: dict[ConditionKind, ConditionSpec] = {
    c.kind: c
    for c in (
        ConditionSpec(
            ConditionKind.CKD3,
            Code(SNOMED, "433144002", "Chronic kidney disease stage 3 (disorder)"),
            Code(ICD10CM, "N18.30", "Chronic kidney disease, stage 3 unspecified"),
            "Chronic kidney disease stage 3",
        ),
        ConditionSpec(
            ConditionKind.T2DM,
            Code(SNOMED, "44054006", "Diabetes mellitus type 2 (disorder)"),
            Code(ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications"),
            "Type 2 diabetes mellitus",
        ),
        ConditionSpec(
            ConditionKind.IRON_DEFICIENCY_ANAEMIA,
            Code(SNOMED, "87522002", "Iron deficiency anemia (disorder)"),
            Code(ICD10CM, "D50.9", "Iron deficiency anemia, unspecified"),
            "Iron deficiency anaemia",
        ),
        ConditionSpec(
            ConditionKind.HYPERLIPIDAEMIA,
            Code(SNOMED, "55822004", "Hyperlipidemia (disorder)"),
            Code(ICD10CM, "E78.5", "Hyperlipidemia, unspecified"),
            "Hyperlipidaemia",
        ),
        ConditionSpec(
            ConditionKind.HYPERTENSION,
            Code(SNOMED, "38341003", "Hypertensive disorder, systemic arterial (disorder)"),
            Code(ICD10CM, "I10", "Essential (primary) hypertension"),
            "Hypertension",
        ),
    )
}


class Medication(StrEnum):
    METFORMIN = "metformin"
    INSULIN_GLARGINE = "insulin_glargine"
    LISINOPRIL = "lisinopril"
    AMLODIPINE = "amlodipine"
    ATORVASTATIN = "atorvastatin"
    FERROUS_SULFATE = "ferrous_sulfate"


@dataclass(frozen=True)
class MedicationSpec:
    medication: Medication
    rxnorm: Code
    dosage: str


MEDICATIONS: dict[Medication, MedicationSpec] = {
    m.medication: m
    for m in (
        MedicationSpec(
            Medication.METFORMIN,
            Code(RXNORM, "861007", "metformin hydrochloride 500 MG Oral Tablet"),
            "500 mg by mouth twice daily with meals",
        ),
        MedicationSpec(
            Medication.INSULIN_GLARGINE,
            Code(RXNORM, "311041", "insulin glargine 100 UNT/ML Injectable Solution"),
            "10 units subcutaneously at bedtime",
        ),
        MedicationSpec(
            Medication.LISINOPRIL,
            Code(RXNORM, "314076", "lisinopril 10 MG Oral Tablet"),
            "10 mg by mouth once daily",
        ),
        MedicationSpec(
            Medication.AMLODIPINE,
            Code(RXNORM, "197361", "amlodipine 5 MG Oral Tablet"),
            "5 mg by mouth once daily",
        ),
        MedicationSpec(
            Medication.ATORVASTATIN,
            Code(RXNORM, "617310", "atorvastatin 20 MG Oral Tablet"),
            "20 mg by mouth once daily at night",
        ),
        MedicationSpec(
            Medication.FERROUS_SULFATE,
            Code(RXNORM, "310325", "ferrous sulfate 325 MG Oral Tablet"),
            "325 mg by mouth once daily",
        ),
    )
}
