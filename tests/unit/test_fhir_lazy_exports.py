"""`fhir_adapters` exports its names lazily: a light module of the package loads nothing heavy."""

from __future__ import annotations

import importlib
import subprocess
import sys

import fhir_adapters


def test_every_export_is_its_defining_modules_object() -> None:
    sources: dict[str, str] = fhir_adapters._SOURCES
    assert set(sources) == set(fhir_adapters.__all__)
    for name, module in sources.items():
        assert getattr(fhir_adapters, name) is getattr(importlib.import_module(module), name), name


def test_importing_errors_and_flavours_loads_neither_client_nor_auth_nor_parsing() -> None:
    code = (
        "import sys, fhir_adapters.errors, fhir_adapters.flavours; "
        "print(sorted(m for m in ('fhir_adapters.client', 'fhir_adapters.auth', 'fhir_adapters.parsing', "
        "'httpx', 'fhir.resources') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(fhir_adapters, "NoSuchThing")
