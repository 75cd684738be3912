"""UCUM unit normalisation and conversion (pure).

Two layers:

* ``normalize_unit`` maps the spellings labs really send (``mg/dl``, ``µmol/L``, ``mmHg``,
  ``mL/min/1.73m2``, ``K/uL``) to one UCUM code, so that spelling never splits a series.
  Unknown spellings come back stripped but otherwise unchanged: they are not guessed.
* ``convert_dimensional`` converts between units of the same dimension (g/L <-> g/dL,
  mmol/L <-> umol/L, kg <-> [lb_av]). Conversions that need knowledge of the substance
  (mmol/L -> mg/dL needs a molar mass) live in the analyte table, not here.

A unit that cannot be converted raises ``UnitConversionError``; callers report it, they never
drop the value silently.
"""

from __future__ import annotations

import re
from typing import Final

from fhir_adapters.error_tree import BadInputError

__all__ = [
    "EGFR_UNIT",
    "UnitConversionError",
    "convert_dimensional",
    "dimension_of",
    "is_known_unit",
    "normalize_unit",
]

EGFR_UNIT: Final = "mL/min/{1.73_m2}"


class UnitConversionError(BadInputError):
    """A value cannot be expressed in the requested unit."""

    def __init__(self, from_unit: str, to_unit: str, detail: str = "") -> None:
        self.from_unit = from_unit
        self.to_unit = to_unit
        super().__init__(f"cannot convert {from_unit!r} to {to_unit!r}{': ' + detail if detail else ''}")


# Canonical UCUM codes we know; their case-folded forms are accepted spellings too.
_UCUM_CODES: Final = (
    "mg/dL",
    "mg/L",
    "g/dL",
    "g/L",
    "ug/dL",
    "ug/L",
    "ug/mL",
    "ng/mL",
    "ng/dL",
    "ng/L",
    "pg/mL",
    "mol/L",
    "mmol/L",
    "umol/L",
    "nmol/L",
    "pmol/L",
    "meq/L",  # UCUM's equivalent is the case-sensitive atom "eq": "mEq/L" is not a valid code
    "mmol/mol",
    "%",
    "mg/g",
    "mg/mmol",
    "ug/mg",
    "mm[Hg]",
    "kg",
    "g",
    "[lb_av]",
    "[oz_av]",
    "kg/m2",
    "cm",
    "m",
    "[in_i]",
    "mL/min",
    EGFR_UNIT,
    "10*3/uL",
    "10*6/uL",
    "10*9/L",
    "10*12/L",
    "/uL",  # counts per microlitre printed without a power of ten ("245,000 /µL")
    "fL",
    "pg",
    "U/L",
    "Cel",
    "[degF]",
    "{score}",
    "s",
    "u[IU]/mL",
    "m[IU]/L",
    "m[IU]/mL",
    "[IU]/mL",
    "mm/h",
    "{INR}",
    "/[HPF]",
)

# Non-UCUM spellings seen in real feeds, keyed by their folded form (see _fold).
_ALIASES: Final[dict[str, str]] = {
    "mg/100ml": "mg/dL",
    "mmhg": "mm[Hg]",
    "mm[hg]": "mm[Hg]",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "[lb_us]": "[lb_av]",
    "oz": "[oz_av]",
    "in": "[in_i]",
    "kg/m^2": "kg/m2",
    "kg/m²": "kg/m2",
    "k/ul": "10*3/uL",
    "thou/ul": "10*3/uL",
    "10^3/ul": "10*3/uL",
    "x10e3/ul": "10*3/uL",
    "10e3/ul": "10*3/uL",
    "10*9/l": "10*9/L",
    "10^9/l": "10*9/L",
    "m/ul": "10*6/uL",
    # German and Nordic cell counts: per nanolitre is 10^9/L, per picolitre 10^12/L.
    "x10^3/ul": "10*3/uL",
    "x10³/ul": "10*3/uL",
    "10³/ul": "10*3/uL",
    "x10^6/ul": "10*6/uL",
    "x10⁶/ul": "10*6/uL",
    "10⁶/ul": "10*6/uL",
    "/nl": "10*9/L",
    "/pl": "10*12/L",
    "tsd/ul": "10*3/uL",
    "mio/ul": "10*6/uL",
    "million/ul": "10*6/uL",
    "millions/ul": "10*6/uL",
    "10^6/ul": "10*6/uL",
    "x10e6/ul": "10*6/uL",
    # Per cubic millimetre, as Indian and older reports print counts: a mm³ is a µL, so these
    # are the per-microlitre units; "cells" is an annotation, not a unit ({cells}/uL = /uL).
    "/cumm": "/uL",
    "/mm3": "/uL",
    "/mm³": "/uL",
    "cells/cumm": "/uL",
    "cells/mm3": "/uL",
    "cells/mm³": "/uL",
    "cells/ul": "/uL",
    "million/cumm": "10*6/uL",
    "million/mm3": "10*6/uL",
    "million/mm³": "10*6/uL",
    "millions/cumm": "10*6/uL",
    "percent": "%",
    # Enzyme activity printed in "IU/L": the IUB international unit of an enzyme is UCUM's U
    # (umol/min). Hormones in international units use [IU] and are spelled m[IU]/L, u[IU]/mL.
    "iu/l": "U/L",
    "degc": "Cel",
    "°c": "Cel",
    "degf": "[degF]",
    "°f": "[degF]",
    "mcg/ml": "ug/mL",
    "mcg/l": "ug/L",
    "mcg/dl": "ug/dL",
    "mg/gcreat": "mg/g",
    "mg/g{creat}": "mg/g",
    "mg/mmol{creat}": "mg/mmol",
    "x10^9/l": "10*9/L",
    "x10e9/l": "10*9/L",
    "10^12/l": "10*12/L",
    "x10^12/l": "10*12/L",
    "x10e12/l": "10*12/L",
    "sec": "s",
    "secs": "s",
    "seconds": "s",
    "uiu/ml": "u[IU]/mL",
    "miu/l": "m[IU]/L",
    "miu/ml": "m[IU]/mL",
    # Per millilitre, international units are a hormone's or an antibody's (anti-TPO), not an
    # enzyme's activity (IU/L above).
    "iu/ml": "[IU]/mL",
    "mu/l": "m[IU]/L",
    "mm/hr": "mm/h",
    "/hpf": "/[HPF]",
}

# Every way we have seen "per 1.73 m2 body surface" written after mL/min; "mL/min/1.73" (the
# m² left off, as lab portals print it) is the usual abbreviation of the same unit.
_EGFR_RE: Final = re.compile(r"^ml/min/?(per)?\{?1\.73(?:[._]?m(2|\^2|²|\*2))?\}?$")


def _fold(unit: str) -> str:
    # Case, blanks and the two micro signs (U+00B5, U+03BC) carry no meaning in lab feeds; the
    # multiplication sign (U+00D7) is the letter x of "x10^3/uL" as typeset.
    return re.sub(r"\s+", "", unit).replace("µ", "u").replace("μ", "u").replace("×", "x").lower()


_BY_FOLD: Final[dict[str, str]] = {_fold(code): code for code in _UCUM_CODES} | _ALIASES


def normalize_unit(unit: str | None) -> str | None:
    """Return the UCUM code for ``unit``; unknown spellings come back stripped, ``None`` stays ``None``."""
    if unit is None:
        return None
    stripped = unit.strip()
    if not stripped:
        return None
    folded = _fold(stripped)
    if folded in _BY_FOLD:
        return _BY_FOLD[folded]
    if _EGFR_RE.match(folded):
        return EGFR_UNIT
    return stripped


def is_known_unit(unit: str) -> bool:
    """Whether ``unit`` is a spelling ``normalize_unit`` knows (a UCUM code, an alias, eGFR's)."""
    folded = _fold(unit.strip())
    return bool(folded) and (folded in _BY_FOLD or bool(_EGFR_RE.match(folded)))


# Units of one dimension, as factors to that dimension's base unit.
_DIMENSIONS: Final[dict[str, dict[str, float]]] = {
    "mass concentration (g/L)": {
        "g/L": 1.0,
        "g/dL": 10.0,
        "mg/dL": 1e-2,
        "mg/L": 1e-3,
        "ug/mL": 1e-3,
        "ug/dL": 1e-5,
        "ug/L": 1e-6,
        "ng/mL": 1e-6,
        "ng/dL": 1e-8,
        "ng/L": 1e-9,
        "pg/mL": 1e-9,
    },
    "substance concentration (mol/L)": {
        "mol/L": 1.0,
        "mmol/L": 1e-3,
        "umol/L": 1e-6,
        "nmol/L": 1e-9,
        "pmol/L": 1e-12,
    },
    "mass (kg)": {"kg": 1.0, "g": 1e-3, "[lb_av]": 0.45359237, "[oz_av]": 0.028349523125},
    "length (m)": {"m": 1.0, "cm": 1e-2, "[in_i]": 0.0254},
    "number concentration (1/L)": {
        "/uL": 1e6,
        "10*3/uL": 1e9,
        "10*9/L": 1e9,
        "10*6/uL": 1e12,
        "10*12/L": 1e12,
    },
    "mass ratio (mg/g)": {"mg/g": 1.0, "ug/mg": 1.0},
}
_DIMENSION_OF: Final[dict[str, tuple[str, float]]] = {
    unit: (dim, factor) for dim, units in _DIMENSIONS.items() for unit, factor in units.items()
}


def dimension_of(unit: str) -> str | None:
    """The dimension name of a normalised unit, or ``None`` when we do not know it."""
    found = _DIMENSION_OF.get(unit)
    return found[0] if found else None


def convert_dimensional(value: float, from_unit: str, to_unit: str) -> float:
    """Convert between two normalised units of the same dimension; raise ``UnitConversionError`` otherwise."""
    if from_unit == to_unit:
        return value
    src = _DIMENSION_OF.get(from_unit)
    dst = _DIMENSION_OF.get(to_unit)
    if src is None or dst is None:
        raise UnitConversionError(from_unit, to_unit, "unit not known")
    if src[0] != dst[0]:
        raise UnitConversionError(from_unit, to_unit, f"{src[0]} is not {dst[0]}")
    return value * src[1] / dst[1]
