"""TensorRT in the built-in engine (taoskills.engine.tensorrt): gen_trt_engine for DINO and
Grounding DINO, TensorRT evaluate/inference, and the placement answer.

Real TensorRT needs an NVIDIA GPU and cannot run here, so two kinds of test:
* the not-importable branch, real: on this host ``import tensorrt`` fails, and every TensorRT
  action must stop with a NotSupported error that names the TAO deploy container and the fix;
* the builder path, against a small fake ``tensorrt`` module put into ``sys.modules`` that
  records the calls our code makes (Builder, OnnxParser, BuilderConfig, optimisation profile).
  The fake is kept to the API surface we call; it proves what we ask TensorRT for, not that
  TensorRT builds it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from taoskills.engine import tensorrt as T
from taoskills.engine.registry import HostInfo
from taoskills.errors import NotSupported, SpecError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
no_trt = pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here: the not-importable branch cannot run")


# ----------------------------------------------------------------------------- fake tensorrt


class _Tensor:
    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        self.name, self.shape = name, shape


class _Network:
    def __init__(self, inputs) -> None:
        self.inputs = [_Tensor(n, s) for n, s in inputs]
        self.num_inputs = len(self.inputs)

    def get_input(self, i):
        return self.inputs[i]


def fake_tensorrt(inputs=(("inputs", (-1, 3, 64, 96)),), *, parse_ok=True, engine=b"serialized-engine"):
    """A ``tensorrt`` stand-in whose objects append ``(call, args)`` to ``mod.calls``."""
    mod = types.ModuleType("tensorrt")
    calls: list[tuple] = []
    mod.calls = calls

    class Logger:
        WARNING, VERBOSE = "warning", "verbose"

        def __init__(self, level) -> None:
            calls.append(("Logger", level))

    class Profile:
        def set_shape(self, name, lo, mid, hi):
            calls.append(("profile.set_shape", name, lo, mid, hi))

    class Config:
        int8_calibrator = None

        def set_memory_pool_limit(self, pool, size):
            calls.append(("config.set_memory_pool_limit", pool, size))

        def set_flag(self, flag):
            calls.append(("config.set_flag", flag))

        def add_optimization_profile(self, profile):
            calls.append(("config.add_optimization_profile",))

        def set_calibration_profile(self, profile):
            calls.append(("config.set_calibration_profile",))

        def create_timing_cache(self, data):
            calls.append(("config.create_timing_cache", data))
            return types.SimpleNamespace(serialize=lambda: b"timing")

        def set_timing_cache(self, cache, ignore_mismatch):
            calls.append(("config.set_timing_cache", ignore_mismatch))

    class Builder:
        def __init__(self, logger) -> None:
            calls.append(("Builder",))
            self.config = Config()

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return _Network(inputs)

        def create_builder_config(self):
            return self.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("build_serialized_network", config.int8_calibrator is not None))
            return engine

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger) -> None:
            calls.append(("OnnxParser",))

        def parse_from_file(self, path):
            calls.append(("parse_from_file", path))
            return parse_ok

        def get_error(self, i):
            return "In node 3 (GridSample): unsupported"

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            calls.append(("IInt8EntropyCalibrator2",))

    mod.Logger, mod.Builder, mod.OnnxParser = Logger, Builder, OnnxParser
    mod.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    mod.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    mod.BuilderFlag = types.SimpleNamespace(FP16="fp16", INT8="int8")
    mod.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    return mod


def _gen_spec(tmp_path: Path, **trt) -> dict:
    onnx = tmp_path / "export" / "dino.onnx"
    onnx.parent.mkdir(parents=True, exist_ok=True)
    if not onnx.exists():
        onnx.write_bytes(b"not parsed by the fake")
    block = {"workspace_size": 512, "min_batch_size": 1, "opt_batch_size": 2, "max_batch_size": 8, "data_type": "fp16"}
    block.update(trt)
    return {
        "onnx_file": str(onnx),
        "trt_engine": str(tmp_path / "gen" / "dino.engine"),
        "batch_size": -1,
        "tensorrt": block,
    }


def _tiny_onnx(path: Path, *, qdq: bool) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("inputs", TensorProto.FLOAT, [None, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3, 8, 8])
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("z", TensorProto.INT8, [], [0])]
    nodes = (
        [
            helper.make_node("QuantizeLinear", ["inputs", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ]
        if qdq
        else [helper.make_node("Identity", ["inputs"], ["y"])]
    )
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits if qdq else [])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


# ----------------------------------------------------------------------------- not importable (real)


@no_trt
@pytest.mark.torch  # the engine CLI imports the networks' action modules (torch)
def test_without_tensorrt_gen_trt_engine_names_the_deploy_container(tmp_path, capsys):
    from taoskills.engine import cli

    spec = tmp_path / "spec.yaml"
    gen = _gen_spec(tmp_path)
    spec.write_text(json.dumps({"results_dir": str(tmp_path / "r"), "gen_trt_engine": gen}), encoding="utf-8")
    for network in ("dino", "grounding_dino"):
        assert cli.main([network, "gen_trt_engine", "-e", str(spec)]) == 1
        status = [json.loads(ln) for ln in (tmp_path / "r" / "gen_trt_engine" / "status.json").read_text().splitlines()]
        assert status[-1]["status"] == "FAILURE"
        msg = status[-1]["message"]
        assert "TensorRT" in msg and "tao-toolkit" in msg and "-deploy" in msg and "pip install tensorrt" in msg, msg
        assert not Path(gen["trt_engine"]).exists()
    with pytest.raises(NotSupported) as exc:
        T.require("DINO gen_trt_engine", "gen_trt_engine")
    assert exc.value.field == "gen_trt_engine" and "engine='tao'" in exc.value.fix


@no_trt
def test_without_tensorrt_dino_trt_evaluate_and_inference_are_refused_by_the_spec_check():
    import copy

    from taoskills.engine.dino.defaults import DEFAULTS
    from taoskills.engine.dino.spec import check

    for action in ("evaluate", "inference"):
        cfg = copy.deepcopy(DEFAULTS)
        cfg[action]["trt_engine"] = "/r/gen_trt_engine/dino.engine"
        with pytest.raises(NotSupported) as exc:
            check(cfg, action)
        assert exc.value.field == f"{action}.trt_engine" and "-deploy" in str(exc.value) and "engine='tao'" in exc.value.fix


@no_trt
@pytest.mark.torch  # placement asks for the built-in engine's libraries
def test_placement_without_tensorrt_says_the_one_thing_to_do():
    from taoskills.bank.catalog import Catalog
    from taoskills.platforms import placement

    cat = Catalog.load()
    for skill in ("tao-train-dino", "tao-train-grounding-dino"):
        info = cat.get(skill).info
        where = placement.place(info, "deploy_gen_trt_engine", platform="local")
        assert not where.runs_here
        builtin = next(o for o in where.options if o.engine == "builtin")
        assert "tensorrt" in (builtin.reason or "")  # the built-in engine implements it but lacks TensorRT here
        assert "-deploy" in where.next  # the one thing to do: the TAO deploy container
        assert placement.place(info, "train", platform="local").engine == "builtin"


def test_host_rule_needs_a_cuda_gpu_for_tensorrt_actions():
    for action in T.TRT_ACTIONS:
        issues = T.host_rule(action, {}, HostInfo(cuda=False))
        assert issues and "GPU" in issues[0]["reason"] and "-deploy" in issues[0]["fix"]
        assert T.host_rule(action, {}, HostInfo(cuda=True, gpus=1)) == []
    assert T.host_rule("train", {}, HostInfo(cuda=False)) == []


def test_descriptors_register_gen_trt_engine():
    from taoskills.engine import registry

    for network in ("dino", "grounding_dino"):
        desc = registry.get(network)
        assert desc.supports("gen_trt_engine") and desc.supports("deploy_gen_trt_engine")
        assert "tensorrt" in desc.modules_for("deploy_gen_trt_engine")[0]
        assert "tensorrt" not in desc.modules_for("train")[0]
    assert registry.get("dino").supports("deploy_evaluate") and registry.get("dino").supports("deploy_inference")


# ----------------------------------------------------------------------------- builder path (fake)


def test_fp16_dynamic_batch_engine_through_the_engine_cli(tmp_path, monkeypatch):
    from taoskills.engine import cli

    fake = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    gen = _gen_spec(tmp_path)
    gen["timing_cache"] = str(tmp_path / "cache" / "timing.bin")
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"results_dir": str(tmp_path / "r"), "gen_trt_engine": gen}), encoding="utf-8")
    assert cli.main(["dino", "gen_trt_engine", "-e", str(spec)]) == 0
    assert Path(gen["trt_engine"]).read_bytes() == b"serialized-engine"
    assert Path(gen["timing_cache"]).read_bytes() == b"timing"
    calls = fake.calls
    assert ("parse_from_file", gen["onnx_file"]) in calls
    assert ("config.set_memory_pool_limit", "workspace", 512 << 20) in calls  # workspace_size is MiB
    assert ("config.set_flag", "fp16") in calls and ("config.set_flag", "int8") not in calls
    assert ("profile.set_shape", "inputs", (1, 3, 64, 96), (2, 3, 64, 96), (8, 3, 64, 96)) in calls
    assert ("config.add_optimization_profile",) in calls and ("build_serialized_network", False) in calls
    record = json.loads((tmp_path / "r" / "gen_trt_engine" / "trt_build.json").read_text())
    assert record["data_type"] == "FP16" and record["inputs"]["inputs"][2] == [8, 3, 64, 96]
    status = [json.loads(ln) for ln in (tmp_path / "r" / "gen_trt_engine" / "status.json").read_text().splitlines()]
    assert status[-1]["status"] == "SUCCESS" and status[-1]["kpi"]["engine_mb"] > 0


def test_fixed_batch_fp32_and_multi_input_profile(tmp_path, monkeypatch):
    inputs = (("inputs", (-1, 3, 32, 32)), ("input_ids", (-1, 256)), ("attention_mask", (-1, 256)))
    fake = fake_tensorrt(inputs)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    gen = _gen_spec(tmp_path, data_type="FP32")
    gen["batch_size"] = 4
    T.build_engine(T.settings(gen))
    shapes = {c[1]: c[2:] for c in fake.calls if c[0] == "profile.set_shape"}
    assert shapes == {
        "inputs": ((4, 3, 32, 32),) * 3,
        "input_ids": ((4, 256),) * 3,
        "attention_mask": ((4, 256),) * 3,
    }
    assert not [c for c in fake.calls if c[0] == "config.set_flag"]


def test_int8_calibrates_on_images_unless_the_onnx_is_quantized(tmp_path, monkeypatch):
    from PIL import Image

    fake = fake_tensorrt((("inputs", (-1, 3, 8, 8)),))
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    gen = _gen_spec(tmp_path, data_type="INT8")
    _tiny_onnx(Path(gen["onnx_file"]), qdq=False)
    with pytest.raises(SpecError) as exc:  # INT8, plain ONNX, no calibration data
        T.build_engine(T.settings(gen))
    assert exc.value.field == "gen_trt_engine.tensorrt.calibration.cal_image_dir"

    cal = tmp_path / "cal"
    cal.mkdir()
    for i in range(4):
        Image.new("RGB", (20, 10), (i * 40, 0, 0)).save(cal / f"{i}.png")
    gen["tensorrt"]["calibration"] = {"cal_image_dir": [str(cal)], "cal_cache_file": str(tmp_path / "cal.bin")}
    gen["tensorrt"]["calibration"] |= {"cal_batch_size": 2, "cal_batches": 2}
    s = T.settings(gen)
    aug = {"input_mean": [0.5] * 3, "input_std": [0.5] * 3}
    batches = list(T.image_batches([str(cal)], aug, s)((2, 3, 8, 8)))
    assert [b.shape for b in batches] == [(2, 3, 8, 8)] * 2 and batches[0].dtype.name == "float32"
    T.build_engine(s, calibration=T.image_batches([str(cal)], aug, s))
    assert ("config.set_flag", "int8") in fake.calls and ("IInt8EntropyCalibrator2",) in fake.calls
    assert ("config.set_calibration_profile",) in fake.calls and ("build_serialized_network", True) in fake.calls
    gen["tensorrt"]["calibration"]["cal_batches"] = 3  # 6 images wanted, 4 there (TAO Deploy's rule)
    with pytest.raises(SpecError, match="cal_batch_size x cal_batches"):
        T.image_batches([str(cal)], aug, T.settings(gen))

    fake.calls.clear()
    _tiny_onnx(Path(gen["onnx_file"]), qdq=True)  # the built-in quantize output: explicit INT8, no calibrator
    T.build_engine(T.settings({**gen, "tensorrt": {**gen["tensorrt"], "calibration": {}}}))
    assert ("config.set_flag", "int8") in fake.calls and ("build_serialized_network", False) in fake.calls


def test_grounding_dino_int8_needs_a_quantized_onnx(tmp_path, monkeypatch):
    from taoskills.engine.contract import ActionContext
    from taoskills.engine.grounding_dino import gen_trt_engine as gd

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt())
    gen = _gen_spec(tmp_path, data_type="INT8")
    _tiny_onnx(Path(gen["onnx_file"]), qdq=False)
    ctx = ActionContext("grounding_dino", "gen_trt_engine", {"gen_trt_engine": gen, "dataset": {}}, tmp_path, None)
    with pytest.raises(NotSupported) as exc:
        gd.run(ctx)
    assert exc.value.field == "gen_trt_engine.tensorrt.data_type" and "-deploy" in exc.value.fix


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"data_type": "INT4"}, "gen_trt_engine.tensorrt.data_type"),
        ({"min_batch_size": 4, "opt_batch_size": 2}, "gen_trt_engine.tensorrt.opt_batch_size"),
        ({"layers_precision": ["/head/*:fp32"]}, "gen_trt_engine.tensorrt.layers_precision"),
    ],
)
def test_bad_settings_name_their_field(tmp_path, change, field):
    with pytest.raises((SpecError, NotSupported)) as exc:
        T.settings(_gen_spec(tmp_path, **change))
    assert exc.value.field == field


def test_missing_onnx_and_parse_errors_are_spec_errors(tmp_path, monkeypatch):
    gen = _gen_spec(tmp_path)
    with pytest.raises(SpecError) as exc:
        T.settings({**gen, "onnx_file": str(tmp_path / "nope.onnx")})
    assert exc.value.field == "gen_trt_engine.onnx_file"
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(parse_ok=False))
    with pytest.raises(SpecError, match="GridSample"):
        T.build_engine(T.settings(gen))
    assert not Path(gen["trt_engine"]).exists()


@pytest.mark.torch
def test_dino_trt_evaluate_and_inference_reach_the_engine_runner(tmp_path, monkeypatch):
    """With TensorRT importable (the fake), a spec with ``trt_engine`` passes the spec check and
    reaches the engine runner, which needs a CUDA GPU: on this CPU host that is the clear error."""
    import torch

    from taoskills.engine import cli
    from taoskills.engine.dino.synthetic import write_shapes_coco

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the fake tensorrt cannot stand in for a real engine run")
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt())
    src = write_shapes_coco(tmp_path / "data", n_images=2, size=64, seed=0)
    engine = tmp_path / "dino.engine"
    engine.write_bytes(b"x")
    ds = {"test_data_sources": src, "infer_data_sources": {"image_dir": src["image_dir"]}, "num_classes": 4}
    for action in ("evaluate", "inference"):
        spec = tmp_path / f"{action}.yaml"
        body = {"results_dir": str(tmp_path / "r"), "dataset": ds, action: {"trt_engine": str(engine)}}
        spec.write_text(json.dumps(body), encoding="utf-8")
        assert cli.main(["dino", action, "-e", str(spec)]) == 1
        lines = (tmp_path / "r" / action / "status.json").read_text().splitlines()
        msg = json.loads(lines[-1])["message"]
        assert "TensorRT" in msg and "CUDA GPU" in msg and "-deploy" in msg, msg
