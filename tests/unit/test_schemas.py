"""Generated schemas, manifests and spec templates (scripts/generate_schemas.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from taocore_helpers import experiment_config_class, load_into_experiment_config

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "generate_schemas.py"


def _load_generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_schemas", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate_schemas = _load_generator()
SKILLS = {
    "tao-train-nvdinov2": "nvdinov2",
    "tao-train-dino": "dino",
    "tao-train-grounding-dino": "grounding_dino",
    "tao-train-mask-auto-encoder": "mae",
}


def _manifest(skill: str) -> dict:
    return json.loads((REPO / "skills" / skill / "schemas" / "manifest.json").read_text(encoding="utf-8"))


def _entries():
    for skill in SKILLS:
        for key, entry in _manifest(skill)["actions"].items():
            yield pytest.param(skill, key, entry, id=f"{skill}:{key}")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.taocore
def test_regeneration_is_byte_identical():
    """The committed files are exactly what TAO Core 7.3.0 generates now (check mode)."""
    import nvidia_tao_core  # noqa: F401  (installed by setup.sh --dev)

    result = _run("--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


@pytest.mark.taocore
def test_check_mode_lists_a_changed_file(tmp_path):
    import nvidia_tao_core  # noqa: F401  (installed by setup.sh --dev)

    assert _run("--root", str(tmp_path)).returncode == 0
    target = tmp_path / "skills" / "tao-train-dino" / "schemas" / "train.schema.json"
    target.write_text(target.read_text(encoding="utf-8").replace('"num_epochs"', '"num_epoch"', 1), encoding="utf-8")
    stale = tmp_path / "skills" / "tao-train-mae-typo.txt"
    stale.write_text("not owned", encoding="utf-8")  # outside schemas/: ignored
    extra = tmp_path / "skills" / "tao-train-mask-auto-encoder" / "schemas" / "prune.schema.json"
    extra.write_text("{}", encoding="utf-8")
    result = _run("--check", "--root", str(tmp_path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "skills/tao-train-dino/schemas/train.schema.json (differs)" in lines
    assert "skills/tao-train-mask-auto-encoder/schemas/prune.schema.json (not generated; stale)" in lines
    assert len(lines) == 2


@pytest.mark.taocore
@pytest.mark.parametrize("skill,key,entry", list(_entries()))
def test_template_loads_into_tao_experiment_config(skill, key, entry):
    """Every packaged template (PyT and deploy) merges into TAO Core's structured ExperimentConfig."""
    spec = yaml.safe_load((REPO / "skills" / skill / entry["spec_template"]).read_text(encoding="utf-8"))
    cfg = load_into_experiment_config(SKILLS[skill], spec)
    assert cfg.train.num_epochs == spec["train"]["num_epochs"]
    if entry["action"] in spec:
        assert set(spec[entry["action"]]) <= set(cfg[entry["action"]].keys())


@pytest.mark.taocore
def test_structured_merge_is_strict():
    from omegaconf.errors import ConfigKeyError, ValidationError

    with pytest.raises(ConfigKeyError):
        load_into_experiment_config("dino", {"train": {"num_epoch": 3}})
    with pytest.raises(ValidationError):
        load_into_experiment_config("nvdinov2", {"train": {"num_epochs": "ten"}})


@pytest.mark.taocore
def test_mae_template_takes_the_dataclass_value_not_default_value():
    """TAO Core's converter emits default_value 1 for MAE model.num_classes; the dataclass value is 1000."""
    from omegaconf import OmegaConf

    spec = yaml.safe_load((REPO / "skills/tao-train-mask-auto-encoder/references/spec_template_train.yaml").read_text())
    tao = OmegaConf.structured(experiment_config_class("mae"))
    assert spec["model"]["num_classes"] == tao.model.num_classes == 1000
    assert spec["dataset"]["batch_size"] == tao.dataset.batch_size


@pytest.mark.parametrize("skill", list(SKILLS))
def test_manifest_lists_exactly_the_schema_files(skill):
    folder = REPO / "skills" / skill
    manifest = _manifest(skill)
    assert manifest["network_arch"] == SKILLS[skill]
    assert manifest["skill"] == skill
    listed = {e["path"] for e in manifest["actions"].values()}
    present = {f"schemas/{p.name}" for p in (folder / "schemas").glob("*.schema.json")}
    assert listed == present
    templates = {e["spec_template"] for e in manifest["actions"].values()}
    assert templates == {f"references/{p.name}" for p in (folder / "references").glob("spec_template_*.yaml")}


@pytest.mark.parametrize("skill,key,entry", list(_entries()))
def test_schema_provenance_matches_manifest(skill, key, entry):
    schema = json.loads((REPO / "skills" / skill / entry["path"]).read_text(encoding="utf-8"))
    meta = schema["x_tao_schema"]
    assert meta["network_arch"] == SKILLS[skill]
    assert meta["action"] == entry["action"]
    assert meta["container"] == entry["container"]
    assert key == (entry["action"] if entry["container"] == "train" else f"deploy_{entry['action']}")
    assert meta["tao_core_version"] == _manifest(skill)["tao_core_version"]
    assert schema["automl_default_parameters"] == entry["automl_default_parameters"]
    assert schema["automl_default_parameters"] == sorted(schema["automl_default_parameters"])
    template = yaml.safe_load((REPO / "skills" / skill / entry["spec_template"]).read_text(encoding="utf-8"))
    differs = generate_schemas.TEMPLATE_DIFFERENCES.get((SKILLS[skill], entry["action"]))
    for top in schema["default"]:
        if differs and top == entry["action"]:
            assert schema["default"][top] is None and isinstance(template[top], dict)  # the listed difference
            continue
        assert template[top] == schema["default"][top]


def test_actions_per_network_match_tao_7_3():
    keys = {skill: set(_manifest(skill)["actions"]) for skill in SKILLS}
    assert keys["tao-train-nvdinov2"] == {"train", "inference", "export", "deploy_gen_trt_engine"}
    assert keys["tao-train-dino"] == {
        "train",
        "evaluate",
        "inference",
        "export",
        "distill",
        "quantize",
        "deploy_gen_trt_engine",
        "deploy_evaluate",
        "deploy_inference",
    }
    assert keys["tao-train-grounding-dino"] == {
        "train",
        "evaluate",
        "inference",
        "export",
        "quantize",
        "deploy_gen_trt_engine",
        "deploy_evaluate",
        "deploy_inference",
    }
    assert keys["tao-train-mask-auto-encoder"] == {"train", "evaluate", "inference", "export", "deploy_gen_trt_engine"}


def test_infinity_round_trips_through_python_json():
    text = (REPO / "skills/tao-train-dino/schemas/train.schema.json").read_text(encoding="utf-8")
    assert "Infinity" in text
    schema = json.loads(text)
    bound = schema["properties"]["train"]["properties"]["num_epochs"]["maximum"]
    assert math.isinf(bound) and bound > 0
    assert json.dumps(bound) == "Infinity"


def test_distill_template_carries_the_distill_block():
    spec = yaml.safe_load((REPO / "skills/tao-train-dino/references/spec_template_distill.yaml").read_text())
    assert spec["distill"]["pretrained_teacher_model_path"] == "???"
    assert spec["distill"]["teacher"]["backbone"] == spec["model"]["backbone"]
