"""TensorRT in the built-in engine: ``gen_trt_engine`` (exported ONNX -> serialized engine) and
running an engine for TensorRT evaluate/inference. Shared by every network that exports ONNX.

Needs NVIDIA TensorRT's Python package (``import tensorrt``) and a CUDA GPU. Where either is
missing, every entry point raises :class:`~taoskills.errors.NotSupported` naming the TAO deploy
container (``nvcr.io/nvidia/tao/tao-toolkit:<version>-deploy``), which is where TAO runs these
actions, and the fix. The placement check (the descriptor's ``action_requires``) and
:func:`host_rule` say the same thing before a job is launched.

Spec (TAO Core 7.3.0 ``GenTrtEngineConfig`` / ``TrtConfig``; DINO's ``DINOTrtConfig``):
``gen_trt_engine.onnx_file`` -> ``gen_trt_engine.trt_engine``; ``tensorrt.data_type``
``FP32|FP16|INT8`` (case-insensitive, as TAO Deploy reads it); ``tensorrt.workspace_size`` in
MiB (the builder's workspace memory pool); ``gen_trt_engine.batch_size`` -1 = dynamic batch with
an optimisation profile ``tensorrt.min/opt/max_batch_size`` (a fixed batch otherwise);
``gen_trt_engine.timing_cache`` read/updated when set; INT8 calibrates with
``tensorrt.calibration`` (``cal_cache_file``, ``cal_batch_size`` x ``cal_batches`` images, entropy
calibrator) unless the ONNX is already quantized (QuantizeLinear/DequantizeLinear nodes, e.g. the
built-in ``quantize`` output), which TensorRT builds explicitly. API: TensorRT 8.6/10 Python
(``Builder``, ``OnnxParser``, ``IBuilderConfig``, ``IOptimizationProfile``,
``IExecutionContext.execute_async_v3``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taoskills.engine.registry import HostInfo
from taoskills.errors import NotSupported, SpecError

log = logging.getLogger("taoskills.engine.tensorrt")

#: Where TAO runs TensorRT actions.
DEPLOY_CONTAINER = "nvcr.io/nvidia/tao/tao-toolkit:<version>-deploy"
#: Skill actions that need TensorRT (manifest names, as the runtime asks the registry).
TRT_ACTIONS = ("gen_trt_engine", "deploy_gen_trt_engine", "deploy_evaluate", "deploy_inference")
#: What to do when TensorRT (or a GPU) is missing here.
FIX = (
    f"run it with engine='tao' in the TAO deploy container ({DEPLOY_CONTAINER}), or on a host with an "
    "NVIDIA GPU install TensorRT's Python package (pip install tensorrt) and rerun"
)
DATA_TYPES = ("FP32", "FP16", "INT8")


def require(what: str, field: str) -> Any:
    """The ``tensorrt`` module; NotSupported (naming the TAO deploy container) when it is not importable.
    ``what``: the action, for the message (``"DINO gen_trt_engine"``)."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise NotSupported(
            f"{what} needs NVIDIA TensorRT, which is not importable here ({exc}); TAO runs it in the "
            f"TAO deploy container ({DEPLOY_CONTAINER}).",
            field=field,
            fix=FIX,
        ) from exc


def host_rule(action: str, spec: dict, host: HostInfo) -> list[dict[str, str]]:
    """Host rule for TensorRT actions: TensorRT builds and runs engines on a CUDA GPU only."""
    if action not in TRT_ACTIONS or host.cuda:
        return []
    return [
        {
            "field": "gen_trt_engine" if "gen_trt_engine" in action else f"{action.removeprefix('deploy_')}.trt_engine",
            "reason": "TensorRT builds and runs engines on an NVIDIA GPU and this host has no CUDA GPU",
            "fix": FIX,
        }
    ]


@dataclass(frozen=True)
class BuildSettings:
    """What :func:`build_engine` honours, read from a spec by :func:`settings`."""

    onnx_file: Path
    trt_engine: Path
    data_type: str = "FP32"
    workspace_mb: int = 1024
    batch_size: int = -1
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    timing_cache: Path | None = None
    cal_cache_file: Path | None = None
    cal_batch_size: int = 1
    cal_batches: int = 1
    verbose: bool = False


def _unset(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() in ("", "???"))


def settings(gen: dict[str, Any]) -> BuildSettings:
    """BuildSettings from a ``gen_trt_engine`` block. SpecError naming the field for a missing
    file, an unknown data type, a profile that is not ``min <= opt <= max``, or layer precisions."""
    trt_cfg = gen.get("tensorrt") or {}
    cal = trt_cfg.get("calibration") or {}
    onnx = gen.get("onnx_file")
    if _unset(onnx) or not Path(str(onnx)).expanduser().is_file():
        raise SpecError(
            f"gen_trt_engine.onnx_file={onnx} is not a file.",
            field="gen_trt_engine.onnx_file",
            fix="pass the .onnx file of an export job (parent_job_id of the export job).",
        )
    if _unset(gen.get("trt_engine")):
        raise SpecError(
            "gen_trt_engine.trt_engine is not set.", field="gen_trt_engine.trt_engine", fix="set the .engine file to write."
        )
    dt = str(trt_cfg.get("data_type", "FP32")).upper()
    if dt not in DATA_TYPES:
        raise SpecError(
            f"gen_trt_engine.tensorrt.data_type={trt_cfg.get('data_type')!r} is not one of {', '.join(DATA_TYPES)}.",
            field="gen_trt_engine.tensorrt.data_type",
            fix="use FP16 (recommended), FP32 or INT8.",
        )
    lo, mid, hi = (int(trt_cfg.get(k, 1)) for k in ("min_batch_size", "opt_batch_size", "max_batch_size"))
    if not 1 <= lo <= mid <= hi:
        raise SpecError(
            f"gen_trt_engine.tensorrt min/opt/max_batch_size = {lo}/{mid}/{hi} is not 1 <= min <= opt <= max.",
            field="gen_trt_engine.tensorrt.opt_batch_size",
            fix="use e.g. min_batch_size 1, opt_batch_size 1, max_batch_size 8.",
        )
    if trt_cfg.get("layers_precision"):
        raise NotSupported(
            "gen_trt_engine.tensorrt.layers_precision is not honoured by the built-in engine.",
            field="gen_trt_engine.tensorrt.layers_precision",
            fix=f"leave it empty, or build the engine in the TAO deploy container ({DEPLOY_CONTAINER}).",
        )
    cache = cal.get("cal_cache_file")
    timing = gen.get("timing_cache")
    return BuildSettings(
        onnx_file=Path(str(onnx)).expanduser(),
        trt_engine=Path(str(gen["trt_engine"])).expanduser(),
        data_type=dt,
        workspace_mb=int(trt_cfg.get("workspace_size", 1024)),
        batch_size=int(gen.get("batch_size", -1)),
        min_batch=lo,
        opt_batch=mid,
        max_batch=hi,
        timing_cache=None if _unset(timing) else Path(str(timing)).expanduser(),
        cal_cache_file=None if _unset(cache) else Path(str(cache)).expanduser(),
        cal_batch_size=int(cal.get("cal_batch_size", 1)),
        cal_batches=int(cal.get("cal_batches", 1)),
        verbose=bool(gen.get("verbose", False)),
    )


def onnx_is_quantized(path: Path) -> bool:
    """True when the ONNX graph holds QuantizeLinear/DequantizeLinear nodes (explicit INT8)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


#: ``(input shape [B, C, H, W] with B = cal_batch_size) -> iterator of float32 arrays of that shape``.
CalibrationSource = Callable[[tuple[int, ...]], Iterable[Any]]


def _calibrator(trt: Any, batches: Iterable[Any], s: BuildSettings) -> Any:
    """An entropy calibrator (``IInt8EntropyCalibrator2``) feeding ``batches`` from GPU memory."""
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.it, self.buf = iter(batches), None

        def get_batch_size(self) -> int:
            return s.cal_batch_size

        def get_batch(self, names):  # noqa: ARG002 - one image input
            x = next(self.it, None)
            if x is None:
                return None
            self.buf = torch.as_tensor(x, dtype=torch.float32).cuda().contiguous()
            return [int(self.buf.data_ptr())]

        def read_calibration_cache(self):
            p = s.cal_cache_file
            return p.read_bytes() if p and p.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            if s.cal_cache_file:
                s.cal_cache_file.parent.mkdir(parents=True, exist_ok=True)
                s.cal_cache_file.write_bytes(bytes(cache))

    return Calibrator()


def build_engine(s: BuildSettings, *, calibration: CalibrationSource | None = None, what: str = "gen_trt_engine") -> dict:
    """Parse ``s.onnx_file`` and write a serialized TensorRT engine to ``s.trt_engine``.

    Every input whose first dimension is dynamic gets the profile ``(min|opt|max batch, *rest)``
    (``batch_size`` -1) or ``(batch_size, *rest)``; other dynamic dimensions are a SpecError
    (export with a fixed image size). INT8 without QDQ nodes calibrates with ``calibration``.
    Returns ``{"trt_engine", "data_type", "inputs": {name: [min, opt, max] shapes}, "engine_mb"}``.
    Errors: NotSupported (no TensorRT or GPU), SpecError (parse errors, bad shapes, INT8 without
    calibration data), RuntimeError when TensorRT returns no engine.
    """
    trt = require(what, "gen_trt_engine")
    logger = trt.Logger(trt.Logger.VERBOSE if s.verbose else trt.Logger.WARNING)
    try:
        builder = trt.Builder(logger)
    except Exception as exc:  # noqa: BLE001 - TensorRT raises when it finds no CUDA device
        raise NotSupported(f"TensorRT could not start a builder here ({exc}).", field="gen_trt_engine", fix=FIX) from exc
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)  # implicit in TensorRT 10
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(s.onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SpecError(
            f"TensorRT cannot parse gen_trt_engine.onnx_file={s.onnx_file}: {errors}",
            field="gen_trt_engine.onnx_file",
            fix="export again with export.opset_version 17 and a fixed export.input_width/input_height.",
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, s.workspace_mb << 20)
    profile = builder.create_optimization_profile()
    shapes: dict[str, list[list[int]]] = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = [int(d) for d in tensor.shape]
        if any(d < 0 for d in dims[1:]):
            raise SpecError(
                f"ONNX input {tensor.name!r} has dynamic dimensions {dims} beyond the batch.",
                field="gen_trt_engine.onnx_file",
                fix="export with a fixed export.input_width/input_height (only the batch may be dynamic).",
            )
        if dims and dims[0] < 0:
            b = [s.min_batch, s.opt_batch, s.max_batch] if s.batch_size == -1 else [s.batch_size] * 3
            trio = [[n, *dims[1:]] for n in b]
            profile.set_shape(tensor.name, *[tuple(t) for t in trio])
        else:
            trio = [dims] * 3
        shapes[tensor.name] = trio
    config.add_optimization_profile(profile)
    if s.data_type == "FP16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif s.data_type == "INT8":
        config.set_flag(trt.BuilderFlag.INT8)
        if not onnx_is_quantized(s.onnx_file):
            if calibration is None and not (s.cal_cache_file and s.cal_cache_file.is_file()):
                raise SpecError(
                    "INT8 needs calibration images (or a calibration cache, or a quantized ONNX).",
                    field="gen_trt_engine.tensorrt.calibration.cal_image_dir",
                    fix="set cal_image_dir (cal_batch_size x cal_batches images), or use data_type FP16.",
                )
            first = next(iter(shapes.values()))[1]
            source = calibration((s.cal_batch_size, *first[1:])) if calibration else iter(())
            config.int8_calibrator = _calibrator(trt, source, s)
            config.set_calibration_profile(profile)
    cache = None
    if s.timing_cache:
        cache = config.create_timing_cache(s.timing_cache.read_bytes() if s.timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    log.info("building a %s TensorRT engine from %s (profile %s)", s.data_type, s.onnx_file, shapes)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"TensorRT returned no engine for {s.onnx_file} (see the TensorRT log above).")
    data = bytes(memoryview(blob))
    s.trt_engine.parent.mkdir(parents=True, exist_ok=True)
    s.trt_engine.write_bytes(data)
    if cache is not None and s.timing_cache:
        s.timing_cache.parent.mkdir(parents=True, exist_ok=True)
        s.timing_cache.write_bytes(bytes(memoryview(cache.serialize())))
    log.info("wrote %s (%.1f MB)", s.trt_engine, len(data) / 2**20)
    return {"trt_engine": str(s.trt_engine), "data_type": s.data_type, "inputs": shapes, "engine_mb": len(data) / 2**20}


class Runner:
    """A deserialized engine run on the current CUDA device with torch tensors as buffers.

    ``Runner(path, what, field)``; ``input_shapes``: name -> engine shape (-1 = dynamic batch);
    ``runner(**inputs)`` -> name -> output tensor (CUDA). NotSupported without TensorRT or CUDA;
    SpecError when ``path`` is not an engine this TensorRT can load.
    """

    def __init__(self, path: str | Path, *, what: str, field: str) -> None:
        import torch

        trt = require(what, field)
        if not torch.cuda.is_available():
            raise NotSupported(f"{what} runs a TensorRT engine on a CUDA GPU and this host has none.", field=field, fix=FIX)
        p = Path(str(path)).expanduser()
        if not p.is_file():
            raise SpecError(f"{field}={path} is not a file.", field=field, fix="pass the .engine file of a gen_trt_engine job.")
        self.trt, self.torch = trt, torch
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(p.read_bytes())
        if self.engine is None:
            raise SpecError(
                f"{field}={path} is not a TensorRT engine this TensorRT version can load.",
                field=field,
                fix="build the engine with gen_trt_engine on this machine (engines are tied to the GPU and TensorRT version).",
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_in = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = [n for n in names if is_in[n]]
        self.outputs = [n for n in names if not is_in[n]]
        self.input_shapes = {n: tuple(int(d) for d in self.engine.get_tensor_shape(n)) for n in self.inputs}

    def _dtype(self, name: str):
        import numpy as np

        return self.torch.from_numpy(np.zeros(1, dtype=self.trt.nptype(self.engine.get_tensor_dtype(name)))).dtype

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        torch = self.torch
        keep = {}
        for name in self.inputs:
            x = torch.as_tensor(inputs[name]).to("cuda", self._dtype(name)).contiguous()
            keep[name] = x
            self.context.set_input_shape(name, tuple(x.shape))
            self.context.set_tensor_address(name, int(x.data_ptr()))
        out = {}
        for name in self.outputs:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            out[name] = torch.empty(shape, dtype=self._dtype(name), device="cuda")
            self.context.set_tensor_address(name, int(out[name].data_ptr()))
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed (see the TensorRT log).")
        stream.synchronize()
        return out


def image_batches(
    image_dirs: Any, aug: dict[str, Any], s: BuildSettings, *, field: str = "gen_trt_engine.tensorrt.calibration.cal_image_dir"
) -> CalibrationSource:
    """Calibration batches from ``cal_image_dir`` (a folder or a list): images resized to the
    engine's H x W and normalised with ``dataset.augmentation.input_mean/input_std`` (how DINO and
    Grounding DINO read images). SpecError when fewer than ``cal_batch_size x cal_batches`` images
    exist (TAO Deploy's rule)."""
    import numpy as np
    from PIL import Image

    dirs = image_dirs if isinstance(image_dirs, list) else [image_dirs]
    if any(_unset(d) for d in dirs) or not dirs:
        raise SpecError("INT8 calibration needs images.", field=field, fix="set cal_image_dir to a folder of images.")
    files = sorted(
        f for d in dirs for f in Path(str(d)).expanduser().rglob("*") if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")
    )
    need = s.cal_batch_size * s.cal_batches
    if len(files) < need:
        raise SpecError(
            f"{field} holds {len(files)} images but cal_batch_size x cal_batches = {need}.",
            field=field,
            fix="add images or lower cal_batches (about 10% of the training images is recommended).",
        )
    mean, std = np.array(aug["input_mean"], np.float32), np.array(aug["input_std"], np.float32)

    def batches(shape: tuple[int, ...]):
        b, _, h, w = shape
        for k in range(s.cal_batches):
            arrs = []
            for f in files[k * b : (k + 1) * b]:
                img = Image.open(f).convert("RGB").resize((w, h), Image.BILINEAR)
                arrs.append(((np.asarray(img, np.float32) / 255.0 - mean) / std).transpose(2, 0, 1))
            yield np.ascontiguousarray(np.stack(arrs))

    return batches


def run_gen_trt_engine(ctx: Any, *, calibrate_images: bool = True) -> dict[str, float]:
    """The ``gen_trt_engine`` action of an image network: build ``gen_trt_engine.trt_engine`` from
    ``gen_trt_engine.onnx_file`` (:func:`build_engine`); INT8 calibrates on ``cal_image_dir``
    unless the ONNX is quantized or a calibration cache exists. ``calibrate_images=False``
    (networks with more than the image input) makes INT8 calibration NotSupported. Returns
    ``{"engine_mb"}``; the build record goes to ``<results_dir>/gen_trt_engine/trt_build.json``."""
    import json

    what = f"{ctx.display} gen_trt_engine"
    require(what, "gen_trt_engine")
    gen = ctx.cfg["gen_trt_engine"]
    s = settings(gen)
    calibration = None
    needs_cal = s.data_type == "INT8" and not (s.cal_cache_file and s.cal_cache_file.is_file())
    if needs_cal and not onnx_is_quantized(s.onnx_file):
        if not calibrate_images:
            raise NotSupported(
                f"{what}: INT8 calibration of a model with text inputs is not in the built-in engine.",
                field="gen_trt_engine.tensorrt.data_type",
                fix=f"use data_type FP16, pass the quantize job's INT8 ONNX, or run it in {DEPLOY_CONTAINER}.",
            )
        cal = ((gen.get("tensorrt") or {}).get("calibration") or {}).get("cal_image_dir")
        calibration = image_batches(cal, ctx.cfg["dataset"]["augmentation"], s)
    info = build_engine(s, calibration=calibration, what=what)
    (ctx.results_dir / "trt_build.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return {"engine_mb": float(info["engine_mb"])}
