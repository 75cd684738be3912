"""Fixtures of the integration tests beyond the session servers of tests/conftest.py.

The EHR stand-in's fixtures live in `ehr_fixtures` (import `EhrStandin` from there for types).
They are imported, not listed in `pytest_plugins`: pytest allows that list only in the top-level
conftest.
"""

from ehr_fixtures import ehr_standin, ehr_standin_factory

__all__ = ["ehr_standin", "ehr_standin_factory"]
