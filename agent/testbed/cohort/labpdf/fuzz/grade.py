"""Grade a reader's extraction of a fuzzed document against its truth (pure).

Results are paired with the truth by where their value is printed (same page, the found box's
centre inside the truth box widened by ``tolerance`` points), so a result is judged on its
fields even when the reader spelled the row's name another way. Scored per field with
``tools.labs.pdf.scoring`` (LOINC, value, unit, flag, reference range, effective date and
time); a found value that pairs with nothing, or with a row the renderer made unreadable,
counts every field as false. ``text_mismatches`` checks the grounding: the words inside each
found box are exactly its ``value_text``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from agent.testbed.cohort.labpdf.fuzz.truth import BBox, FuzzTruth, WrittenTruth
from tools.labs.pdf import ExtractedLab, LabPdfExtraction
from tools.labs.pdf.scoring import FieldRow, Score, score_rows

__all__ = ["Grade", "found_row", "grade", "text_in_box", "truth_row"]


@dataclass
class Grade:
    """One document's (or a corpus's, by ``add``) figures."""

    score: Score = field(default_factory=Score)
    written: int = 0  # values the reader wrote
    wrong_values: int = 0  # paired with a truth row whose value differs
    unpaired: int = 0  # paired with no printed value at all
    duplicates: int = 0  # a printed value written a second time
    guessed: int = 0  # written for a row the renderer made unreadable
    unreadable: int = 0  # such rows in the truth
    listed_unreadable: int = 0  # of those, listed as unparsed on their page
    family_total: Counter[str] = field(default_factory=Counter)
    family_found: Counter[str] = field(default_factory=Counter)  # value read right
    misses: dict[str, list[str]] = field(default_factory=dict)  # family -> examples
    failures: list[str] = field(default_factory=list)  # precision failures, described

    @property
    def value_precision(self) -> float:
        """Written values equal to the truth, over all written values."""
        bad = self.wrong_values + self.unpaired + self.duplicates + self.guessed
        return (self.written - bad) / self.written if self.written else 1.0

    def add(self, other: Grade) -> None:
        s, o = self.score, other.score
        s.tp, s.fp, s.fn = s.tp + o.tp, s.fp + o.fp, s.fn + o.fn
        s.per_field.update(o.per_field)
        s.errors.extend(o.errors[: max(0, 40 - len(s.errors))])
        counts = (
            "written",
            "wrong_values",
            "unpaired",
            "duplicates",
            "guessed",
            "unreadable",
            "listed_unreadable",
        )
        for name in counts:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.family_total.update(other.family_total)
        self.family_found.update(other.family_found)
        for family, examples in other.misses.items():
            mine = self.misses.setdefault(family, [])
            mine.extend(examples[: max(0, 3 - len(mine))])
        self.failures.extend(other.failures)


def truth_row(t: WrittenTruth) -> FieldRow:
    return {
        "key": None,
        "loinc": t.loinc,
        "value": t.value,
        "unit": t.ucum,
        "flag": t.flag,
        "reference": (t.reference_low, t.reference_high, t.reference_text),
        "effective": t.effective,
    }


def found_row(r: ExtractedLab) -> FieldRow:
    effective: Hashable = r.effective
    if r.effective is not None and r.effective_time is not None:
        effective = datetime.combine(r.effective, r.effective_time)
    return {
        "key": None,
        "loinc": r.loinc,
        "value": r.value,
        "unit": r.unit,
        "flag": r.flag.value if r.flag else None,
        "reference": (r.reference_low, r.reference_high, r.reference_text),
        "effective": effective,
    }


def _centre(box: BBox) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _inside(point: tuple[float, float], box: BBox, pad: float) -> bool:
    return box[0] - pad <= point[0] <= box[2] + pad and box[1] - pad <= point[1] <= box[3] + pad


def _nearest(point: tuple[float, float], boxes: Sequence[tuple[int, BBox]], pad: float) -> int | None:
    hits = [
        (abs(_centre(b)[0] - point[0]) + abs(_centre(b)[1] - point[1]), i)
        for i, b in boxes
        if _inside(point, b, pad)
    ]
    return min(hits)[1] if hits else None


def grade(truth: FuzzTruth, got: LabPdfExtraction, *, label: str = "", tolerance: float = 2.0) -> Grade:
    """``got`` against ``truth``: paired by position, scored per field, precision failures named."""
    out = Grade(written=len(got.results), unreadable=len(truth.unreadable))
    t_rows: list[FieldRow] = []
    f_rows: list[FieldRow] = []
    paired: dict[int, ExtractedLab] = {}
    for index, found in enumerate(got.results):
        centre = _centre(found.bbox)
        on_page = [(i, t.bbox) for i, t in enumerate(truth.results) if t.page == found.page]
        hit = _nearest(centre, on_page, tolerance)
        if hit is not None and hit not in paired:
            paired[hit] = found
            continue
        bad = [(i, u.bbox) for i, u in enumerate(truth.unreadable) if u.page == found.page]
        if hit is not None:
            out.duplicates += 1
            out.failures.append(f"{label}: {found.name!r} = {found.value_text!r} p{found.page} written twice")
        elif _nearest(centre, bad, tolerance) is not None:
            out.guessed += 1
            out.failures.append(
                f"{label}: guessed {found.value_text!r} for an unreadable row ({found.name!r})"
            )
        else:
            out.unpaired += 1
            out.failures.append(
                f"{label}: {found.name!r} = {found.value_text!r} p{found.page} is no printed value"
            )
        f_rows.append({**found_row(found), "key": ("found", index)})
    for i, t in enumerate(truth.results):
        t_rows.append({**truth_row(t), "key": ("truth", i)})
        match = paired.get(i)
        for family in t.families:
            out.family_total[family] += 1
        if match is None:
            for family in t.families:
                out.misses.setdefault(family, [])
                if len(out.misses[family]) < 3:
                    out.misses[family].append(f"{label} p{t.page}: {t.name} {t.value_text} (missed)")
            continue
        f_rows.append({**found_row(match), "key": ("truth", i)})
        if match.value != t.value:
            out.wrong_values += 1
            out.failures.append(f"{label}: {t.name} truth {t.value!r} written {match.value!r}")
            continue
        for family in t.families:
            out.family_found[family] += 1
    for u in truth.unreadable:
        first = u.name.split()[0].lower().rstrip(",")
        for row in got.unparsed:
            box: BBox | None = getattr(row, "bbox", None)  # the reader's box of the row, where it gives one
            located = _inside(_centre(u.bbox), box, tolerance) if box else first in row.text.lower()
            if row.page == u.page and located:
                out.listed_unreadable += 1
                break
    score_rows(t_rows, f_rows, out.score)
    return out


def text_in_box(words: Sequence[tuple[float, float, float, float, str]], box: BBox) -> str:
    """The words of a page whose centre lies inside ``box``, in reading order."""
    inside = [w for w in words if _inside(((w[0] + w[2]) / 2, (w[1] + w[3]) / 2), box, 0.5)]
    inside.sort(key=lambda w: (round((w[1] + w[3]) / 2 / 3), w[0]))
    return " ".join(w[4] for w in inside)
