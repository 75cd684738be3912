"""`chartagent analyze {ct,mri,cxr,wsi} SOURCE [--prior SOURCE] [--task ...] [--question TEXT] [--json]`.

Prepares the images exactly as `chartagent imaging prepare` does (`tools.imaging.prepare`), runs
one MedGemma task from the task registry (`tools.medgemma.tasks.registry`) on the configured model
(`CHARTAGENT_MODEL_BACKEND`), parses the answer strictly and prints the validated result, labelled
as AI-generated.

Tasks: `findings` for ct, mri and wsi (the default); `localize` (default) and `compare` (the
default when `--prior` is given) for cxr. `compare` needs `--prior`, the earlier chest X-ray.
`localize` prints boxes in the original image's pixel coordinates.

Exit codes: 0 done; 1 the model was called but its answer could not be read (the message says why;
`--json` also prints the raw answer under `raw_text`) or the model call failed; 2 bad arguments,
input that cannot be prepared, or no model configured.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agent.cli.app import app
from agent.cli.imaging import SOURCE_HELP, TaskName, fail, prepared_or_fail

# The model and imaging code is imported by the command that runs it: `--help` stays fast.
if TYPE_CHECKING:
    from tools.imaging.prepare import PreparedSeries
    from tools.medgemma.tasks import ModelOutputError, TaskOutput, TaskRun
    from tools.medgemma.tasks.registry import Job as ModelJob
    from tools.medgemma.types import ModelBackend

BackendFactory = Callable[[], "ModelBackend | None"]

NO_MODEL = (
    "No model configured: set CHARTAGENT_MODEL_BACKEND=transformers (with CHARTAGENT_MODEL set to a hub id "
    "or a local model folder) or CHARTAGENT_MODEL_BACKEND=openai (with CHARTAGENT_MODEL_URL set to the "
    "server's OpenAI base, e.g. http://127.0.0.1:8000/v1)."
)
AI_LABEL = "AI-generated (MedGemma is not a clinical decision tool; review before use)"


class AnalysisTask(StrEnum):
    findings = "findings"
    localize = "localize"
    compare = "compare"


def configured_backend() -> ModelBackend | None:
    """The backend the deployment settings ask for (None: no model configured)."""
    from agent.settings import load_settings
    from tools.medgemma.factory import create_backend

    return create_backend(load_settings())


# Tests replace this with a function returning e.g. a ScriptedBackend; nothing configures a fake.
backend_factory: BackendFactory = configured_backend


@dataclass(frozen=True)
class Job:
    """One model call (from the task registry) and what its output describes."""

    model: ModelJob
    inputs: dict[str, Any]

    @property
    def prompt_version(self) -> str:
        return self.model.prompt_version


def resolve_task(modality: TaskName, task: AnalysisTask | None, prior: str | None) -> AnalysisTask:
    """The task to run (the registry's default); a task the modality has no entry for, or `--prior`
    misused, is an error."""
    from tools.imaging.selection import ImagingTask
    from tools.medgemma.tasks import registry

    kind = ImagingTask(modality.value)
    if task is None:
        task = AnalysisTask(registry.default_task(kind, has_prior=prior is not None).value)
    allowed = registry.tasks_for(kind)
    if registry.AnalysisTask(task.value) not in allowed:
        listed = ", ".join(t.value for t in allowed)
        fail(f"--task {task.value} does not apply to {modality.value}; use {listed}")
    needs_prior = registry.lookup(kind, registry.AnalysisTask(task.value)).needs_prior
    if needs_prior and prior is None:
        fail("--task compare needs --prior SOURCE (the earlier chest X-ray)")
    if not needs_prior and prior is not None:
        fail("--prior is only used by --task compare (cxr)")
    return task


def prepare_one(
    modality: TaskName, source: str, series: str | None, dicomweb_url: str | None
) -> PreparedSeries:
    """The series (or slide) `imaging prepare` would make of SOURCE; other unreadable files are warnings."""
    from tools.imaging.errors import ImagingError
    from tools.imaging.selection import Several

    result = prepared_or_fail(source, modality, series, Several.REFUSE, dicomweb_url)
    try:
        prepared = result.one()
    except ImagingError as exc:
        fail(str(exc))
    for failure in result.failures:
        if failure.kind == "input":
            typer.secho(f"warning: {failure.input} not read: {failure.reason}", fg="yellow", err=True)
    return prepared


def build_job(
    modality: TaskName,
    task: AnalysisTask,
    source: str,
    prior: str | None,
    *,
    series: str | None,
    question: str | None,
    thinking: bool,
    max_new_tokens: int | None,
    dicomweb_url: str | None,
) -> Job:
    """Prepare the inputs (tools.imaging.prepare) and build the registered task's model call."""
    from tools.imaging.errors import ImagingError
    from tools.imaging.selection import ImagingTask
    from tools.medgemma.tasks import registry

    current = prepare_one(modality, source, series, dicomweb_url)
    earlier = prepare_one(modality, prior, None, dicomweb_url) if prior is not None else None
    spec = registry.lookup(ImagingTask(modality.value), registry.AnalysisTask(task.value))
    options = registry.TaskOptions(question=question, thinking=thinking, max_new_tokens=max_new_tokens)
    try:
        model_job = spec.job(current.prepared, earlier.prepared if earlier is not None else None, options)
    except ImagingError as exc:
        fail(str(exc))
    return Job(model_job, job_inputs(current, earlier))


def job_inputs(current: PreparedSeries, prior: PreparedSeries | None) -> dict[str, Any]:
    """What the output describes, as `--json` prints it under `inputs`."""
    meta = current.prepared.metadata
    inputs: dict[str, Any] = {"series_uid": meta.series_uid, "images": int(current.prepared.images.shape[0])}
    if current.task.value == "wsi":
        inputs["level"] = current.slide.metadata.level
    inputs["warnings"] = meta.warnings
    if prior is not None:
        inputs["prior_series_uid"] = prior.prepared.metadata.series_uid
    return inputs


async def execute(backend: ModelBackend, job: Job) -> TaskRun[TaskOutput]:
    try:
        return await job.model.run(backend)
    finally:
        await backend.aclose()


def open_backend() -> ModelBackend:
    from pydantic import ValidationError

    from tools.medgemma.errors import ModelError
    from tools.medgemma.tasks.parsing import describe

    try:
        backend = backend_factory()
    except ModelError as exc:
        fail(f"the configured model cannot be used: {exc}")
    except ValidationError as exc:  # the CHARTAGENT_* settings themselves
        fail(f"the settings are invalid: {describe(exc)}")
    if backend is None:
        fail(NO_MODEL)
    return backend


@app.command("analyze")
def analyze_command(
    modality: Annotated[TaskName, typer.Argument(help="ct, mri, cxr or wsi")],
    source: Annotated[str, typer.Argument(help=SOURCE_HELP)],
    prior: Annotated[
        str | None, typer.Option("--prior", help="the earlier chest X-ray, for --task compare")
    ] = None,
    task: Annotated[
        AnalysisTask | None,
        typer.Option("--task", help="findings (ct, mri, wsi), localize or compare (cxr)"),
    ] = None,
    question: Annotated[
        str | None, typer.Option("--question", help="what to ask instead of the task's default question")
    ] = None,
    series: Annotated[str | None, typer.Option("--series", help="SeriesInstanceUID to analyze")] = None,
    thinking: Annotated[
        bool, typer.Option("--thinking", help="let the model think before answering")
    ] = False,
    max_new_tokens: Annotated[
        int | None, typer.Option("--max-new-tokens", min=1, max=32768, help="answer length limit")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    dicomweb_url: Annotated[
        str | None, typer.Option("--dicomweb-url", help="DICOMweb base URL (or CHARTAGENT_DICOMWEB_URL)")
    ] = None,
) -> None:
    """Run MedGemma on a CT, MRI, chest X-ray or whole-slide image and print the checked result."""
    from tools.medgemma.errors import ModelError
    from tools.medgemma.tasks import ModelOutputError

    chosen = resolve_task(modality, task, prior)
    job = build_job(
        modality,
        chosen,
        source,
        prior,
        series=series,
        question=question,
        thinking=thinking,
        max_new_tokens=max_new_tokens,
        dicomweb_url=dicomweb_url,
    )
    backend = open_backend()
    info = backend.info
    header = {"modality": modality.value, "task": chosen.value, "source": source, "prior": prior}
    try:
        run = asyncio.run(execute(backend, job))
    except ModelOutputError as exc:
        report_unreadable(exc, header, job, info.model_dump(mode="json"), as_json)
        raise typer.Exit(1) from None
    except ModelError as exc:
        typer.secho(f"the model call failed: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(payload(run, header, job), indent=2))
        return
    for line in render(run, chosen, modality):
        typer.echo(line)
    for note in run.result.parse_notes:
        typer.secho(f"note: {note}", fg="yellow", err=True)


def usage(run_result: Any) -> dict[str, Any]:
    fields = ("prompt_tokens", "completion_tokens", "latency_s", "time_to_first_token_s", "finish_reason")
    return {f: getattr(run_result, f) for f in fields}


def payload(run: TaskRun[TaskOutput], header: dict[str, Any], job: Job) -> dict[str, Any]:
    from tools.medgemma.tasks import cxr_localization

    result = run.result.model_dump(mode="json")
    if isinstance(run.result, cxr_localization.CxrLocalization):
        result["unknown_labels"] = list(run.result.unknown_labels)
    return {
        **header,
        "ai_generated": True,
        "inputs": job.inputs,
        "prompt_version": run.prompt_version,
        "model": run.model.model_dump(mode="json"),
        "usage": usage(run.model_result),
        "result": result,
    }


def report_unreadable(
    exc: ModelOutputError, header: dict[str, Any], job: Job, model: dict[str, Any], as_json: bool
) -> None:
    message = f"{exc} - nothing was concluded from this answer"
    if as_json:
        out = {
            **header,
            "inputs": job.inputs,
            "prompt_version": job.prompt_version,
            "model": model,
            "usage": usage(exc.model_result) if exc.model_result is not None else None,
            "error": message,
            "raw_text": exc.raw_text,
        }
        typer.echo(json.dumps(out, indent=2))
    typer.secho(message, fg="red", err=True)
    if not as_json:
        typer.secho(f"the answer began: {exc.preview}", err=True)


def render(run: TaskRun[TaskOutput], task: AnalysisTask, modality: TaskName) -> list[str]:
    """The result as lines a person reads, with the AI label and who answered."""
    from tools.medgemma.tasks import cxr_comparison, cxr_localization, slide_description, volume_findings

    r = run.result
    usage_line = (
        f"model: {run.model.name} ({run.model.backend}), prompt {run.prompt_version}, "
        f"{run.model_result.prompt_tokens} prompt + {run.model_result.completion_tokens} answer tokens"
    )
    lines = [f"{modality.value} {task.value} - {AI_LABEL}"]
    if isinstance(r, volume_findings.VolumeFindings):
        lines += [
            f"- {f.description}" + (f" (slices {', '.join(map(str, f.slices))})" if f.slices else "")
            for f in r.findings
        ] or ["- no abnormal finding reported"]
        lines.append(f"Impression: {r.impression}")
    elif isinstance(r, slide_description.SlideDescription):
        lines.append(r.description)
        lines += [f"- {f}" for f in r.findings]
    elif isinstance(r, cxr_localization.CxrLocalization):
        lines.append(
            f"boxes in original pixels [y0, x0, y1, x1] of the {r.image_height}x{r.image_width} image:"
        )
        for b in r.boxes:
            name = b.anatomy if b.anatomy is not None else f"{b.label} (not a Chest ImaGenome region)"
            lines.append(f"- {name}: [{', '.join(f'{v:.1f}' for v in b.box.as_list())}]")
        if not r.boxes:
            lines.append("- none")
    elif isinstance(r, cxr_comparison.CxrComparison):
        for c in r.comparisons:
            lines.append(f"- {c.finding}: {c.change.value}" + (f" - {c.evidence}" if c.evidence else ""))
        if not r.comparisons:
            lines.append("- no finding compared")
        if r.summary:
            lines.append(f"Summary: {r.summary}")
    lines.append(usage_line)
    return lines


__all__ = ["AnalysisTask", "analyze_command", "backend_factory", "configured_backend"]
