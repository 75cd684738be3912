"""tools.imaging.prepare (one entry point per source, what was selected) and the task registry, on files."""

from __future__ import annotations

from pathlib import Path

import imaging_series
import pytest
from pydicom.uid import generate_uid

from tools.imaging.errors import SeriesSelectionError
from tools.imaging.prepare import prepare, prepare_file, prepare_folder
from tools.imaging.selection import ImagingTask, Several
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.tasks.cxr_localization import CxrLocalization
from tools.medgemma.tasks.registry import AnalysisTask, TaskOptions, default_task, lookup, tasks_for
from tools.medgemma.tasks.volume_findings import VolumeFindings


@pytest.fixture
def study(tmp_path: Path) -> tuple[Path, str, list[str], list[str]]:
    """Two CT series (SeriesNumber 4 read first, then 2), an MR series, an SR and a file cut short."""
    study_uid = str(generate_uid())
    four = imaging_series.ct_series(5, seed=1, study_uid=study_uid)
    two = imaging_series.ct_series(3, seed=2, study_uid=study_uid)
    for series, number in ((four, 4), (two, 2)):
        for ds in series:
            ds.SeriesNumber = number
    folder = tmp_path / "study"
    imaging_series.write_series(folder, four, prefix="a")
    imaging_series.write_series(folder, two, prefix="b")
    imaging_series.write_series(folder, imaging_series.mr_series(2, seed=3), prefix="c")
    imaging_series.write_series(folder, [imaging_series.non_image("SR")], prefix="d")
    cut = folder / "e.dcm"
    cut.write_bytes((folder / "a00000.dcm").read_bytes()[:400])
    return (
        folder,
        study_uid,
        [str(ds.SeriesInstanceUID) for ds in (two[0], four[0])],
        [str(ds.SOPInstanceUID) for ds in two],
    )


async def test_a_folder_gives_the_policys_series_with_what_to_cite(
    study: tuple[Path, str, list[str], list[str]],
) -> None:
    folder, study_uid, (two, four), sops = study
    result = await prepare_folder(folder, ImagingTask.CT)
    done = result.one()
    assert done.selected.series_uid == two == done.images.metadata.series_uid
    assert done.selected.study_uid == study_uid
    assert done.selected.rule == "first of 2: lowest SeriesNumber"
    assert done.selected.candidates == (two, four)
    assert set(done.selected.instance_uids) == set(sops)  # 3 slices, all shown
    assert [f.input for f in result.failures] == [str(folder / "e.dcm")]
    assert [f.kind for f in result.failures] == ["input"]
    assert [s.modality for s in result.skipped] == ["SR"]
    assert result.problem is None


async def test_refuse_keeps_the_refusal_beside_the_failures_and_all_prepares_each(
    study: tuple[Path, str, list[str], list[str]],
) -> None:
    folder, _, (two, four), _ = study
    refused = await prepare_folder(folder, ImagingTask.CT, several=Several.REFUSE)
    assert refused.prepared == ()
    assert isinstance(refused.problem, SeriesSelectionError)
    assert refused.problem.series_uids == (two, four)
    assert len(refused.failures) == 1
    with pytest.raises(SeriesSelectionError, match="2 CT series; choose one"):
        refused.one()
    every = await prepare_folder(folder, ImagingTask.CT, several=Several.ALL)
    assert [p.selected.series_uid for p in every.prepared] == [two, four]
    named = await prepare(str(folder), ImagingTask.CT, series=four, several=Several.REFUSE)
    assert named.one().selected.rule == "requested"
    assert named.one().images.metadata.source == str(folder)


async def test_a_registered_task_runs_on_what_prepare_returns(
    study: tuple[Path, str, list[str], list[str]], tmp_path: Path
) -> None:
    folder, *_ = study
    ct = (await prepare_folder(folder, ImagingTask.CT)).one()
    spec = lookup(ImagingTask.CT, AnalysisTask.FINDINGS)
    job = spec.job(ct.prepared, options=TaskOptions(max_new_tokens=64))
    assert job.request.image_count == 3
    assert job.request.settings.max_new_tokens == 64
    backend = ScriptedBackend(
        ['{"findings": [{"description": "a nodule", "slices": [2]}], "impression": "x"}']
    )
    run = await job.run(backend)
    assert isinstance(run.result, VolumeFindings)
    assert run.result.findings[0].slices == (2,)
    assert run.prompt_version == spec.prompt_version == "volume-findings/1"

    xray = imaging_series.chest_xray(60, 40)
    path = tmp_path / "cxr.dcm"
    xray.save_as(path, enforce_file_format=True)
    cxr = (await prepare_file(path, ImagingTask.CXR)).one()
    boxes = lookup(ImagingTask.CXR, AnalysisTask.LOCALIZE).job(cxr.prepared)
    run = await boxes.run(ScriptedBackend(['[{"box_2d": [0, 500, 1000, 1000], "label": "right lung"}]']))
    assert isinstance(run.result, CxrLocalization)
    assert (run.result.image_height, run.result.image_width) == (60, 40)  # back in original pixels
    with pytest.raises(ValueError, match="cxr compare needs prior"):
        lookup(ImagingTask.CXR, AnalysisTask.COMPARE).job(cxr.prepared)
    assert (
        lookup(ImagingTask.CXR, AnalysisTask.COMPARE).job(cxr.prepared, cxr.prepared).request.image_count == 2
    )


def test_the_registry_knows_each_modalitys_tasks_and_defaults() -> None:
    assert tasks_for(ImagingTask.CXR) == (AnalysisTask.LOCALIZE, AnalysisTask.COMPARE)
    assert default_task(ImagingTask.CXR, has_prior=True) is AnalysisTask.COMPARE
    assert default_task(ImagingTask.CXR, has_prior=False) is AnalysisTask.LOCALIZE
    assert default_task(ImagingTask.WSI, has_prior=True) is AnalysisTask.FINDINGS
    with pytest.raises(KeyError, match="localize does not apply to ct; use findings"):
        lookup(ImagingTask.CT, AnalysisTask.LOCALIZE)
