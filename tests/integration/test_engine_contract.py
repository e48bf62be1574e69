"""TAO results contract, spec loading and CLI front door of the built-in engine (no training)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from taoskills.engine import capabilities, contract
from taoskills.engine.spec import apply_defaults, load_spec
from taoskills.errors import SpecError


def test_capabilities_import_without_torch():
    code = (
        "import sys, taoskills.engine, taoskills.engine.capabilities as c; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "print(c.supports('nvdinov2','train'), c.supports('nvdinov2','evaluate'), c.supports('dino','distill'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]
    assert capabilities.supported()["nvdinov2"] == ("train", "inference", "export")


def test_status_logger_format(tmp_path):
    log = contract.StatusLogger(tmp_path / "status.json")
    log.write("STARTED", "Starting X train.")
    log.write(
        "RUNNING",
        "Training loop in progress",
        kpi={"train_loss": 1},
        epoch=0,
        max_epoch=3,
        time_per_epoch=contract.format_duration(1.5),
        eta=contract.format_duration(3.0),
    )
    with pytest.raises(ValueError):
        log.write("DONE")
    lines = [json.loads(x) for x in (tmp_path / "status.json").read_text().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}", line["date"])
        assert re.fullmatch(r"\d{1,2}:\d{1,2}:\d{1,2}", line["time"])
        assert line["verbosity"] == "INFO"
    assert lines[1]["kpi"] == {"train_loss": 1.0}
    assert lines[1]["time_per_epoch"] == "0:00:01.500000" and lines[1]["eta"] == "0:00:03"
    assert list(lines[1])[:4] == ["date", "time", "status", "verbosity"]


def test_action_dir_rules(tmp_path):
    assert contract.action_dir({"results_dir": str(tmp_path)}, "train") == tmp_path / "train"
    own = tmp_path / "elsewhere"
    assert contract.action_dir({"results_dir": str(tmp_path), "export": {"results_dir": str(own)}}, "export") == own
    with pytest.raises(SpecError) as err:
        contract.action_dir({"results_dir": ""}, "train")
    assert err.value.field == "results_dir"


def test_run_action_success_failure_and_redaction(tmp_path):
    cfg = {"results_dir": str(tmp_path), "encryption_key": "s3cret-value", "x": 1}
    assert contract.run_action("nvdinov2", "train", cfg, lambda ctx: {"train_loss": 0.5}) == 0
    lines = [json.loads(x) for x in (tmp_path / "train" / "status.json").read_text().splitlines()]
    assert [line["status"] for line in lines] == ["STARTED", "SUCCESS"]
    assert lines[0]["message"] == "Starting NVDINOv2 train."
    assert lines[-1]["message"] == "Train finished successfully." and lines[-1]["kpi"] == {"train_loss": 0.5}
    assert "s3cret-value" not in (tmp_path / "train" / "experiment.yaml").read_text()

    def boom(ctx):
        raise SpecError("bad thing", field="a.b", fix="do c")

    raw = {"encryption_key": "${oc.env:MY_KEY}"}
    assert contract.run_action("nvdinov2", "export", cfg, boom, raw_cfg=raw) == 1
    lines = [json.loads(x) for x in (tmp_path / "export" / "status.json").read_text().splitlines()]
    assert lines[-1]["status"] == "FAILURE" and lines[-1]["verbosity"] == "ERROR"
    assert "bad thing" in lines[-1]["message"] and "do c" in lines[-1]["message"]
    text = (tmp_path / "export" / "experiment.yaml").read_text()
    assert "${oc.env:MY_KEY}" in text and "s3cret-value" not in text


def test_load_spec_overrides_and_env(tmp_path, monkeypatch):
    spec = tmp_path / "spec.yaml"
    spec.write_text("encryption_key: ${oc.env:TS_TEST_KEY,fallback}\ntrain:\n  num_epochs: 3\n")
    monkeypatch.setenv("TS_TEST_KEY", "abc")
    resolved, raw = load_spec(spec, ["train.num_epochs=5", "results_dir=/tmp/x", "+train.lr=1e-4"])
    assert resolved["train"]["num_epochs"] == 5 and resolved["results_dir"] == "/tmp/x"
    assert resolved["encryption_key"] == "abc" and raw["encryption_key"].startswith("${oc.env:")
    assert resolved["train"]["lr"] == pytest.approx(1e-4)
    with pytest.raises(SpecError):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError):
        load_spec(spec, ["novalue"])


def test_apply_defaults_unknown_keys_and_types():
    defaults = {"train": {"num_epochs": 10, "lr": 0.1, "path": None}, "flag": True}
    out = apply_defaults({"train": {"lr": 1, "path": "/x"}}, defaults, source="test config")
    assert out == {"train": {"num_epochs": 10, "lr": 1.0, "path": "/x"}, "flag": True}
    with pytest.raises(SpecError) as err:
        apply_defaults({"train": {"num_epoch": 3, "lr": "fast"}, "flag": 1}, defaults, source="test config")
    fields = {i.field: i for i in err.value.issues}
    assert set(fields) == {"train.num_epoch", "train.lr", "flag"}
    assert "train.num_epochs" in fields["train.num_epoch"].reason


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "taoskills.engine", *args], capture_output=True, text=True, **kw)


def test_cli_unknown_action_and_network(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("results_dir: /tmp\n")
    r = _cli("nvdinov2", "evaluate", "-e", str(spec))
    assert r.returncode == 2
    assert "train, inference, export" in r.stderr
    assert r.stdout.strip().splitlines()[-1] == "Execution status: FAIL"
    r = _cli("yolo", "train", "-e", str(spec))
    assert r.returncode == 2 and "nvdinov2" in r.stderr


def test_cli_bad_spec_fails_with_status(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("model:\n  backbone:\n    student_typo: vit_s\n")
    r = _cli("nvdinov2", "train", "-e", str(spec), f"results_dir={tmp_path}")
    assert r.returncode == 1 and r.stdout.strip().splitlines()[-1] == "Execution status: FAIL"
    line = json.loads((tmp_path / "train" / "status.json").read_text().splitlines()[-1])
    assert line["status"] == "FAILURE" and "model.backbone.student_typo" in line["message"]
