"""The typed tool registry: every graph (and later the service and an MCP server) calls tools here.

A tool is a pydantic input model, a pydantic output model (`ToolOutput`: facts with citations),
a description a model can read, and an async function of (context, input). `ToolRegistry.call`
is the one way in: it validates the input, refuses a call that names another patient than the
context's, runs the tool, and turns every failure into a result the planner sees. A tool error
(server down, unreadable file) never ends a run or a conversation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fhir_adapters.error_tree import ChartAgentError, defect_text
from tools.registry.model import ToolContext, ToolFact, ToolOutput

__all__ = ["PatientScoped", "Tool", "ToolRegistry", "ToolResult", "failure_text"]

In = TypeVar("In", bound="PatientScoped")
Out = TypeVar("Out", bound=ToolOutput)


class PatientScoped(BaseModel):
    """The base of every tool input. `patient` may be omitted; when given it must be the patient
    of the run: a tool never reaches another patient's record."""

    model_config = ConfigDict(extra="forbid")

    patient: str | None = Field(
        default=None,
        description="Omit it: the tool always works on the patient of this conversation.",
    )


class ToolResult(BaseModel):
    """What the planner and the trace see of one call."""

    tool: str
    input: dict[str, Any]
    ok: bool
    facts: list[ToolFact] = Field(default_factory=list)
    note: str | None = None
    # Why the call failed or was refused: names the input and the problem, never patient data.
    error: str | None = None
    output: dict[str, Any] | None = None

    def fact_lines(self) -> list[str]:
        """The facts as a model reads them: `[Observation/1] text`."""
        lines = []
        for fact in self.facts:
            refs = " ".join(f"[{c.reference}]" for c in fact.citations)
            lines.append(f"{refs} {fact.text}".strip())
        return lines


@dataclass(frozen=True)
class Tool(Generic[In, Out]):
    name: str
    description: str
    input_model: type[In]
    output_model: type[Out]
    run: Callable[[ToolContext, In], Awaitable[Out]]

    def input_schema(self) -> dict[str, Any]:
        return self.input_model.model_json_schema()


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool[Any, Any]]) -> None:
        self._tools: dict[str, Tool[Any, Any]] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"two tools are named {tool.name!r}")
            self._tools[tool.name] = tool

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def openai_tools(self) -> list[dict[str, Any]]:
        """The tools in the OpenAI-compatible `tools` format (native function calling)."""
        return [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.input_schema()},
            }
            for t in self._tools.values()
        ]

    def prompt_text(self) -> str:
        """The tools as a model without native tool calling reads them: name, description, input."""
        blocks = []
        for t in self._tools.values():
            props = t.input_schema().get("properties", {})
            fields = ", ".join(
                f"{name} ({_type_of(spec)}): {spec.get('description', '')}".rstrip(": ")
                for name, spec in props.items()
                if name != "patient"
            )
            blocks.append(f"- {t.name}: {t.description}\n  input: {{{fields}}}")
        return "\n".join(blocks)

    async def call(self, name: str, raw_input: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Run one tool call; never raises for the tool's own failures (cancellation passes)."""
        echo = dict(raw_input)
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult(tool=name, input=echo, ok=False, error=f"unknown tool {name!r}")
        try:
            parsed = tool.input_model.model_validate(dict(raw_input))
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in e["loc"]) or "input" for e in exc.errors()})
            return ToolResult(tool=name, input=echo, ok=False, error=f"invalid input: {', '.join(fields)}")
        refusal = scope_refusal(parsed.patient, ctx.patient_id)
        if refusal is not None:
            return ToolResult(tool=name, input=echo, ok=False, error=refusal)
        try:
            out = await tool.run(ctx, parsed)
        except Exception as exc:  # the tool boundary: a failure is a result the planner reports
            return ToolResult(tool=name, input=echo, ok=False, error=failure_text(exc))
        return ToolResult(
            tool=name,
            input=echo,
            ok=True,
            facts=list(out.facts),
            note=out.note,
            output=out.model_dump(mode="json", exclude={"facts", "note"}),
        )


def scope_refusal(named: str | None, patient_id: str) -> str | None:
    """Why a call naming `named` is refused in a run for `patient_id`, or None."""
    if named is None:
        return None
    wanted = named.strip().removeprefix("Patient/")
    if wanted == patient_id:
        return None
    return "refused: this conversation is about one patient only; another patient was named"


def failure_text(exc: Exception) -> str:
    """Our errors (`ChartAgentError`) carry messages that name the input and the problem, never
    patient data; any other exception is a defect whose message may quote data: type and place only."""
    if isinstance(exc, ChartAgentError):
        return f"{type(exc).__name__}: {exc}"
    return defect_text(exc)


def _type_of(spec: Mapping[str, Any]) -> str:
    if "type" in spec:
        return str(spec["type"])
    options = [str(o.get("type")) for o in spec.get("anyOf", []) if o.get("type") != "null"]
    return "|".join(options) or "any"
