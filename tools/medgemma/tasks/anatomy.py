"""Chest ImaGenome anatomy names (the boxes MedGemma 1.5's CXR localization was trained on) and synonyms.

`normalise_label` maps what the model wrote to the ImaGenome name, or None when the label is not
one of them (the caller keeps the label and flags it). Matching is on a canonical form only (case,
spaces, hyphens, underscores, a leading "the", trailing punctuation): no fuzzy matching. Lobes are
not zones, so "right upper lobe" is deliberately not mapped to "right upper lung zone".
"""

from __future__ import annotations

import re

# The 36 bounding-box regions of Chest ImaGenome (Wu et al. 2021), as named there.
IMAGENOME_ANATOMY: tuple[str, ...] = (
    "right lung",
    "right upper lung zone",
    "right mid lung zone",
    "right lower lung zone",
    "right apical zone",
    "right hilar structures",
    "right costophrenic angle",
    "right cardiophrenic angle",
    "right hemidiaphragm",
    "right clavicle",
    "left lung",
    "left upper lung zone",
    "left mid lung zone",
    "left lower lung zone",
    "left apical zone",
    "left hilar structures",
    "left costophrenic angle",
    "left cardiophrenic angle",
    "left hemidiaphragm",
    "left clavicle",
    "trachea",
    "carina",
    "spine",
    "aortic arch",
    "descending aorta",
    "mediastinum",
    "upper mediastinum",
    "svc",
    "cavoatrial junction",
    "right atrium",
    "cardiac silhouette",
    "left cardiac silhouette",
    "right cardiac silhouette",
    "abdomen",
    "left upper abdomen",
    "right upper abdomen",
)

_SIDED_SYNONYMS: dict[str, tuple[str, ...]] = {
    "{side} lung": ("{side} lung field", "{side} hemithorax"),
    "{side} upper lung zone": ("{side} upper zone", "{side} upper lung", "{side} upper lung field"),
    "{side} mid lung zone": (
        "{side} mid zone",
        "{side} middle zone",
        "{side} middle lung zone",
        "{side} mid lung",
        "{side} mid lung field",
    ),
    "{side} lower lung zone": ("{side} lower zone", "{side} lower lung", "{side} lower lung field"),
    "{side} apical zone": ("{side} apex", "{side} lung apex", "{side} apical region"),
    "{side} hilar structures": ("{side} hilum", "{side} hilus", "{side} hilar region", "{side} hilar"),
    "{side} costophrenic angle": (
        "{side} cp angle",
        "{side} costophrenic sulcus",
        "{side} costophrenic recess",
    ),
    "{side} cardiophrenic angle": ("{side} cardiophrenic sulcus",),
    "{side} hemidiaphragm": ("{side} diaphragm", "{side} hemi diaphragm", "{side} dome of the diaphragm"),
    "{side} clavicle": ("{side} collarbone",),
    "{side} cardiac silhouette": ("{side} heart border", "{side} cardiac border"),
    "{side} upper abdomen": (),
}
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "cardiac silhouette": ("heart", "heart shadow", "cardiac shadow", "cardiomediastinal silhouette"),
    "aortic arch": ("aortic knob", "aortic knuckle", "arch of the aorta", "aortic arc"),
    "descending aorta": ("descending thoracic aorta",),
    "spine": ("thoracic spine", "vertebral column", "spinal column"),
    "svc": ("superior vena cava",),
    "trachea": ("windpipe",),
    "mediastinum": ("mediastinal silhouette",),
    "upper mediastinum": ("superior mediastinum",),
}


def canonical(label: str) -> str:
    """Lower case, hyphens/underscores as spaces, one space between words, no leading 'the'."""
    text = re.sub(r"[-_/]+", " ", label.lower())
    text = re.sub(r"[^\w\s]", "", text)
    words = text.split()
    if words and words[0] == "the":
        words = words[1:]
    return " ".join(words)


def _table() -> dict[str, str]:
    table = {canonical(name): name for name in IMAGENOME_ANATOMY}
    for pattern, synonyms in _SIDED_SYNONYMS.items():
        for side in ("right", "left"):
            name = pattern.format(side=side)
            if name not in IMAGENOME_ANATOMY:
                raise AssertionError(f"synonym target {name!r} is not an ImaGenome name")
            for synonym in synonyms:
                table[canonical(synonym.format(side=side))] = name
    for name, synonyms in _SYNONYMS.items():
        for synonym in synonyms:
            table[canonical(synonym)] = name
    return table


_TABLE = _table()


def normalise_label(label: str) -> str | None:
    """The Chest ImaGenome name for `label`, or None when it is not one (nor a listed synonym)."""
    return _TABLE.get(canonical(label))


__all__ = ["IMAGENOME_ANATOMY", "canonical", "normalise_label"]
