"""A fake, torch-free NVDINOv2 for fast service, CLI and MCP tests.

It replaces the ``nvdinov2`` entry of the built-in engine's network registry with one whose
actions write what TAO's results contract promises - ``status.json`` lines (STARTED, one
RUNNING line per epoch with ``epoch``/``max_epoch``/``kpi.train_loss`` after a mid-epoch
``step``/``max_step``/``steps_per_s``/``eta`` progress line, SUCCESS),
``experiment.yaml``, TAO-named checkpoints (``model_epoch_EEE_step_SSSSS.pth``,
``student_epoch_*``, ``teacher_epoch_*``, ``nvdinov2_model_latest.pth`` link), inference
``embeddings.npy`` and an export ``onnx_file`` - without training anything. The spec defaults,
host rules and the engine CLI are the real ones, so everything up to the engine is exercised.

How it is enabled (only in tests): the ``fake_engine`` fixture (tests/conftest.py) imports this
module in-process and sets ``TAO_SKILLS_PLUGINS=fake_engine`` plus ``PYTHONPATH`` for child
processes (the runner script's ``python -m taoskills.engine``, the ``tao-skills`` CLI), where
:mod:`taoskills.plugins` imports it. Imported as a plug-in it registers the fake at once (a plain
import, e.g. for :func:`write_tiny_images`, does not); :func:`uninstall` puts the real one back. ``TAO_SKILLS_FAKE_ENGINE_EPOCH_S`` (seconds per epoch, default 0) slows it down for
cancel/kill tests.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import time
from dataclasses import replace
from pathlib import Path

from taoskills.engine import registry
from taoskills.errors import SpecError
from taoskills.plugins import plugin_names

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_REAL: registry.EngineNetwork | None = None


#: A pickle (protocol 2) of a dict with NVDINOv2-like key names: passes the launch-time header
#: check (security/launch.py) without torch.
_FAKE_CHECKPOINT = pickle.dumps({"backbone.embeddings.cls_token": [0.0], "fake": True}, protocol=2)


def _images(folder) -> list[Path]:
    folders = folder if isinstance(folder, list) else [folder]
    out: list[Path] = []
    for f in folders:
        root = Path(str(f)).expanduser()
        if not root.is_dir():
            raise SpecError(f"{root} is not a folder of images", field="dataset.train_dataset.images_dir", fix="pass a folder")
        out += sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXT)
    return out


def _train(ctx) -> dict[str, float]:
    cfg, tr = ctx.cfg, ctx.cfg["train"]
    n = len(_images(cfg["dataset"]["train_dataset"]["images_dir"]))
    steps = max(1, n // max(1, int(cfg["dataset"]["batch_size"])))
    epochs, every = int(tr["num_epochs"]), max(1, int(tr.get("checkpoint_interval") or 1))
    pause = float(os.environ.get("TAO_SKILLS_FAKE_ENGINE_EPOCH_S") or os.environ.get("TAO_SKILLS_FAKE_EPOCH_S") or "0")
    loss = 10.0
    t0 = time.time()
    for e in range(epochs):
        time.sleep(pause / 2)
        step = e * steps + max(1, steps // 2)  # a mid-epoch progress line, as TaoTrainCallback writes
        rate = step / max(time.time() - t0, 1e-3)
        eta = f"0:00:{min(59, int((epochs * steps - step) / rate)):02d}"
        ctx.status.write("RUNNING", f"step {step}", step=step, max_step=epochs * steps, steps_per_s=round(rate, 3), eta=eta)
        time.sleep(pause / 2)
        loss = 10.0 / (e + 1)
        ctx.status.write("RUNNING", f"Epoch {e} done.", epoch=e, max_epoch=epochs, kpi={"train_loss": loss})
        if (e + 1) % every == 0 or e + 1 == epochs:
            tag = f"epoch_{e:03d}_step_{(e + 1) * steps:05d}"
            for prefix in ("model", "student", "teacher"):
                (ctx.results_dir / f"{prefix}_{tag}.pth").write_bytes(_FAKE_CHECKPOINT)
            latest = ctx.results_dir / f"{ctx.network}_model_latest.pth"
            latest.unlink(missing_ok=True)
            latest.symlink_to(f"model_{tag}.pth")
    return {"train_loss": loss}


def _npy(path: Path, rows: int, cols: int) -> None:
    """A valid float32 .npy file of zeros (NumPy format 1.0) without NumPy."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 4 * rows * cols)


def _need_file(value, field: str) -> Path:
    p = Path(str(value))
    if not p.is_file():
        raise SpecError(f"{field}={value} does not exist", field=field, fix="pass the parent job's checkpoint")
    return p


def _inference(ctx) -> None:
    cfg = ctx.cfg
    _need_file(cfg["inference"]["checkpoint"], "inference.checkpoint")
    files = _images(cfg["dataset"]["test_dataset"]["images_dir"])
    _npy(ctx.results_dir / "embeddings.npy", len(files), 8)
    (ctx.results_dir / "embeddings_index.json").write_text(json.dumps([str(f) for f in files]))
    ctx.status.write("RUNNING", f"Wrote {len(files)} embeddings of dimension 8 to embeddings.npy.")
    return None


def _export(ctx) -> dict[str, float]:
    cfg = ctx.cfg
    _need_file(cfg["export"]["checkpoint"], "export.checkpoint")
    onnx = Path(str(cfg["export"]["onnx_file"]))
    onnx.parent.mkdir(parents=True, exist_ok=True)
    onnx.write_bytes(b"fake onnx\n")
    return {"onnx_max_abs_diff": 0.0}


_ACTIONS = {"train": _train, "inference": _inference, "export": _export}


def _runner(action: str):
    return _ACTIONS[action.removeprefix("deploy_")]


def install() -> registry.EngineNetwork:
    """Replace the registered ``nvdinov2`` with the fake (real spec defaults and host rules)."""
    global _REAL
    real = registry.get("nvdinov2")
    if real is None:
        raise RuntimeError("nvdinov2 is not registered")
    if not real.extra.get("fake"):
        _REAL = real
    fake = replace(real, runner=_runner, requires=("omegaconf",), extra={**real.extra, "fake": True})
    return registry.register(fake, replace=True)


def uninstall() -> None:
    """Put the real ``nvdinov2`` descriptor back."""
    if _REAL is not None:
        registry.register(_REAL, replace=True)


def write_tiny_images(folder: Path, n: int, size: int = 16) -> list[Path]:
    """``n`` small, valid, distinct PNG files (pure Python: zlib), so tests need no image library."""
    import zlib

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        rows = b"".join(b"\0" + bytes((x * 7 + y * 3 + i * 31) % 256 for x in range(size * 3)) for y in range(size))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
        png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
        path = folder / f"img_{i:03d}.png"
        path.write_bytes(png)
        out.append(path)
    return out


if "fake_engine" in plugin_names():  # imported as a plug-in (TAO_SKILLS_PLUGINS): take over nvdinov2
    install()
