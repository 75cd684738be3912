"""One error tree: every exception class of ours descends from `ChartAgentError`, none from
ValueError/LookupError/RuntimeError, and a broad `except` (ValueError, Exception, BaseException)
wraps exactly one simple statement that calls no code of ours, outside a short allow-list."""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fhir_adapters.confirmed import WriteNotStored, WriteOutcomeUnknown
from fhir_adapters.error_tree import (
    BadInputError,
    ChartAgentError,
    ConfigurationError,
    ServiceError,
    ServiceHttpError,
    ServiceOutcomeUnknown,
    ServiceProtocolError,
    ServiceTransportError,
)
from fhir_adapters.errors import (
    FhirAuthError,
    FhirOutcomeUnknown,
    FhirProtocolError,
    FhirTransportError,
    ResourceParseError,
    error_for_status,
)
from tools.imaging import dicomweb
from tools.imaging.errors import DicomFileError
from tools.labs.units import UnitConversionError
from tools.medgemma.errors import ModelConfigurationError, ModelServerError, ModelTransportError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agent", "tools", "fhir_adapters")
BROAD = frozenset({"ValueError", "Exception", "BaseException"})

# (file, function) -> why it must catch everything. Keep it short: each entry is a boundary.
ALLOWED: dict[tuple[str, str], str] = {
    ("agent/service/agui.py", "_drive"): (
        "the chat stream's boundary: a failed run ends its stream with RUN_ERROR (a fixed, "
        "PHI-free message per error class) instead of a cut connection"
    ),
    ("agent/service/runs.py", "RunRegistry._execute"): (
        "the background run's boundary: its failure is reported on GET /api/runs/{id} "
        "(describe_failure keeps PHI out); nobody awaits the task to see it otherwise"
    ),
    ("agent/jobs/summarize.py", "_run_one"): (
        "the per-patient boundary: one patient's failure is reported (describe_failure keeps PHI "
        "out) and the batch goes on"
    ),
    ("tools/medgemma/batching.py", "MicroBatcher._run"): (
        "the batch boundary: whatever the backend raises is handed to each waiting caller's "
        "future (they re-raise it), and a failed batch is retried one request at a time"
    ),
    ("tools/imaging/sources.py", "_read_deferred"): (
        "a fast header reader that gives way on anything odd: pydicom's own reading then reads "
        "and judges the file, so a slip of the fast path costs speed, never a wrong answer"
    ),
}


def _sources() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# ------------------------------------------------------------------------------ the hierarchy


def _exception_classes() -> Iterator[tuple[str, type[BaseException]]]:
    """Every exception class defined at module level in our packages (modules with a class only)."""
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        names = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.bases]
        if not names:
            continue
        module = importlib.import_module(_module_name(path))
        for name in names:
            obj = getattr(module, name, None)
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                yield f"{module.__name__}.{name}", obj


def test_every_exception_class_descends_from_chart_agent_error() -> None:
    found = dict(_exception_classes())
    assert len(found) > 60  # the walk sees the families, not an empty tree
    strays = sorted(name for name, cls in found.items() if not issubclass(cls, ChartAgentError))
    assert strays == [], (
        f"exception classes outside the tree (base them in fhir_adapters.error_tree): {strays}"
    )
    builtin_bases = sorted(
        name for name, cls in found.items() if issubclass(cls, ValueError | LookupError | RuntimeError)
    )
    assert builtin_bases == [], f"`except ValueError` (or Lookup/Runtime) would catch these: {builtin_bases}"


@pytest.mark.parametrize(
    ("cls", "branch"),
    [
        (FhirAuthError, ServiceHttpError),
        (FhirTransportError, ServiceTransportError),
        (FhirProtocolError, ServiceProtocolError),
        (FhirOutcomeUnknown, ServiceOutcomeUnknown),
        (WriteNotStored, ServiceError),
        (WriteOutcomeUnknown, ServiceOutcomeUnknown),
        (ResourceParseError, BadInputError),
        (dicomweb.DicomWebNotFound, ServiceHttpError),
        (dicomweb.DicomWebTransportError, ServiceTransportError),
        (dicomweb.DicomWebProtocolError, ServiceProtocolError),
        (ModelServerError, ServiceHttpError),
        (ModelTransportError, ServiceTransportError),
        (ModelConfigurationError, ConfigurationError),
        (ConfigurationError, BadInputError),
    ],
)
def test_families_take_their_branch(cls: type[Exception], branch: type[Exception]) -> None:
    assert issubclass(cls, branch)


def test_http_errors_carry_the_status_on_the_shared_base() -> None:
    errors: list[ServiceHttpError] = [
        error_for_status(409, "PUT", "Patient/1"),
        dicomweb.error_for_status(404, "GET", "studies/1.2"),
        ModelServerError(503, "/v1/chat/completions"),
    ]
    assert [e.status for e in errors] == [409, 404, 503]
    assert str(errors[0]) == "PUT Patient/1 -> HTTP 409: no OperationOutcome"


def test_a_batch_reports_our_errors_by_message_and_hides_any_other() -> None:
    from agent.jobs.summarize import describe_failure  # here: it imports the whole graph

    # Bad input and failed services alike: the type and our (PHI-free) message.
    assert (
        describe_failure(DicomFileError("ct/1.dcm", "no pixel data"))
        == "DicomFileError: ct/1.dcm: no pixel data"
    )
    assert (
        describe_failure(UnitConversionError("mg/dL", "kg"))
        == "UnitConversionError: cannot convert 'mg/dL' to 'kg'"
    )
    assert describe_failure(ModelServerError(503, "/v1/chat/completions")) == (
        "ModelServerError: POST /v1/chat/completions -> HTTP 503"
    )
    # A defect: its message may quote the record, so only the type is told.
    hidden = describe_failure(ValueError("Jane Roe, born 1970-01-01"))
    assert hidden.startswith("internal error (ValueError at ")
    assert "Jane" not in hidden


# ------------------------------------------------------------------------------ except clauses


@dataclass(frozen=True)
class _Site:
    path: str
    function: str
    line: int
    problem: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} in {self.function or '<module>'}: {self.problem}"


def _caught(node: ast.expr | None, aliases: dict[str, set[str]]) -> set[str]:
    if node is None:
        return {"BaseException"}  # a bare except
    if isinstance(node, ast.Tuple):
        return set().union(*(_caught(e, aliases) for e in node.elts))
    if isinstance(node, ast.Name):
        return aliases.get(node.id, {node.id})
    if isinstance(node, ast.Attribute):
        return {node.attr}
    return set()


def _our_names(tree: ast.Module) -> set[str]:
    """Names bound at module level to code of ours: its own functions and classes, and imports
    from our packages."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            names.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            ours = (a for a in node.names if a.name.split(".")[0] in PACKAGES)
            names.update(a.asname or a.name.split(".")[0] for a in ours)
    return names


def _calls_ours(stmt: ast.stmt, ours: set[str]) -> str | None:
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and node.id in ours:
            return node.id
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("self", "cls")
        ):
            return f"{node.func.value.id}.{node.func.attr}"
    return None


class _Walker(ast.NodeVisitor):
    def __init__(self, path: str, tree: ast.Module) -> None:
        self.path = path
        self.ours = _our_names(tree)
        # `_ERRORS = (ValueError, KeyError)` at module level, then `except _ERRORS:`
        self.aliases = {
            t.id: _caught(node.value, {})
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        self.scope: list[str] = []
        self.sites: list[_Site] = []

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_Try(self, node: ast.Try | ast.TryStar) -> None:
        function = ".".join(self.scope)
        for handler in node.handlers:
            broad = sorted(_caught(handler.type, self.aliases) & BROAD)
            if not broad:
                continue
            site = (self.path, function)
            caught = "/".join(broad)
            if len(node.body) != 1:
                problem = f"except {caught} around {len(node.body)} statements"
            elif isinstance(node.body[0], _COMPOUND):
                problem = f"except {caught} around a block ({type(node.body[0]).__name__.lower()})"
            elif (name := _calls_ours(node.body[0], self.ours)) is not None:
                problem = f"except {caught} around code of ours ({name})"
            else:
                continue
            self.sites.append(_Site(*site, handler.lineno, problem))
        self.generic_visit(node)

    visit_TryStar = visit_Try


_COMPOUND = (
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    ast.TryStar,
    ast.Match,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
)


def _broad_sites() -> list[_Site]:
    sites: list[_Site] = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), rel)
        walker = _Walker(rel, tree)
        walker.visit(tree)
        sites.extend(walker.sites)
    return sites


def test_broad_excepts_wrap_one_foreign_parse_or_are_allowed_boundaries() -> None:
    sites = _broad_sites()
    offending = [str(s) for s in sites if (s.path, s.function) not in ALLOWED]
    assert offending == [], (
        "catch the specific class of ours, or keep `except ValueError` around one standard-library "
        "or third-party call:\n" + "\n".join(offending)
    )
    # The allow-list stays honest: every entry still names a boundary that exists.
    stale = sorted(set(ALLOWED) - {(s.path, s.function) for s in sites})
    assert stale == [], f"allow-list entries with no broad except left: {stale}"


def test_the_checker_flags_what_it_must() -> None:
    source = """
from tools.x import helper
_ERRORS = (KeyError, ValueError)
def f(text):
    try:
        n = int(text)
        m = int(text)
    except ValueError:
        pass
    try:
        helper(text)
    except _ERRORS:
        pass
    try:
        n = int(text)
    except (TypeError, ValueError):
        pass
    try:
        n = int(text)
    except KeyError:
        pass
"""
    walker = _Walker("x.py", tree := ast.parse(source))
    walker.visit(tree)
    assert [(s.line, s.problem) for s in walker.sites] == [
        (8, "except ValueError around 2 statements"),
        (12, "except ValueError around code of ours (helper)"),
    ]
