"""(being built: issue 11)"""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Add this feature's routes to `app`."""
