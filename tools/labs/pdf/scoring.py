"""Field-level precision / recall / F1 of extracted results against printed truth (pure).

Rows are paired by (printed name, effective date, occurrence). Six fields are scored per row:
LOINC, value, unit (UCUM), flag, reference range (low, high, text), effective date (a datetime
where the collection time is printed). A field
whose truth and extraction are both empty is not counted; a wrong value is both a false
positive and a false negative; an extracted row with no truth row counts all its fields false.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

__all__ = ["FIELDS", "FieldRow", "Score", "score_rows"]

FIELDS = ("loinc", "value", "unit", "flag", "reference", "effective")

FieldRow = dict[str, Hashable]  # "key" plus one entry per name in FIELDS


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    per_field: Counter[str] = field(default_factory=Counter)  # errors per field
    errors: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _keyed(rows: Sequence[FieldRow]) -> dict[Hashable, FieldRow]:
    seen: Counter[Hashable] = Counter()
    out: dict[Hashable, FieldRow] = {}
    for row in rows:
        key = row["key"]
        out[(key, seen[key])] = row
        seen[key] += 1
    return out


def score_rows(truth: Sequence[FieldRow], found: Sequence[FieldRow], score: Score | None = None) -> Score:
    score = score or Score()
    t, f = _keyed(truth), _keyed(found)
    for key in t.keys() | f.keys():
        want, got = t.get(key), f.get(key)
        for name in FIELDS:
            a = want.get(name) if want else None
            b = got.get(name) if got else None
            if a is None and b is None:
                continue
            if a == b:
                score.tp += 1
                continue
            score.fp += b is not None
            score.fn += a is not None
            score.per_field[name] += 1
            if len(score.errors) < 40:
                score.errors.append(f"{key}: {name} truth={a!r} found={b!r}")
    return score
