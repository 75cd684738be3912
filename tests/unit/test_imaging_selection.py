"""The one series-selection policy: the cases where the three old rules disagreed now have one answer.

Old rules: `imaging prepare` (refused several candidates, listed in the order files were read,
exact modality), whole-slide DICOMweb (refused several SM series in server order, took any
requested series unchecked) and the imaging review (lowest SeriesNumber, descriptions matched
exactly and only when planned from the record).
"""

from __future__ import annotations

import imaging_series
import pytest

from tools.imaging.dicomweb import SeriesMatch
from tools.imaging.errors import SeriesSelectionError, WrongModalityError
from tools.imaging.selection import (
    ImagingTask,
    SeriesCandidate,
    Several,
    rank,
    select_pair,
    select_series,
)
from tools.imaging.volume import Instance, assemble

STUDY = "1.2.826.0.1.3680043.8.498.1"


def cand(
    uid: str, modality: str | None = "CT", number: int | None = None, description: str = ""
) -> SeriesCandidate:
    return SeriesCandidate(uid=uid, modality=modality, number=number, description=description)


def test_several_candidates_rank_one_way_and_refuse_lists_the_automated_pick_first() -> None:
    # Read order (as files or a server list them) is not the rank: number, then UID as numbers.
    found = [
        cand("1.2.10", number=3),
        cand("1.2.9", number=None),
        cand("1.2.11", number=2),
        cand("1.2.8", number=3),
    ]
    picked = select_series(found, ImagingTask.CT, source="s", several=Several.FIRST)
    with pytest.raises(SeriesSelectionError) as refused:
        select_series(found, ImagingTask.CT, source="s", several=Several.REFUSE)
    every = select_series(found, ImagingTask.CT, source="s", several=Several.ALL)
    assert refused.value.series_uids == ("1.2.11", "1.2.8", "1.2.10", "1.2.9")
    assert every.uids == refused.value.series_uids
    assert picked.uids == ("1.2.11",) == refused.value.series_uids[:1]
    assert picked.rule == "first of 4: lowest SeriesNumber"
    assert "4 CT series; choose one with --series or pass --all-series" in str(refused.value)


def test_uids_order_as_numbers_not_text() -> None:
    assert [c.uid for c in rank([cand("1.2.10"), cand("1.2.9"), cand("1.2.9.1")])] == [
        "1.2.9",
        "1.2.9.1",
        "1.2.10",
    ]


def test_only_the_tasks_modalities_are_candidates_whatever_the_case() -> None:
    found = [cand("1.1", "MR", 1), cand("1.2", "ct ", 5)]  # a CT task ignores the MR beside it
    assert select_series(found, ImagingTask.CT, source="s", several=Several.REFUSE).uids == ("1.2",)
    assert select_series(found, ImagingTask.MRI, source="s", several=Several.REFUSE).uids == ("1.1",)
    assert select_series([cand("3", "dx"), cand("4", "SR")], ImagingTask.CXR, source="s").uids == ("3",)


def test_a_requested_series_must_exist_and_fit_the_task() -> None:
    found = [cand("1.1", "SM", 2), cand("1.2", "CT", 1)]
    # Old whole-slide rule: a requested CT series went to the slide reader unchecked.
    with pytest.raises(
        WrongModalityError, match=r"series 1\.2: modality CT does not fit the wsi preparation"
    ):
        select_series(found, ImagingTask.WSI, source="s", requested="1.2")
    with pytest.raises(SeriesSelectionError, match=r"no series 9\.9; found") as missing:
        select_series(found, ImagingTask.WSI, source="s", requested="9.9")
    assert missing.value.series_uids == ("1.2", "1.1")  # every series, in rank order
    chosen = select_series(found, ImagingTask.WSI, source="s", requested="1.1", several=Several.REFUSE)
    assert (chosen.uids, chosen.rule) == (("1.1",), "requested")


def test_no_candidate_names_what_was_found() -> None:
    with pytest.raises(WrongModalityError, match="modality DX does not fit the ct preparation"):
        select_series([cand("1", "DX")], ImagingTask.CT, source="s")
    with pytest.raises(SeriesSelectionError, match="no CR/DX series; found") as several_others:
        select_series([cand("2", "MR", 2), cand("1", "CT", 1)], ImagingTask.CXR, source="s")
    assert several_others.value.series_uids == ("1 (CT)", "2 (MR)")
    with pytest.raises(SeriesSelectionError, match="s: no SM series"):
        select_series([], ImagingTask.WSI, source="s")


def test_several_slides_follow_the_same_rule_as_volumes() -> None:
    """Old rule: whole-slide DICOMweb refused several SM series in server order, never ranked."""
    slides = [cand("1.3", "SM", 2), cand("1.2", "SM", 1)]
    assert select_series(slides, ImagingTask.WSI, source="s").uids == ("1.2",)
    with pytest.raises(SeriesSelectionError) as refused:
        select_series(slides, ImagingTask.WSI, source="s", several=Several.REFUSE)
    assert refused.value.series_uids == ("1.2", "1.3")


def test_the_same_series_listed_by_qido_or_assembled_from_files_give_the_same_pick() -> None:
    study = "1.2.3"
    a = imaging_series.ct_series(3, seed=1, series_uid="1.2.3.20", study_uid=study)
    b = imaging_series.ct_series(3, seed=2, series_uid="1.2.3.10", study_uid=study)
    for ds in a:
        ds.SeriesNumber = 2
    for ds in b:
        ds.SeriesNumber = 7
    assembly = assemble([Instance(f"f{i}", ds) for i, ds in enumerate([*b, *a])])  # b read first
    from_files = [SeriesCandidate.from_volume(v) for v in assembly.volumes]
    from_server = [
        SeriesCandidate.from_qido(
            SeriesMatch(study_instance_uid=study, series_instance_uid=u, modality="CT", series_number=n)
        )
        for u, n in (("1.2.3.10", 7), ("1.2.3.20", 2))
    ]
    for listed in (from_files, from_server):
        assert select_series(listed, ImagingTask.CT, source="s").uids == ("1.2.3.20",)
        with pytest.raises(SeriesSelectionError) as refused:
            select_series(listed, ImagingTask.CT, source="s", several=Several.REFUSE)
        assert refused.value.series_uids == ("1.2.3.20", "1.2.3.10")


def test_comparisons_pair_series_by_description_then_by_number() -> None:
    current = [cand("c1", "MR", 1, "AX T1 SE"), cand("c2", "MR", 2, "AX FLAIR")]
    prior = [cand("p1", "MR", 1, "AX DWI"), cand("p2", "MR", 2, "ax flair ")]  # case and spaces aside
    assert select_pair(current, prior, ImagingTask.MRI) == ("c2", "p2")
    assert select_pair(current, [cand("p3", "MR", 4, "SAG T2")], ImagingTask.MRI) == ("c1", "p3")
    assert select_pair(current, [], ImagingTask.MRI) == ("c1", None)
    # The same preference when one study's series is chosen against the other's description.
    chosen = select_series(prior, ImagingTask.MRI, source="s", counterpart="AX FLAIR")
    assert (chosen.uids, chosen.rule) == (("p2",), "first of 2: same description as the counterpart")
    # Empty descriptions never match each other.
    blank = [cand("c9", "MR", 9, ""), cand("c1", "MR", 1, "")]
    assert select_pair(blank, [cand("p1", "MR", 5, "")], ImagingTask.MRI) == ("c1", "p1")
