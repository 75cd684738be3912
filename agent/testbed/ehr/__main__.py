"""`python -m agent.testbed.ehr --config <file>`: serve the stand-in (uvicorn, loopback)."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from agent.testbed.ehr.app import create_app
from agent.testbed.ehr.config import EhrConfig


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m agent.testbed.ehr", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="The stand-in's JSON config.")
    args = parser.parse_args()
    config = EhrConfig.load(args.config)
    # No access log: authorize and launch URLs carry codes, states and patient ids.
    uvicorn.run(create_app(config), host=config.host, port=config.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
