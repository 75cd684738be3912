"""Which series a task reads: the one series-selection policy (pure).

Every caller that turns "this study" into "this series" goes through `select_series`: the
`imaging prepare` and `analyze` commands (a folder, a file or a DICOMweb study), whole-slide
reading over DICOMweb, the imaging review (series listed in an ImagingStudy, or found by QIDO-RS)
and the per-study tools of the agent (`tools.imaging.prepare`).

The policy:

1. **Candidates** are the series whose Modality is one of the task's (`TASK_MODALITIES`):
   ct -> CT, mri -> MR, cxr -> CR or DX, wsi -> SM. Modality codes are compared in upper case
   without surrounding spaces. A series of another modality is never a candidate (a CT task
   ignores the MR series beside it).
2. **A requested series wins** (`--series`, `dicomweb:STUDY/SERIES`, a planner's choice): it must
   be among the series found (else `SeriesSelectionError` listing them) and of the task's
   modalities (else `WrongModalityError`).
3. **Rank** (deterministic, the same for every caller and every listing):
   a. when a counterpart series is given (the prior study's series for the current study, and
   back), the series whose SeriesDescription equals its description (case and surrounding spaces
   aside; empty descriptions never match) come first;
   b. then the lowest SeriesNumber; series without one come after every numbered series;
   c. then the SeriesInstanceUID, compared component by component as numbers (so 1.2.10 follows
   1.2.9), which makes the order total.
4. **Several candidates, none requested**: what happens is the caller's `several`, never a
   different ranking. `Several.REFUSE` (interactive commands, where a person can name one)
   raises `SeriesSelectionError` listing the candidates in rank order; `Several.FIRST` (automated
   runs: the review, the agent) takes the first in rank order and records the candidates it was
   chosen from; `Several.ALL` (`--all-series`) takes every candidate in rank order.
5. **No candidate**: one series of another modality -> `WrongModalityError` naming it; several
   -> `SeriesSelectionError` listing them with their modalities; none at all ->
   `SeriesSelectionError` (the caller adds why nothing usable was found).

Before this module, three rules disagreed: `imaging prepare` refused several candidates and listed
them in the order the files were read, whole-slide DICOMweb refused several SM series (server
order) and took any series it was given without looking at its modality, and the review took the
lowest SeriesNumber (matching descriptions only when it planned from the record).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from tools.imaging.ct import CT_MODALITIES
from tools.imaging.cxr import CXR_MODALITIES
from tools.imaging.errors import SeriesSelectionError, WrongModalityError
from tools.imaging.mri import MRI_MODALITIES

__all__ = [
    "TASK_MODALITIES",
    "ImagingTask",
    "SeriesCandidate",
    "SeriesChoice",
    "Several",
    "rank",
    "select_pair",
    "select_series",
]


class ImagingTask(StrEnum):
    """What an imaging input is prepared for: one recipe each (DESIGN.md)."""

    CT = "ct"
    MRI = "mri"
    CXR = "cxr"
    WSI = "wsi"


# The recipes' own lists (each recipe refuses a series of another modality with the same list).
TASK_MODALITIES: Final[Mapping[ImagingTask, tuple[str, ...]]] = MappingProxyType(
    {
        ImagingTask.CT: CT_MODALITIES,
        ImagingTask.MRI: MRI_MODALITIES,
        ImagingTask.CXR: CXR_MODALITIES,
        ImagingTask.WSI: ("SM",),
    }
)


class Several(StrEnum):
    """What to do with several candidates when no series was requested (policy rule 4)."""

    REFUSE = "refuse"
    FIRST = "first"
    ALL = "all"


class SeriesCandidate(BaseModel):
    """What the policy looks at of one series, from wherever it was listed."""

    model_config = ConfigDict(frozen=True)

    uid: str
    modality: str | None = None
    number: int | None = None
    description: str = ""

    @property
    def code(self) -> str:
        return (self.modality or "").strip().upper()

    @classmethod
    def from_qido(cls, match: Any) -> SeriesCandidate:
        """A `tools.imaging.dicomweb.SeriesMatch` (QIDO-RS)."""
        return cls(
            uid=match.series_instance_uid,
            modality=match.modality,
            number=match.series_number,
            description=match.series_description or "",
        )

    @classmethod
    def from_volume(cls, volume: Any) -> SeriesCandidate:
        """A `tools.imaging.volume.Volume` (SeriesNumber from its first slice's header)."""
        number = None
        if volume.slices:
            number = _int(volume.slices[0].dataset.get("SeriesNumber"))
        return cls(
            uid=volume.series_uid, modality=volume.modality, number=number, description=volume.description
        )


class SeriesChoice(BaseModel):
    """The series chosen and how: `rule` says which part of the policy decided."""

    model_config = ConfigDict(frozen=True)

    chosen: tuple[SeriesCandidate, ...]
    candidates: tuple[SeriesCandidate, ...]  # every candidate, in rank order
    rule: str

    @property
    def uids(self) -> tuple[str, ...]:
        return tuple(c.uid for c in self.chosen)

    @property
    def first(self) -> SeriesCandidate:
        return self.chosen[0]


def _int(value: Any) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _uid_key(uid: str) -> tuple[tuple[int, ...], str]:
    try:
        return tuple(int(p) for p in uid.split(".")), uid
    except ValueError:
        return (), uid


def _same_description(a: str, b: str | None) -> bool:
    return bool(b) and bool(a.strip()) and a.strip().casefold() == (b or "").strip().casefold()


def rank(series: Iterable[SeriesCandidate], *, counterpart: str | None = None) -> list[SeriesCandidate]:
    """`series` in policy order (rule 3): description match, SeriesNumber, then UID."""
    return sorted(
        series,
        key=lambda s: (
            not _same_description(s.description, counterpart),
            s.number is None,
            s.number if s.number is not None else 0,
            _uid_key(s.uid),
        ),
    )


def select_series(
    series: Sequence[SeriesCandidate],
    task: ImagingTask,
    *,
    source: str,
    requested: str | None = None,
    several: Several = Several.FIRST,
    counterpart: str | None = None,
) -> SeriesChoice:
    """The series `task` reads among `series` (module docstring); raises the policy's errors.

    `source` names the input in errors (a folder, `dicomweb:STUDY`); `counterpart` is the
    description of the series the other study of a comparison reads.
    """
    modalities = TASK_MODALITIES[task]
    found = rank(s for s in series if s.code in modalities)
    wanted = rank(found, counterpart=counterpart)
    if requested is not None:
        match = next((s for s in series if s.uid == requested), None)
        if match is None:
            uids = tuple(s.uid for s in rank(series))
            raise SeriesSelectionError(source, f"no series {requested}; found", uids)
        if match.code not in modalities:
            raise WrongModalityError(match.uid, match.modality or "", task.value, modalities)
        return SeriesChoice(chosen=(match,), candidates=tuple(wanted), rule="requested")
    if len(wanted) == 1:
        return SeriesChoice(chosen=(wanted[0],), candidates=tuple(wanted), rule="only candidate")
    if wanted:
        if several is Several.ALL:
            return SeriesChoice(chosen=tuple(wanted), candidates=tuple(wanted), rule="all candidates")
        if several is Several.REFUSE:
            raise SeriesSelectionError(
                source,
                f"{len(wanted)} {'/'.join(modalities)} series; choose one with --series or pass --all-series",
                tuple(s.uid for s in wanted),
            )
        matched = counterpart is not None and _same_description(wanted[0].description, counterpart)
        rule = "same description as the counterpart" if matched else "lowest SeriesNumber"
        return SeriesChoice(
            chosen=(wanted[0],), candidates=tuple(wanted), rule=f"first of {len(wanted)}: {rule}"
        )
    others = rank(s for s in series if s.code not in modalities)
    if len(others) == 1:
        raise WrongModalityError(others[0].uid, others[0].modality or "", task.value, modalities)
    if others:
        listed = tuple(f"{o.uid} ({o.modality or 'no modality'})" for o in others)
        raise SeriesSelectionError(source, f"no {'/'.join(modalities)} series; found", listed)
    raise SeriesSelectionError(source, f"no {'/'.join(modalities)} series")


def select_pair(
    current: Sequence[SeriesCandidate], prior: Sequence[SeriesCandidate], task: ImagingTask
) -> tuple[str | None, str | None]:
    """The series of a current study and of its prior that a comparison reads (`Several.FIRST`).

    The first current candidate (in number order) whose description a prior candidate shares is
    read with that prior series; without such a pair, each study's first candidate. A side without
    a candidate gives None (the fetch then asks the server: `select_series` on its series).
    """
    modalities = TASK_MODALITIES[task]
    mine = rank(s for s in current if s.code in modalities)
    theirs = rank(s for s in prior if s.code in modalities)
    for s in mine:
        paired = rank(theirs, counterpart=s.description)
        if paired and _same_description(paired[0].description, s.description):
            return s.uid, paired[0].uid
    return (mine[0].uid if mine else None), (theirs[0].uid if theirs else None)
