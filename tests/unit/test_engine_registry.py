"""The engine registry: discovery of network descriptors and registration of a dummy network."""

from __future__ import annotations

import json

from taoskills.engine import capabilities, registry
from taoskills.engine import cli as engine_cli
from taoskills.engine.registry import EngineNetwork, HostInfo


def test_nvdinov2_is_discovered_from_its_descriptor():
    desc = registry.get("nvdinov2")
    assert desc is not None and desc.display_name == "NVDINOv2"
    assert registry.supports("nvdinov2", "train") and not registry.supports("nvdinov2", "evaluate")
    defaults, source = desc.spec_defaults()
    assert "train" in defaults and "TAO Core 7.3.0" in source


def test_standard_host_rule_refuses_fp16_on_cpu_and_extra_gpus():
    spec = {"train": {"precision": "16-mixed", "num_gpus": 4, "num_nodes": 2}}
    fields = {i["field"] for i in registry.standard_train_host_rule("train", spec, HostInfo(cuda=False, gpus=0))}
    assert fields == {"train.precision", "train.num_gpus", "train.num_nodes"}
    assert registry.standard_train_host_rule("train", spec, HostInfo(cuda=True, gpus=4, platform="slurm")) == []
    assert registry.standard_train_host_rule("export", spec, HostInfo()) == []


def test_dummy_network_runs_through_the_engine_cli(tmp_path):
    def runner(action):
        def run(ctx):
            (ctx.results_dir / "dummy.txt").write_text(ctx.cfg["train"]["word"])
            return {"score": 1.5}

        return run

    desc = EngineNetwork(network="dummy_net", display_name="Dummy", actions=("train",), package="none", runner=runner)
    registry.register(desc)
    try:
        assert capabilities.supported()["dummy_net"] == ("train",)
        assert "dummy_net: train" in registry.describe()
        # spec defaults come from the runner's package: give the dummy an inline spec module
        import sys
        import types

        mod = types.ModuleType("none.spec")
        mod.DEFAULTS = {"results_dir": "", "train": {"word": "x"}}
        mod.SOURCE = "test dummy"
        sys.modules["none"] = types.ModuleType("none")
        sys.modules["none.spec"] = mod
        spec = tmp_path / "spec.yaml"
        spec.write_text("train:\n  word: hello\n")
        code = engine_cli.main(["dummy_net", "train", "-e", str(spec), f"results_dir={tmp_path / 'out'}"])
        assert code == 0
        assert (tmp_path / "out" / "train" / "dummy.txt").read_text() == "hello"
        lines = [json.loads(x) for x in (tmp_path / "out" / "train" / "status.json").read_text().splitlines()]
        assert lines[0]["message"] == "Starting Dummy train." and lines[-1]["kpi"] == {"score": 1.5}
        assert engine_cli.main(["dummy_net", "export", "-e", str(spec)]) == 2
    finally:
        registry.unregister("dummy_net")
        sys.modules.pop("none.spec", None)
        sys.modules.pop("none", None)
    assert not registry.supports("dummy_net", "train")
