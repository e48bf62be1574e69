"""The whole chain through the CLI, as real processes: list -> route -> build -> validate ->
preflight -> run train (built-in engine, local platform) -> checkpoint -> inference -> export.

The engine is the fake, torch-free NVDINOv2 (tests/fake_engine.py, loaded in every child process
through TAO_SKILLS_PLUGINS); real training end to end is tests/e2e/test_demo.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine_settings import TINY_TRAIN_OVERRIDES

CLI = str(Path(sys.executable).with_name("tao-skills"))


@pytest.fixture()
def env(tmp_path, fake_engine):
    return {**os.environ, "TAO_SKILLS_HOME": str(tmp_path / "home"), "COLUMNS": "200"}


def cli(env, *args, check=True):
    proc = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"tao-skills {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def cli_json(env, *args):
    return json.loads(cli(env, *args, "--json").stdout)


def test_cli_chain_train_inference_export(tmp_path, env):
    from fake_engine import write_tiny_images

    data = tmp_path / "data"
    write_tiny_images(data / "train" / "images_train", n=8)
    write_tiny_images(data / "test" / "images_test", n=4)

    skills = cli_json(env, "skills", "list")
    assert {s["name"] for s in skills} >= {"tao-train-nvdinov2", "tao-train-dino", "tao-run-automl"}

    routed = cli_json(env, "route", "train NVDINOv2 on my photos, plain training")
    assert routed["skill"] == "tao-train-nvdinov2" and routed["action"] == "train"
    assert routed["automl_policy"]["policy"] == "off"

    sets = [f"--set={k}={v}" for k, v in TINY_TRAIN_OVERRIDES.items()]
    spec_file = tmp_path / "train.yaml"
    cli(
        env,
        "spec",
        "build",
        "tao-train-nvdinov2",
        "train",
        "--profile",
        "smoke",
        "-d",
        f"train_datasets={data / 'train'}",
        *sets,
        "-o",
        str(spec_file),
    )
    assert cli_json(env, "spec", "validate", "tao-train-nvdinov2", "train", str(spec_file))["valid"] is True
    assert cli_json(env, "preflight", "tao-train-nvdinov2", "train", str(spec_file))["ok"] is True
    script = cli(env, "render", "tao-train-nvdinov2", "train", str(spec_file)).stdout
    assert script.startswith("#!") and "taoskills.engine" in script

    train = cli_json(
        env,
        "run",
        "tao-train-nvdinov2",
        "train",
        "--automl-policy",
        "off",
        "--profile",
        "smoke",
        "-d",
        f"train_datasets={data / 'train'}",
        *sets,
    )
    assert train["status"] == "COMPLETE", train
    assert "train_loss" in train["kpis"]
    job = train["job_id"]

    ckpt = cli_json(env, "checkpoints", job, "--for", "inference")
    assert Path(ckpt["path"]).name.startswith("student_epoch_")

    inf = cli_json(env, "run", "tao-train-nvdinov2", "inference", "--parent", job, "-d", f"inference_dataset={data / 'test'}")
    assert inf["status"] == "COMPLETE", inf
    assert (Path(inf["results_dir"]) / "inference" / "embeddings.npy").exists()

    exp = cli_json(env, "run", "tao-train-nvdinov2", "export", "--parent", job)
    assert exp["status"] == "COMPLETE", exp
    assert list((Path(exp["results_dir"]) / "export").glob("*.onnx"))

    jobs = cli_json(env, "jobs", "list")
    assert [j["job_id"] for j in jobs][-1] == job and all(j["status"] == "COMPLETE" for j in jobs)
    assert "Execution status: PASS" in cli(env, "jobs", "logs", job, "--grep", "Execution status").stdout


def test_cli_bad_input_names_field_and_fix(tmp_path, env):
    proc = cli(env, "run", "tao-train-nvdinov2", "train", "-d", f"train_datasets={tmp_path}", check=False)
    assert proc.returncode == 2
    # AutoML (the default for train) checks the data first: an empty folder is named with its fix
    assert "dataset.train_dataset.images_dir" in proc.stderr and "fix:" in proc.stderr
    proc = cli(env, "skills", "show", "tao-train-dinno", check=False)
    assert proc.returncode == 2 and "tao-train-dino" in proc.stderr
