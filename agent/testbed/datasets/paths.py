"""Where the external benchmark data lies: `../shared/data` beside the checkout by default."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "shared_data_dir"]

ENV_VAR = "CHARTAGENT_SHARED_DATA"
# agent/testbed/datasets/paths.py -> repo root -> its parent holds shared/.
_DEFAULT = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def shared_data_dir(override: Path | None = None) -> Path:
    """`override`, else $CHARTAGENT_SHARED_DATA, else `../shared/data` beside the repository."""
    if override is not None:
        return override
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else _DEFAULT
