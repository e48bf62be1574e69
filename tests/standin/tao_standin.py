"""Stand-in for TAO's in-container entrypoints (``dino``, ``nvdinov2``, ``mae``, ``grounding_dino``).

TAO images cannot be pulled in CI, so the docker tests build an image whose entrypoints speak
TAO's CLI and results contract: ``<network> <action> -e <spec.yaml> [results_dir=DIR]
[dotted.key=value ...]``, status.json lines under ``results_dir/<action>/``, TAO checkpoint
names, ``Execution status: PASS|FAIL`` as the last line.

* ``nvdinov2``: the built-in engine (``taoskills.engine.cli``) - the real network (or the
  test's fake one when ``TAO_SKILLS_PLUGINS=fake_engine`` is baked into the image).
* ``dino``, ``grounding_dino``, ``mae``: a contract-faithful STUB. It says so on its first line,
  checks the spec's input paths exist, and writes the files TAO writes without training.

Test knobs (files in the read-only workspace, never in a TAO spec): ``.standin_epoch_s``
(seconds per epoch) and ``.standin_exit`` (fail with that exit code after a FAILURE line).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

LATEST = {"dino": "dino_model_latest.pth", "grounding_dino": "gdino_model_latest.pth", "mae": "mae_model_latest.pth"}
KPI = {"dino": "val_mAP50", "grounding_dino": "val_mAP50", "mae": "val_loss"}


def _knob(name: str) -> str | None:
    p = Path("/workspace") / name
    return p.read_text().strip() if p.is_file() else None


def _paths(node, key=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, f"{key}.{k}" if key else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, f"{key}[{i}]")
    elif isinstance(node, str) and node.startswith("/") and ("dir" in key or "file" in key or "path" in key):
        yield key, node


def stub(network: str, argv: list[str]) -> int:
    import argparse

    import yaml

    from taoskills.engine.contract import StatusLogger, write_experiment_yaml
    from taoskills.specs.dotted import set_dotted

    print(
        f"STUB: tao-skills stand-in for TAO's '{network}' entrypoint - follows TAO's CLI and results contract, trains nothing",
        flush=True,
    )
    p = argparse.ArgumentParser(prog=network)
    p.add_argument("action")
    p.add_argument("-e", "--experiment_spec_file", required=True)
    args, overrides = p.parse_known_args(argv)
    cfg = yaml.safe_load(Path(args.experiment_spec_file).read_text()) or {}
    for ov in overrides:
        k, _, v = ov.partition("=")
        set_dotted(cfg, k, yaml.safe_load(v))
    action = args.action
    out = Path(cfg.get(action, {}).get("results_dir") or Path(cfg["results_dir"]) / action)
    out.mkdir(parents=True, exist_ok=True)
    status = StatusLogger(out / "status.json")
    status.write("STARTED", f"Starting {network} {action}.")
    write_experiment_yaml(out / "experiment.yaml", cfg)
    missing = [
        (k, v)
        for k, v in _paths(cfg)
        if not v.startswith(str(out))
        and not k.endswith("results_dir")
        and not os.path.exists(v)
        and "pretrained" not in k
        and "resume" not in k
        and "onnx_file" not in k
        and "trt" not in k
    ]
    code = _knob(".standin_exit")
    if missing or code:
        msg = f"input paths do not exist: {missing}" if missing else f"injected failure (exit {code})"
        print(f"Error: {msg}", file=sys.stderr, flush=True)
        status.write("FAILURE", msg, verbosity="ERROR")
        print("Execution status: FAIL", flush=True)
        return int(code or 1)
    pause = float(_knob(".standin_epoch_s") or 0)
    if action == "train":
        epochs = int(cfg.get("train", {}).get("num_epochs") or 1)
        for e in range(epochs):
            time.sleep(pause)
            print(f"Epoch {e}/{epochs}: stand-in step", flush=True)
            status.write("RUNNING", "Training loop in progress", epoch=e, max_epoch=epochs, kpi={KPI[network]: 0.1 * (e + 1)})
            ckpt = out / f"model_epoch_{e:03d}_step_{(e + 1) * 10:05d}.pth"
            ckpt.write_bytes(b"stand-in checkpoint\n")
            latest = out / LATEST[network]
            latest.unlink(missing_ok=True)
            latest.symlink_to(ckpt.name)
    elif action == "evaluate":
        status.write("RUNNING", "Evaluation metrics", kpi={KPI[network].replace("val_", "test_"): 0.5})
    elif action == "export":
        onnx = cfg.get("export", {}).get("onnx_file") or str(out / f"{network}.onnx")
        Path(onnx).parent.mkdir(parents=True, exist_ok=True)
        Path(onnx).write_bytes(b"stand-in onnx\n")
    else:
        (out / "results.txt").write_text(f"stand-in {action} output\n")
    secrets = [n for n in ("NGC_KEY", "AWS_SECRET_ACCESS_KEY", "TAO_ENCRYPTION_KEY") if os.environ.get(n)]
    print(f"secret variables present (names): {secrets}", flush=True)
    status.write("SUCCESS", f"{action.capitalize()} finished successfully.")
    print("Execution status: PASS", flush=True)
    return 0


def main() -> int:
    network, argv = sys.argv[1], sys.argv[2:]
    if network == "nvdinov2":
        from taoskills.engine.cli import main as engine_main

        return engine_main([network, *argv])
    return stub(network, argv)


if __name__ == "__main__":
    sys.exit(main())
