"""Deterministic DICOM UIDs: a fixed root plus a hash of named parts, never random or clock-based.

The root is pydicom's own (`1.2.826.0.1.3680043.8.498.`), which pydicom offers for exactly this
use; the suffix is SHA-512 of the parts, so the same seed and names always give the same UID.
"""

from __future__ import annotations

from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

__all__ = ["UID_ROOT", "derive_uid"]

UID_ROOT = PYDICOM_ROOT_UID
# Separates parts so that ("ab", "c") and ("a", "bc") hash differently.
_SEP = "\x1f"


def derive_uid(*parts: str | int) -> str:
    """A UID under `UID_ROOT` that depends only on `parts` (e.g. seed, patient id, study key)."""
    if not parts:
        raise ValueError("derive_uid needs at least one part")
    return str(generate_uid(prefix=UID_ROOT, entropy_srcs=[_SEP.join(str(p) for p in parts)]))
