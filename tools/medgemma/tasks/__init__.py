"""Per-modality MedGemma tasks: each a pure prompt builder and a strict parser with a prompt version.

| module | `build_request` inputs | `parse` result |
|---|---|---|
| `volume_findings` | CT/MRI slices (instruction, image + `SLICE n` each, question last) | `VolumeFindings` |
| `slide_description` | WSI patches (prompt first, then patches) | `SlideDescription` |
| `cxr_localization` | one padded CXR; parse needs its `Padding` | `CxrLocalization` (original pixels) |
| `cxr_comparison` | prior, then current CXR, then the prompt | `CxrComparison` |
| `lab_extraction` | lab-report page images | `LabExtraction` |
| `fact_qa` | fact lines, question last | `FactAnswer` |

An answer that cannot be read strictly is a `ModelOutputError` keeping the raw text
(`parsing` says what is tolerated). `run_task` runs one on a `ModelBackend`.
"""

from tools.medgemma.tasks.errors import ModelOutputError
from tools.medgemma.tasks.output import TaskOutput
from tools.medgemma.tasks.runner import TaskRun, run_task

__all__ = ["ModelOutputError", "TaskOutput", "TaskRun", "run_task"]
