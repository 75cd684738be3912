"""Loading the settings (every CLI command does, first) imports none of the FHIR client's modules."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.settings import Settings, SettingsError, load_settings
from fhir_adapters.flavours import FLAVOURS


def test_the_default_flavour_is_a_known_one() -> None:
    default = Settings.model_fields["fhir_flavour"].default
    assert default == "generic"
    assert default in FLAVOURS


def test_loading_default_settings_imports_no_fhir_client_module() -> None:
    code = (
        "import sys; from agent.settings import load_settings; load_settings(); "
        "print(sorted(m for m in sys.modules if m.startswith('fhir_adapters.') "
        "and m != 'fhir_adapters.error_tree'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARTAGENT_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_a_set_flavour_is_still_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTAGENT_FHIR_FLAVOUR", "hapi")
    assert load_settings().fhir_flavour == "hapi"
    monkeypatch.setenv("CHARTAGENT_FHIR_FLAVOUR", "no-such-server")
    with pytest.raises(SettingsError, match="CHARTAGENT_FHIR_FLAVOUR: not a known FHIR server flavour"):
        load_settings()
