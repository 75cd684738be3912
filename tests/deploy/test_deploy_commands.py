"""The commands the chart and the compose file run exist with the options they pass: parsed by
ChartAgent's own CLI (click) and the worker's argument parser, so a renamed option breaks here and
not in a cluster at night."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import typer.main
import yaml

from agent.cli import app
from agent.jobs import temporal_worker

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHART = DEPLOY / "helm" / "chartagent"


def rendered_commands() -> list[list[str]]:
    values = helm.values_from_yaml((CHART / "values-production.yaml").read_text())
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="chartagent", namespace="chartagent")
    commands = []
    for name, text in rendered.items():
        if not name.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if not doc or doc["kind"] not in ("Deployment", "CronJob"):
                continue
            spec: dict[str, Any] = doc["spec"]
            pod = (
                spec["jobTemplate"]["spec"]["template"]["spec"]
                if doc["kind"] == "CronJob"
                else spec["template"]["spec"]
            )
            commands += [container["args"] for container in pod["containers"] + pod.get("initContainers", [])]
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    commands += [compose["services"][name]["command"] for name in ("chartagent-api", "chartagent-worker")]
    return commands


def parse_chartagent(argv: list[str]) -> Any:
    """Parse `chartagent ARGV` down to the leaf command without running it (typer's own click)."""
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("chartagent", [], resilient_parsing=True)
    args = list(argv)
    while hasattr(command, "resolve_command"):  # a group: descend (loads the command's module)
        name, found, args = command.resolve_command(ctx, args)
        assert found is not None, argv
        command = found
        ctx = type(ctx)(command, info_name=name, parent=ctx)
    return command.make_context(ctx.info_name, args, parent=ctx.parent)


def test_the_deployments_run_known_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = rendered_commands()
    chartagent = [argv[1:] for argv in commands if argv[0] == "chartagent"]
    workers = [argv[3:] for argv in commands if argv[:3] == ["python", "-m", "agent.jobs.temporal_worker"]]
    assert len(chartagent) == 4  # serve (chart, compose), the nightly job and its pruning
    assert len(workers) == 2
    assert len(chartagent) + len(workers) == len(commands)
    for argv in chartagent:
        ctx = parse_chartagent(argv)
        assert ctx.params  # options parsed onto the command
    # The worker parses its options, then stops at the missing Temporal address (nothing starts).
    monkeypatch.delenv("CHARTAGENT_TEMPORAL_ADDRESS", raising=False)
    for argv in workers:
        with pytest.raises(SystemExit):
            temporal_worker.main(argv)
        err = capsys.readouterr().err
        assert "unrecognized arguments" not in err
        assert "CHARTAGENT_TEMPORAL_ADDRESS" in err


def test_an_unknown_option_is_refused() -> None:
    # The parse above can fail.
    with pytest.raises(Exception, match="No such option: --since-last"):
        parse_chartagent(["jobs", "run", "--cohort", "all", "--since-last"])
