"""`chartagent analyze` end to end on generated DICOM (and a synthetic slide) with a scripted model.

The backend is injected through `agent.cli.analyze.backend_factory`; nothing in the configuration
can select the scripted fake.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

import agent.cli.analyze as analyze
from agent.cli.app import app
from agent.testbed.cohort.imaging import CxrSpec, CxrTruth, StudyPlan, plan_imaging, render_study
from agent.testbed.cohort.imaging.seed import identity_of
from agent.testbed.cohort.imaging.wsi_synth import make_slide_tiff
from tools.imaging.geometry import Padding, PixelBox, pixels_to_model_box
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.types import ImagePart, TextPart

pytestmark = pytest.mark.integration

IDS = [f"analyze-{i}" for i in range(7)]
Install = Callable[..., ScriptedBackend]
Studies = dict[str, tuple[StudyPlan, Path]]


def write_study(study: StudyPlan, folder: Path) -> Path:
    patient = {
        "id": study.patient_id,
        "name": [{"family": "Testperson", "given": ["Ada"]}],
        "birthDate": "1958-02-03",
        "gender": "female",
    }
    folder.mkdir(parents=True)
    for inst in render_study(study, identity_of(patient)):
        (folder / f"{inst.series_uid[-8:]}-{inst.instance_number:04d}.dcm").write_bytes(inst.data)
    return folder


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Studies:
    plan = plan_imaging(IDS, seed=5)
    root = tmp_path_factory.mktemp("analyze")
    wanted = {
        "ct": (IDS[0], "ct-chest-current"),
        "mr": (IDS[2], "mr-brain-current"),
        "cxr-prior": (IDS[4], "cxr-prior"),
        "cxr-current": (IDS[4], "cxr-current"),
    }
    out = {}
    for name, (patient_id, key) in wanted.items():
        (study,) = [s for s in plan.for_patient(patient_id) if s.key == key]
        out[name] = (study, write_study(study, root / name))
    return out


@pytest.fixture
def use_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """Install a ScriptedBackend with these answers as the CLI's backend; checks it gets closed."""
    made: list[ScriptedBackend] = []

    def install(*answers: str) -> ScriptedBackend:
        backend = ScriptedBackend(list(answers))
        made.append(backend)
        monkeypatch.setattr(analyze, "backend_factory", lambda: backend)
        return backend

    yield install
    assert all(b.closed for b in made), "the CLI must close the backend"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, ["analyze", *args])


CT_ANSWER = (
    "<unused94>thought\nSLICE 40 shows a round lesion.<unused95>"
    '```json\n{"findings": [{"description": "Round nodule in the right lower lobe", "slices": [40, 41]}], '
    '"impression": "Solitary pulmonary nodule."}\n```'
)


def test_ct_findings_json(studies: Studies, use_backend: Install) -> None:
    study, folder = studies["ct"]
    backend = use_backend(CT_ANSWER)
    result = invoke("ct", str(folder), "--json", "--question", "Is there a lung nodule?")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["task"] == "findings"
    assert out["ai_generated"] is True
    assert out["result"]["findings"] == [
        {"description": "Round nodule in the right lower lobe", "slices": [40, 41]}
    ]
    assert out["result"]["impression"] == "Solitary pulmonary nodule."
    assert out["result"]["parse_notes"] == ["thinking text removed"]
    assert out["model"]["backend"] == "fake"
    assert out["prompt_version"] == "volume-findings/1"
    assert out["usage"]["prompt_tokens"] > 85 * 256
    assert out["usage"]["completion_tokens"] > 0
    assert out["inputs"]["series_uid"] == study.series[0].uid
    (request,) = backend.requests
    parts = request.messages[-1].content
    assert request.image_count == 85
    assert isinstance(parts[0], TextPart)
    assert isinstance(parts[1], ImagePart)
    assert parts[2] == TextPart(text="SLICE 1")
    assert parts[-2] == TextPart(text="SLICE 85")
    assert isinstance(parts[-1], TextPart)
    assert parts[-1].text.startswith("Is there a lung nodule?")


def test_ct_findings_text_is_labelled(studies: Studies, use_backend: Install) -> None:
    use_backend(CT_ANSWER)
    result = invoke("ct", str(studies["ct"][1]))
    assert result.exit_code == 0, result.output
    assert "AI-generated" in result.stdout
    assert "- Round nodule in the right lower lobe (slices 40, 41)" in result.stdout
    assert "Impression: Solitary pulmonary nodule." in result.stdout
    assert "model: scripted-fake (fake)" in result.stdout


def test_garbage_answer_exits_1_with_the_raw_text(studies: Studies, use_backend: Install) -> None:
    garbage = "I think the scan looks {fine, mostly"
    use_backend(garbage)
    result = invoke("ct", str(studies["ct"][1]))
    assert result.exit_code == 1
    assert "ct-findings: cannot read the model's answer" in result.stderr
    assert "nothing was concluded" in result.stderr
    use_backend(garbage)
    result = invoke("ct", str(studies["ct"][1]), "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["raw_text"] == garbage
    assert "cannot read the model's answer" in out["error"]
    assert out["usage"]["completion_tokens"] > 0


def test_mri_needs_a_series_choice(studies: Studies, use_backend: Install) -> None:
    study, folder = studies["mr"]
    use_backend('{"findings": [], "impression": "Normal brain MRI."}')
    result = invoke("mri", str(folder))
    assert result.exit_code == 2
    assert "choose one with --series" in result.stderr
    t2 = study.series[-1].uid
    result = invoke("mri", str(folder), "--series", t2, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["inputs"]["series_uid"] == t2
    assert out["result"]["impression"] == "Normal brain MRI."


def test_cxr_localize_prints_boxes_in_original_pixels(studies: Studies, use_backend: Install) -> None:
    study, folder = studies["cxr-current"]
    assert isinstance(study.truth, CxrTruth)
    (finding,) = study.truth.findings
    b = finding.box
    # This radiograph's padding: centred in its square (prepare_cxr's rule).
    assert isinstance(study.spec, CxrSpec)
    padding = Padding.centred(study.spec.rows, study.spec.columns)
    model_box = [round(v) for v in pixels_to_model_box(PixelBox(y0=b.y0, x0=b.x0, y1=b.y1, x1=b.x1), padding)]
    answer = json.dumps(
        [
            {"box_2d": model_box, "label": finding.anatomy},
            {"box_2d": [10, 10, 990, 990], "label": "whole film"},
        ]
    )
    use_backend(f"Final Answer: ```json {answer} ```")
    result = invoke("cxr", str(folder), "--json", "--question", f"Where is the {finding.anatomy}?")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["task"] == "localize"
    first, second = out["result"]["boxes"]
    assert first["anatomy"] == finding.anatomy
    box = first["box"]
    assert np.allclose([box["y0"], box["x0"], box["y1"], box["x1"]], [b.y0, b.x0, b.y1, b.x1], atol=1.0)
    assert second["anatomy"] is None
    assert out["result"]["unknown_labels"] == ["whole film"]
    assert out["result"]["image_height"] == study.spec.rows

    use_backend(f"Final Answer: ```json {answer} ```")
    text = invoke("cxr", str(folder)).stdout
    assert f"- {finding.anatomy}: [" in text
    assert "- whole film (not a Chest ImaGenome region): [" in text


def test_cxr_compare_sends_prior_then_current(studies: Studies, use_backend: Install) -> None:
    prior_dir, current_dir = studies["cxr-prior"][1], studies["cxr-current"][1]
    backend = use_backend(
        '{"comparisons": [{"finding": "consolidation", "change": "worsened", "evidence": "new opacity"}],'
        ' "summary": "New opacity."}'
    )
    result = invoke("cxr", str(current_dir), "--prior", str(prior_dir), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["task"] == "compare"
    assert out["result"]["comparisons"][0]["change"] == "worsened"
    assert out["inputs"]["prior_series_uid"] == studies["cxr-prior"][0].series[0].uid
    (request,) = backend.requests
    first, second, prompt = request.messages[-1].content
    assert isinstance(first, ImagePart)
    assert isinstance(second, ImagePart)
    assert isinstance(prompt, TextPart)
    # The current study has a new opacity the prior lacks: the two images differ, prior first.
    assert not np.array_equal(first.image, second.image)
    assert prompt.text.startswith("The first image is the prior chest X-ray")


def test_argument_errors_exit_2(studies: Studies, use_backend: Install) -> None:
    backend = use_backend("unused")
    current = str(studies["cxr-current"][1])
    result = invoke("cxr", current, "--task", "compare")
    assert result.exit_code == 2
    assert "--task compare needs --prior" in result.stderr
    result = invoke("cxr", current, "--task", "findings")
    assert result.exit_code == 2
    assert "does not apply to cxr; use localize, compare" in result.stderr
    result = invoke("ct", str(studies["ct"][1]), "--prior", current)
    assert result.exit_code == 2
    result = invoke("ct", current)
    assert result.exit_code == 2
    assert "modality DX does not fit the ct preparation" in result.stderr
    assert backend.requests == []
    backend.closed = True  # never opened


def test_no_model_configured_exits_2_saying_what_to_set(
    studies: Studies, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARTAGENT_MODEL_BACKEND", "none")
    result = invoke("cxr", str(studies["cxr-current"][1]))
    assert result.exit_code == 2
    assert "No model configured: set CHARTAGENT_MODEL_BACKEND=transformers" in result.stderr
    monkeypatch.setenv("CHARTAGENT_MODEL_BACKEND", "openai")
    monkeypatch.delenv("CHARTAGENT_MODEL_URL", raising=False)
    result = invoke("cxr", str(studies["cxr-current"][1]))
    assert result.exit_code == 2
    assert "CHARTAGENT_MODEL_URL" in result.stderr
    monkeypatch.setenv("CHARTAGENT_MODEL_BACKEND", "bogus")
    result = invoke("cxr", str(studies["cxr-current"][1]))
    assert result.exit_code == 2
    assert "invalid setting: CHARTAGENT_MODEL_BACKEND" in result.stderr


def test_wsi_description(tmp_path: Path, use_backend: Install) -> None:
    slide = make_slide_tiff(
        tmp_path / "slide.tif", seed=3, size=(4096, 4096), mpp=0.5, downsamples=(1, 2, 8), n_islands=2
    )
    backend = use_backend('{"description": "Synthetic tissue.", "findings": ["no lesion"]}')
    result = invoke("wsi", str(slide.path), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["result"]["description"] == "Synthetic tissue."
    assert out["prompt_version"] == "wsi-description/1"
    (request,) = backend.requests
    parts = request.messages[-1].content
    assert isinstance(parts[0], TextPart)
    assert all(isinstance(p, ImagePart) for p in parts[1:])
    assert request.image_count == out["inputs"]["images"] >= 1


def test_tiny_transformers_model_through_the_configured_factory(
    studies: Studies, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real path (settings -> create_backend -> transformers on CPU): random weights answer
    meaningless text, which is an exit 1 with the raw answer and the usage kept."""
    from tools.medgemma.tiny_model import build_tiny_medgemma

    model = build_tiny_medgemma(tmp_path / "tiny")
    monkeypatch.setenv("CHARTAGENT_MODEL_BACKEND", "transformers")
    monkeypatch.setenv("CHARTAGENT_MODEL", str(model))
    monkeypatch.setenv("CHARTAGENT_MODEL_DEVICE", "cpu")
    result = invoke("cxr", str(studies["cxr-current"][1]), "--json", "--max-new-tokens", "8")
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out["model"]["backend"] == "transformers"
    assert out["usage"]["completion_tokens"] == 8
    assert out["usage"]["prompt_tokens"] > 256  # one image is 256 soft tokens
    assert "stopped at max_new_tokens=8" in out["error"]
    assert out["raw_text"]
