"""Real-world data loaders: SMART Health IT Synthea bundles and MedAgentBench (in `../shared/data`)."""

from agent.testbed.datasets.paths import shared_data_dir
from agent.testbed.datasets.report import LoadReport, RejectedEntry

__all__ = ["LoadReport", "RejectedEntry", "shared_data_dir"]
