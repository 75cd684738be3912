"""Is a question about another patient than the conversation's? (pure)"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["names_other_patient"]

_REFERENCE: Final = re.compile(r"\bPatient/([A-Za-z0-9\-.]{1,64})")
# "patient 123", "patient id abc-7", "patient #42": an id holds a digit (a name does not).
_NAMED_ID: Final = re.compile(r"\bpatient\s+(?:id\s+)?#?([A-Za-z0-9\-.]*\d[A-Za-z0-9\-.]*)", re.IGNORECASE)


def names_other_patient(question: str, patient_id: str) -> bool:
    named = {m.group(1).rstrip(".") for m in _REFERENCE.finditer(question)}
    named |= {m.group(1).rstrip(".") for m in _NAMED_ID.finditer(question)}
    return any(n != patient_id for n in named)
