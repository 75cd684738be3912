"""The imaging task registry: (modality, task) -> request builder, output parser and prompt version.

| modality | task | module | inputs |
|---|---|---|---|
| ct, mri | findings | `volume_findings` | the prepared slices (`SLICE n` labels) |
| cxr | localize | `cxr_localization` | the padded image; boxes mapped back through its padding |
| cxr | compare | `cxr_comparison` | the prior, then the current image (and their dates) |
| wsi | findings | `slide_description` | the tissue patches, magnification from the level's spacing |

Each modality's first task is its default; `compare` is the chest X-ray default when a prior is
given. Every caller (the `analyze` command, the imaging review, the agent's per-study tool) builds
its model call here, so a prompt version always names the same prompt and parser:

    spec = lookup(ImagingTask.CT, AnalysisTask.FINDINGS)
    job = spec.job(prepared.prepared, options=TaskOptions(question=...))
    run = await job.run(backend)          # TaskRun: parsed result, model, usage, prompt version
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from types import MappingProxyType
from typing import Final

from tools.imaging.errors import ImagingError
from tools.imaging.prepared import PreparedImages
from tools.imaging.selection import ImagingTask
from tools.imaging.wsi import PreparedSlide
from tools.medgemma.tasks import cxr_comparison, cxr_localization, slide_description, volume_findings
from tools.medgemma.tasks.output import TaskOutput
from tools.medgemma.tasks.runner import TaskRun, run_task
from tools.medgemma.types import GenerationSettings, ModelBackend, ModelRequest

__all__ = [
    "REGISTRY",
    "AnalysisTask",
    "Job",
    "TaskOptions",
    "TaskSpec",
    "default_task",
    "lookup",
    "tasks_for",
]

Prepared = PreparedImages | PreparedSlide


class AnalysisTask(StrEnum):
    FINDINGS = "findings"
    LOCALIZE = "localize"
    COMPARE = "compare"


@dataclass(frozen=True)
class TaskOptions:
    """Per-run choices: the question instead of the task's default, thinking, the answer length, dates."""

    question: str | None = None
    thinking: bool = False
    max_new_tokens: int | None = None
    current_date: str | None = None  # comparisons: shown to the model next to each image
    prior_date: str | None = None

    def settings(self, default: GenerationSettings) -> GenerationSettings:
        if self.max_new_tokens is None:
            return default
        return GenerationSettings.model_validate(
            {**default.model_dump(), "max_new_tokens": self.max_new_tokens}
        )


@dataclass(frozen=True)
class Job:
    """One model call: the request, its strict parser, and the prompt version they belong to."""

    request: ModelRequest
    parse: Callable[[str], TaskOutput]
    prompt_version: str

    async def run(self, backend: ModelBackend) -> TaskRun[TaskOutput]:
        """Generate and parse (`run_task`); an unreadable answer is a ModelOutputError."""
        return await run_task(backend, self.request, self.parse, prompt_version=self.prompt_version)


Builder = Callable[[Prepared, Prepared | None, TaskOptions], Job]


@dataclass(frozen=True)
class TaskSpec:
    modality: ImagingTask
    task: AnalysisTask
    prompt_version: str
    needs_prior: bool
    build: Builder

    def job(
        self, current: Prepared, prior: Prepared | None = None, options: TaskOptions | None = None
    ) -> Job:
        """The model call for these prepared inputs; a prior is required by, and only taken by, `compare`."""
        if self.needs_prior != (prior is not None):
            need = "needs" if self.needs_prior else "takes no"
            raise ValueError(f"{self.modality.value} {self.task.value} {need} prior")
        return self.build(current, prior, options or TaskOptions())


def _images(prepared: Prepared, what: str) -> PreparedImages:
    if not isinstance(prepared, PreparedImages):
        raise TypeError(f"{what}: expected prepared series images, got a slide")
    return prepared


def _volume_findings(modality: volume_findings.VolumeModality) -> Builder:
    def build(current: Prepared, prior: Prepared | None, options: TaskOptions) -> Job:
        images = _images(current, volume_findings.task_name(modality))
        request = volume_findings.build_request(
            images.images,
            modality=modality,
            series_description=images.metadata.series_description,
            question=options.question,
            thinking=options.thinking,
            settings=options.settings(volume_findings.DEFAULT_SETTINGS),
        )
        parse = partial(volume_findings.parse, modality=modality, slice_count=len(images.images))
        return Job(request, parse, volume_findings.PROMPT_VERSION)

    return build


def _cxr_localize(current: Prepared, prior: Prepared | None, options: TaskOptions) -> Job:
    images = _images(current, cxr_localization.TASK)
    padding = images.metadata.padding
    if padding is None:  # prepare_cxr always records it
        raise ImagingError(f"{images.metadata.source}: the prepared chest X-ray has no padding record")
    request = cxr_localization.build_request(
        images.images[0],
        query=options.question,
        thinking=options.thinking,
        settings=options.settings(cxr_localization.DEFAULT_SETTINGS),
    )
    return Job(request, partial(cxr_localization.parse, padding=padding), cxr_localization.PROMPT_VERSION)


def _cxr_compare(current: Prepared, prior: Prepared | None, options: TaskOptions) -> Job:
    assert prior is not None  # TaskSpec.job checked it
    request = cxr_comparison.build_request(
        _images(prior, cxr_comparison.TASK).images[0],
        _images(current, cxr_comparison.TASK).images[0],
        prior_date=options.prior_date,
        current_date=options.current_date,
        question=options.question,
        thinking=options.thinking,
        settings=options.settings(cxr_comparison.DEFAULT_SETTINGS),
    )
    return Job(request, cxr_comparison.parse, cxr_comparison.PROMPT_VERSION)


def _slide_findings(current: Prepared, prior: Prepared | None, options: TaskOptions) -> Job:
    if not isinstance(current, PreparedSlide):
        raise TypeError(f"{slide_description.TASK}: expected a prepared slide")
    request = slide_description.build_request(
        current.images,
        magnification=f"{current.metadata.level_mpp:.2f} um/px",
        question=options.question,
        thinking=options.thinking,
        settings=options.settings(slide_description.DEFAULT_SETTINGS),
    )
    return Job(request, slide_description.parse, slide_description.PROMPT_VERSION)


def _spec(modality: ImagingTask, task: AnalysisTask, version: str, build: Builder) -> TaskSpec:
    return TaskSpec(modality, task, version, needs_prior=task is AnalysisTask.COMPARE, build=build)


_SPECS: Final = (
    _spec(
        ImagingTask.CT,
        AnalysisTask.FINDINGS,
        volume_findings.PROMPT_VERSION,
        _volume_findings(volume_findings.VolumeModality.CT),
    ),
    _spec(
        ImagingTask.MRI,
        AnalysisTask.FINDINGS,
        volume_findings.PROMPT_VERSION,
        _volume_findings(volume_findings.VolumeModality.MRI),
    ),
    _spec(ImagingTask.CXR, AnalysisTask.LOCALIZE, cxr_localization.PROMPT_VERSION, _cxr_localize),
    _spec(ImagingTask.CXR, AnalysisTask.COMPARE, cxr_comparison.PROMPT_VERSION, _cxr_compare),
    _spec(ImagingTask.WSI, AnalysisTask.FINDINGS, slide_description.PROMPT_VERSION, _slide_findings),
)
REGISTRY: Final[Mapping[tuple[ImagingTask, AnalysisTask], TaskSpec]] = MappingProxyType(
    {(s.modality, s.task): s for s in _SPECS}
)


def tasks_for(modality: ImagingTask) -> tuple[AnalysisTask, ...]:
    """The tasks registered for `modality`, its default first."""
    return tuple(task for (m, task) in REGISTRY if m is modality)


def default_task(modality: ImagingTask, *, has_prior: bool) -> AnalysisTask:
    """`compare` when a prior is given and the modality has it; else the modality's first task."""
    tasks = tasks_for(modality)
    if has_prior and AnalysisTask.COMPARE in tasks:
        return AnalysisTask.COMPARE
    return tasks[0]


def lookup(modality: ImagingTask, task: AnalysisTask) -> TaskSpec:
    """The registered spec; KeyError naming the pair and what the modality has instead."""
    try:
        return REGISTRY[(modality, task)]
    except KeyError:
        allowed = ", ".join(t.value for t in tasks_for(modality))
        raise KeyError(f"{task.value} does not apply to {modality.value}; use {allowed}") from None
