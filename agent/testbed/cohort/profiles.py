"""Clinical profiles and each patient's plan: conditions, lab dialect and planned courses.

Assignment is by patient index, not by chance, so that even a small cohort covers every
profile, every course and both unusual lab dialects (see `plan_for`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agent.testbed.cohort.codes import ConditionKind, Medication
from agent.testbed.cohort.labs import Analyte, Course

__all__ = ["COURSE_GROUPS", "PROFILES", "LabDialect", "PatientPlan", "Profile", "plan_for"]

_C = ConditionKind


class LabDialect(StrEnum):
    """How a patient's lab system codes its results."""

    LOINC = "loinc"  # LOINC codes, conventional US units
    EPIC_LOCAL = "epic-local"  # Epic local component codes only (no LOINC), conventional units
    SI = "si"  # LOINC codes of the SI forms, SI units (mmol/L glucose, umol/L creatinine, ...)


@dataclass(frozen=True)
class Profile:
    name: str
    conditions: tuple[ConditionKind, ...]

    def has(self, condition: ConditionKind) -> bool:
        return condition in self.conditions


# The first two profiles hold both CKD and diabetes: the local-code and SI patients are drawn
# from them so that creatinine, glucose and HbA1c all appear in the unusual dialects.
PROFILES: tuple[Profile, ...] = (
    Profile("ckd-diabetes", (_C.CKD3, _C.T2DM, _C.HYPERTENSION, _C.HYPERLIPIDAEMIA)),
    Profile("ckd-diabetes-anaemia", (_C.CKD3, _C.T2DM, _C.IRON_DEFICIENCY_ANAEMIA, _C.HYPERTENSION)),
    Profile("diabetes", (_C.T2DM, _C.HYPERLIPIDAEMIA, _C.HYPERTENSION)),
    Profile("ckd-anaemia", (_C.CKD3, _C.IRON_DEFICIENCY_ANAEMIA, _C.HYPERTENSION)),
    Profile("cardiometabolic", (_C.HYPERTENSION, _C.HYPERLIPIDAEMIA)),
)

# Analytes whose course follows a condition; the others (and these, without the condition)
# are stable.
COURSE_GROUPS: dict[ConditionKind, tuple[Analyte, ...]] = {
    _C.CKD3: (Analyte.CREATININE, Analyte.EGFR, Analyte.POTASSIUM),
    _C.T2DM: (Analyte.HBA1C, Analyte.GLUCOSE),
    _C.IRON_DEFICIENCY_ANAEMIA: (Analyte.HEMOGLOBIN,),
    _C.HYPERLIPIDAEMIA: (Analyte.LDL, Analyte.CHOLESTEROL, Analyte.TRIGLYCERIDES),
    _C.HYPERTENSION: (Analyte.SYSTOLIC_BP, Analyte.DIASTOLIC_BP),
}
_GROUP_ORDER = tuple(COURSE_GROUPS)
_COURSES = (Course.STABLE, Course.WORSENING, Course.IMPROVING)
_DIALECTS = (LabDialect.LOINC, LabDialect.EPIC_LOCAL, LabDialect.SI)


@dataclass(frozen=True)
class PatientPlan:
    index: int
    profile: Profile
    dialect: LabDialect
    # Course of every analyte of every course group the patient has.
    courses: dict[Analyte, Course]

    def course(self, analyte: Analyte) -> Course:
        return self.courses.get(analyte, Course.STABLE)

    def condition_course(self, condition: ConditionKind) -> Course:
        return self.course(COURSE_GROUPS[condition][0])

    def medications(self) -> list[tuple[Medication, bool]]:
        """(medication, started mid-course) pairs: treatment escalates on a worsening course."""
        meds: list[tuple[Medication, bool]] = []
        p = self.profile
        if p.has(_C.T2DM):
            meds.append((Medication.METFORMIN, False))
            if self.condition_course(_C.T2DM) is not Course.STABLE:
                # Worsening control earns basal insulin late; improving control came with it.
                meds.append((Medication.INSULIN_GLARGINE, self.condition_course(_C.T2DM) is Course.WORSENING))
        if p.has(_C.HYPERTENSION) or p.has(_C.CKD3):
            meds.append((Medication.LISINOPRIL, False))
        if p.has(_C.HYPERTENSION) and self.condition_course(_C.HYPERTENSION) is not Course.STABLE:
            meds.append((Medication.AMLODIPINE, self.condition_course(_C.HYPERTENSION) is Course.WORSENING))
        if p.has(_C.HYPERLIPIDAEMIA):
            meds.append((Medication.ATORVASTATIN, False))
        if p.has(_C.IRON_DEFICIENCY_ANAEMIA):
            meds.append((Medication.FERROUS_SULFATE, False))
        return meds


def plan_for(index: int) -> PatientPlan:
    """The plan of patient `index`; independent of cohort size, so cohorts are prefix-stable."""
    profile = PROFILES[index % len(PROFILES)]
    # 5 profiles and 3 courses are coprime: every profile meets every course within 15 patients,
    # and a patient's condition groups get different courses.
    courses: dict[Analyte, Course] = {}
    for k, condition in enumerate(_GROUP_ORDER):
        if profile.has(condition):
            course = _COURSES[(index + k) % len(_COURSES)]
            for analyte in COURSE_GROUPS[condition]:
                courses[analyte] = course
    dialect = LabDialect.LOINC
    if profile.has(_C.CKD3) and profile.has(_C.T2DM):
        # Patients 0, 1, 5, 6, 10, 11, ... hold both; rotate the dialect among them.
        eligible_rank = (index // len(PROFILES)) * 2 + (index % len(PROFILES))
        dialect = _DIALECTS[eligible_rank % len(_DIALECTS)]
    return PatientPlan(index=index, profile=profile, dialect=dialect, courses=courses)
