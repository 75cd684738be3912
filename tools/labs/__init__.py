"""Lab series: the analyte table, UCUM unit normalisation and series built from FHIR Observations."""

from tools.labs.analytes import (
    ANALYTES,
    LOINC_SYSTEM,
    Analyte,
    GoodDirection,
    ReferenceRange,
    StabilityThreshold,
    UnitConversion,
    analyte_for_coding,
    analyte_for_local_code,
    get_analyte,
)
from tools.labs.series import (
    LabPoint,
    LabSeries,
    MixedSubjectsError,
    SeriesSet,
    SkippedPoint,
    SkipReason,
    build_series,
)
from tools.labs.units import UnitConversionError, normalize_unit

__all__ = [
    "ANALYTES",
    "LOINC_SYSTEM",
    "Analyte",
    "GoodDirection",
    "LabPoint",
    "LabSeries",
    "MixedSubjectsError",
    "ReferenceRange",
    "SeriesSet",
    "SkipReason",
    "SkippedPoint",
    "StabilityThreshold",
    "UnitConversion",
    "UnitConversionError",
    "analyte_for_coding",
    "analyte_for_local_code",
    "build_series",
    "get_analyte",
    "normalize_unit",
]
