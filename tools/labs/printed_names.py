"""How a lab report prints a test name: specimen, timing and method words around the analyte (pure).

A printed name carries more than the analyte: a Nordic specimen prefix (``S-Kreatinin``,
``fP-Glukos``, ``B-Hb``, ``U-Albumin``, ``dU-Protein``), specimen words (``serum``, ``whole
blood``, ``urine``), timing (``fasting``, ``nüchtern``), method words (``enzymatic``, ``Jaffe``,
``IFCC``, ``calculated``) and a language (``Kreatinin``, ``Harnstoff``, ``Leukozyten``).
``read_name`` splits those off into a ``PrintedName`` whose ``words`` are what identifies the
analyte; ``tools.labs.loinc_catalog.resolve`` looks those words up and uses the rest to pick
or refuse a code. Nothing here knows a LOINC code.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "DROPPABLE",
    "PrintedName",
    "SpecimenSaid",
    "fold_text",
    "normalize_name",
    "read_name",
]

# What the name itself says about the specimen. "serum" covers serum and plasma (LOINC's
# Ser/Plas), "blood" is whole blood (LOINC's Bld), "timed urine" a 24-hour or other timed
# collection, "other" a specimen with terms of its own (capillary, arterial blood).
SpecimenSaid = Literal["serum", "blood", "urine", "timed urine", "other"]

# Nordic lab prefixes (Swedish, Danish, Finnish, Norwegian reports): specimen before a hyphen.
# Case matters: "P-" is plasma, "p-ANCA" is an analyte.
_PREFIX_RE: Final = re.compile(r"^\s*(fS|fP|fB|S|P|B|U|dU|cB|aB|vB|Pt)\s*[-\u2010-\u2013]\s*(?=[A-Za-z])")
_PREFIXES: Final[dict[str, tuple[SpecimenSaid, bool]]] = {
    "S": ("serum", False),
    "P": ("serum", False),
    "fS": ("serum", True),
    "fP": ("serum", True),
    "B": ("blood", False),
    "fB": ("blood", True),
    "U": ("urine", False),
    "dU": ("timed urine", False),
    "cB": ("other", False),
    "aB": ("other", False),
    "vB": ("other", False),
    "Pt": ("other", False),
}

# Words (after folding) that name the specimen; they never identify the analyte.
_SERUM_WORDS: Final = frozenset({"serum", "plasma", "ser", "plas", "s", "p", "serpl", "serum/plasma"})
_URINE_WORDS: Final = frozenset(
    {"urine", "ur", "urinalysis", "ua", "urin", "harn", "spontanurin", "morgenurin", "spot", "random"}
)
_TIMED_WORDS: Final = frozenset({"24h", "24hr", "24hrs", "timed", "sammelurin"})
_FASTING_WORDS: Final = frozenset({"fasting", "fasted", "nuchtern", "fastende", "fastande"})
# Words that say nothing about identity.
_NOISE: Final = frozenset({"level", "lvl", "result", "test", "value", "wert", "spiegel"})

# Method and qualifier words that LOINC's method-less term covers: a name with them resolves to
# that term only when the name without them is known, and only when the catalog entry does not
# list the word among its own (the entry for HbA1c keeps "ifcc": IFCC units are another code).
DROPPABLE: Final = frozenset(
    {
        "enzymatic",
        "enzymatisch",
        "enzym",
        "jaffe",
        "kinetic",
        "kinetisch",
        "colorimetric",
        "photometric",
        "photometrisch",
        "ise",
        "ifcc",
        "ngsp",
        "dcct",
        "automated",
        "auto",
        "calculated",
        "calculation",
        "berechnet",
        "fasting",
        "conc",
        "concentration",
        "konzentration",
        "quantitative",
        "quant",
    }
)

# Word-level translations and spellings (folded: "ä" is "a"). German, and a few Nordic forms.
_WORDS: Final[dict[str, str]] = {
    "tot": "total",
    "chol": "cholesterol",
    "hgb": "hemoglobin",
    "haemoglobin": "hemoglobin",
    "hamoglobin": "hemoglobin",
    "haematocrit": "hematocrit",
    "hamatokrit": "hematocrit",
    "hematokrit": "hematocrit",
    "calc": "calculated",
    "abs": "absolute",
    "no": "#",
    "pct": "%",
    "percent": "%",
    "gen": "generation",
    "glukose": "glucose",
    "glukos": "glucose",
    "glucos": "glucose",
    "blutzucker": "glucose",
    "kreatinin": "creatinine",
    "creatinin": "creatinine",
    "harnstoff": "urea",
    "harnsaure": "uric acid",
    "urat": "urate",
    "cholesterin": "cholesterol",
    "kolesterol": "cholesterol",
    "triglyzeride": "triglycerides",
    "triglyceride": "triglycerides",
    "triglycerid": "triglycerides",
    "leukozyten": "leukocytes",
    "leukocyter": "leukocytes",
    "erythrozyten": "erythrocytes",
    "erytrocyter": "erythrocytes",
    "thrombozyten": "thrombocytes",
    "trombocyter": "thrombocytes",
    "natrium": "sodium",
    "kalium": "potassium",
    "chlorid": "chloride",
    "kalzium": "calcium",
    "kalsium": "calcium",
    "eisen": "iron",
    "folsaure": "folate",
    "gesamt": "total",
    "gesamteiweiss": "protein total",
    "eiweiss": "protein",
    "direkt": "direct",
    "indirekt": "indirect",
    "freies": "free",
    "freie": "free",
    "fries": "free",
    # Portuguese and Spanish blood-count names (folded), read as their English names so that they
    # take the same LOINC codes (reviewed 2026-12-04: VCM/HCM/CHCM are MCV/MCH/MCHC).
    "hemoglobina": "hemoglobin",
    "hematocrito": "hematocrit",
    "eritrocitos": "erythrocytes",
    "hemacias": "erythrocytes",
    "hematies": "erythrocytes",
    "leucocitos": "leukocytes",
    "plaquetas": "platelets",
    "neutrofilos": "neutrophils",
    "linfocitos": "lymphocytes",
    "monocitos": "monocytes",
    "eosinofilos": "eosinophils",
    "basofilos": "basophils",
    "vcm": "mcv",
    "hcm": "mch",
    "chcm": "mchc",
}

# The named equations of a calculated LDL cholesterol ("LDL Chol Calc (NIH)", "LDL Friedewald",
# "LDL-C Martin-Hopkins"): the name of the equation says the value was calculated, and LOINC's
# calculated-LDL term (13457-7) does not depend on which equation. Read as "calculated", in a
# name that says LDL (the eGFR equations CKD-EPI and MDRD do have terms of their own).
_LDL_EQUATIONS: Final = frozenset({"friedewald", "nih", "sampson", "martin", "hopkins"})

# Whole-word phrases folded to one token before the split, so that "whole blood" is not "blood".
_PHRASES: Final = (
    (re.compile(r"\bwhole\s+blood\b"), " wholeblood "),
    (re.compile(r"\bvollblut\b"), " wholeblood "),
    (re.compile(r"\b24\s*(?:h|hr|hrs|hour|hours|std)\b"), " 24h "),
    (re.compile(r"\bcapillary\s+blood\b"), " capillaryblood "),
    (re.compile(r"\barterial\s+blood\b"), " arterialblood "),
    (re.compile(r"\b(?:contagem|recuento)\s+de\s+plaquetas\b"), " platelet count "),
)
_BLOOD_WORDS: Final = frozenset({"wholeblood", "wb"})
_OTHER_WORDS: Final = frozenset({"capillaryblood", "arterialblood", "capillary"})


def fold_text(text: str) -> str:
    """Lower case without accents (``Hämoglobin`` -> ``hamoglobin``), micro signs as ``u``."""
    text = text.replace("µ", "u").replace("μ", "u").replace("ß", "ss")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def normalize_name(name: str) -> str:
    """Folded, punctuation to blanks (``%`` and ``#`` kept), blanks collapsed."""
    text = re.sub(r"[^a-z0-9%#]+", " ", fold_text(name))
    text = re.sub(r"([%#])", r" \1 ", text)
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class PrintedName:
    """A printed test name taken apart: analyte words, and what the rest of it said."""

    words: tuple[str, ...]  # identify the analyte (specimen and noise words removed, translated)
    specimen: SpecimenSaid | None  # what the name said about the specimen; None: nothing
    fasting: bool

    @property
    def key(self) -> str:
        return " ".join(self.words)


def _specimen_of(words: set[str]) -> SpecimenSaid | None:
    if words & _TIMED_WORDS:
        return "timed urine"
    if words & _OTHER_WORDS:
        return "other"
    said: set[SpecimenSaid] = set()
    if words & _URINE_WORDS:
        said.add("urine")
    if words & _BLOOD_WORDS:
        said.add("blood")
    if words & _SERUM_WORDS:
        said.add("serum")
    if len(said) > 1:
        return "other"  # "serum or whole blood": not one specimen
    return next(iter(said), None)


def _words(text: str) -> tuple[str, ...]:
    for pattern, token in _PHRASES:
        text = pattern.sub(token, text)
    return tuple(normalize_name(text).split())


def read_name(name: str, *, prefix: bool = True) -> PrintedName:
    """``name`` taken apart; ``prefix=False`` leaves a leading ``X-`` in the name (``B-type ...``)."""
    said: SpecimenSaid | None = None
    fasting = False
    text = name
    match = _PREFIX_RE.match(name) if prefix else None
    if match is not None:
        said, fasting = _PREFIXES[match.group(1)]
        text = name[match.end() :]
    raw = _words(fold_text(text))
    in_words = _specimen_of(set(raw))
    if said is None:
        said = in_words
    elif in_words is not None and in_words != said:
        said = "other"  # "S-Glucose, urine": contradictory
    skip = _SERUM_WORDS | _URINE_WORDS | _TIMED_WORDS | _BLOOD_WORDS | _OTHER_WORDS | _NOISE
    kept: list[str] = []
    for word in raw:
        if word in skip:
            continue
        if word in _FASTING_WORDS:
            fasting = True
            continue
        kept.extend(_WORDS.get(word, word).split())
    if "ldl" in kept and _LDL_EQUATIONS & set(kept):
        kept = [w for w in kept if w not in _LDL_EQUATIONS and w != "calculated"] + ["calculated"]
    if fasting:
        kept.append("fasting")
    return PrintedName(tuple(kept), said, fasting)
