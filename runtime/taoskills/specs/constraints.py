"""TAO semantic constraints that can be checked on a spec alone (no data, no parent job).

Catalogue: docs/tao-contract.md §4.5 (C1-C16), plus C17 (Grounding DINO captions). Each rule below cites its source. Rules run on
the *effective* spec: the schema's defaults with the caller's spec merged over them (what a
TAO container sees after ``OmegaConf.merge(ExperimentConfig, spec)``), so a partial spec is
judged together with the defaults it leaves in place. Values TAO resolves at load time
(``"???"``, ``${...}`` interpolations) and values of the wrong type (reported by the schema
check) are skipped.

Issue codes: ``constraint`` (TAO fails or does something other than asked) and ``warning``
(legal but probably not what was meant). Not checkable on a spec alone and left to preflight
or the spec builder: C3 (``num_classes`` vs the annotation category ids), C4 (GDINO val
category ids start at 0), the C10 parent-job rules (inference/export reuse train's backbone)
and the C11 checkpoint-stage rule beyond ``train.stage``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from taoskills.errors import Issue
from taoskills.specs.dotted import get_dotted, json_text

MISSING = "???"
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_ARCHIVE_NEEDLES = tuple(s.encode() for s in _ARCHIVE_SUFFIXES)
_IMAGE_DIR_KEYS = ("image_dir", "images_dir", "cal_image_dir")
_NUMBER_COND = re.compile(r"^\s*(>=|<=|!=|==|>|<)\s*(depends_on|[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "!=": lambda a, b: a != b,
    "==": lambda a, b: a == b,
}
_DETR = ("dino", "grounding_dino")

_NOT_SET = object()


def _num(v: Any) -> float | None:
    """``v`` as a number, or None (missing, interpolation, bool, wrong type)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return v
    return None


def _get(spec: dict, key: str) -> Any:
    v = get_dotted(spec, key, default=_NOT_SET)
    if v is _NOT_SET or v == MISSING or (isinstance(v, str) and "${" in v):
        return _NOT_SET
    return v


def _err(field: str, reason: str, fix: str) -> Issue:
    return Issue(field, reason, fix, code="constraint")


def _warn(field: str, reason: str, fix: str) -> Issue:
    return Issue(field, reason, fix, code="warning")


def _deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _deep_merge(base[k], v) if k in base else v
        return out
    return over  # rules only read the effective spec: sharing the caller's values is safe


#: (id(schema default), section, the section's JSON text) -> (the default, merged section).
_MERGED: dict[tuple[int, str, bytes], tuple[dict, Any]] = {}


def _effective(default: dict, given: dict) -> dict:
    """``_deep_merge(default, given)``, each top-level section's merge remembered by the
    section's JSON text: a built spec repeats its template's sections, so most are not merged
    again. The merged values may be another call's equal ones; rules only read them."""
    out = dict(default)
    for k, v in given.items():
        if k not in default:
            out[k] = v
            continue
        base = default[k]
        if not (isinstance(k, str) and isinstance(base, dict) and isinstance(v, dict)):
            out[k] = _deep_merge(base, v)
            continue
        text = json_text(v)
        if text is None:
            out[k] = _deep_merge(base, v)
            continue
        hit = _MERGED.get((id(default), k, text))
        if hit is None or hit[0] is not default:
            if len(_MERGED) > 2048:
                _MERGED.clear()
            hit = _MERGED[(id(default), k, text)] = (default, _deep_merge(base, v))
        out[k] = hit[1]
    return out


# ---------------------------------------------------------------------------------------------
# rules. Signature: rule(ctx) -> list[Issue]; ctx has network_arch, action, container, spec
# (effective), given (caller's spec), schema.


class _Ctx:
    def __init__(self, network_arch: str, action: str | None, container: str, spec: dict, given: dict, schema: dict | None):
        self.network_arch, self.action, self.container = network_arch, action, container
        self.spec, self.given, self.schema = spec, given, schema

    def trains(self) -> bool:
        return self.action in (None, "train", "distill")


def c1_num_select(ctx: _Ctx) -> list[Issue]:
    """C1: ``model.num_select <= model.num_queries`` and, for DINO, ``num_select < num_queries * dataset.num_classes``.

    Post-processing takes the top-k over ``num_queries x num_classes`` scores. Sources: TAO Core
    7.3.0 ``config/dino/model.py`` (num_select: "Must be < num_queries * num_classes");
    TAO AutoML 7.2.0 ``brain/network_utils/dino.py`` caps num_select at
    ``min(num_queries, num_queries*num_classes - 1)`` (docs/tao-contract.md §2.3.3, §4.5 C1).
    """
    if ctx.network_arch not in _DETR:
        return []
    sel, q = _num(_get(ctx.spec, "model.num_select")), _num(_get(ctx.spec, "model.num_queries"))
    if sel is None or q is None:
        return []
    if sel > q:
        return [
            _err(
                "model.num_select",
                f"num_select {sel} is larger than model.num_queries {q}.",
                f"set model.num_select <= {q} (or raise model.num_queries).",
            )
        ]
    n_cls = _num(_get(ctx.spec, "dataset.num_classes")) if ctx.network_arch == "dino" else None
    if n_cls is not None and sel >= q * n_cls:
        return [
            _err(
                "model.num_select",
                f"num_select {sel} is not < num_queries*num_classes = {q * n_cls}.",
                f"set model.num_select < {q * n_cls}.",
            )
        ]
    return []


def c2_interm_indices(ctx: _Ctx) -> list[Issue]:
    """C2: ``len(model.return_interm_indices) == model.num_feature_levels`` (DINO, Grounding DINO).

    Source: field descriptions in TAO Core 7.3.0 ``config/dino/model.py`` and
    ``config/grounding_dino/model.py`` (docs/tao-contract.md §4.5 C2).
    """
    if ctx.network_arch not in _DETR:
        return []
    idx, levels = _get(ctx.spec, "model.return_interm_indices"), _num(_get(ctx.spec, "model.num_feature_levels"))
    if not isinstance(idx, list) or levels is None or len(idx) == levels:
        return []
    return [
        _err(
            "model.return_interm_indices",
            f"{len(idx)} indices {idx} but model.num_feature_levels is {levels}; TAO needs one index per level.",
            f"give model.return_interm_indices exactly {levels} entries or set model.num_feature_levels to {len(idx)}.",
        )
    ]


def c6_intervals(ctx: _Ctx) -> list[Issue]:
    """C6: with ``checkpoint_interval_unit: epoch``, ``checkpoint_interval`` and ``validation_interval`` <= ``num_epochs``.

    TAO PyTorch asserts both at train start ([ext] ``nvidia_tao_pytorch/core/
    initialize_experiments``; docs/tao-contract.md §4.5 C6). Checked for train/distill.
    """
    if not ctx.trains():
        return []
    unit = _get(ctx.spec, "train.checkpoint_interval_unit")
    epochs = _num(_get(ctx.spec, "train.num_epochs"))
    if epochs is None:
        return []
    out = []
    keys = ["train.validation_interval"] + (["train.checkpoint_interval"] if unit in (_NOT_SET, "epoch") else [])
    for key in keys:
        v = _num(_get(ctx.spec, key))
        if v is not None and v > epochs:
            out.append(
                _err(
                    key,
                    f"{key} {v} is larger than train.num_epochs {epochs}; TAO asserts at train start.",
                    f"set {key} <= {epochs} (or raise train.num_epochs).",
                )
            )
    return out


def c7_gpu_count(ctx: _Ctx) -> list[Issue]:
    """C7: ``<section>.num_gpus == len(<section>.gpu_ids)`` for the section the action runs from.

    TAO warns and reconciles a mismatch (``num_gpus = max(num_gpus, len(gpu_ids))``), so the
    job would run on a GPU count nobody asked for; we require them to agree. Source: [ext] TAO
    PyTorch entrypoint; ``train.gpu_ids`` description in TAO Core ("must be equal to the
    number of gpus in train.num_gpus"); docs/tao-contract.md §4.5 C7.
    """
    section = "train" if ctx.trains() else ctx.action
    if section not in ("train", "evaluate", "inference"):
        return []
    n, ids = _num(_get(ctx.spec, f"{section}.num_gpus")), _get(ctx.spec, f"{section}.gpu_ids")
    if n is None or not isinstance(ids, list) or n == len(ids):
        return []
    return [
        _err(
            f"{section}.num_gpus",
            f"{section}.num_gpus is {n} but {section}.gpu_ids lists {len(ids)} GPU(s) {ids}.",
            f"set {section}.gpu_ids to {list(range(int(n)))} or {section}.num_gpus to {len(ids)}.",
        )
    ]


def c8_math_cond(ctx: _Ctx) -> list[Issue]:
    """C8 (and C5): every ``math_cond`` of the schema of the form ``<op> <number>`` or ``<op> depends_on``.

    Read generically from the schema (``> 0.0``, ``>0``, ``>= 0``, ``!= 0``, ``> depends_on``
    ...); TAO AutoML treats them as sampling hints only (docs/tao-contract.md §2.3.3, §4.5 C8,
    §6 item 7). C5 ``dataset.augmentation.train_random_crop_max > train_random_crop_min`` is
    the schema's ``"> depends_on"`` on ``train_random_crop_max``. AutoML-only forms (``/ k``,
    ``^ k``) are not constraints on a given value and are ignored.
    """
    if not ctx.schema:
        return []
    out = []
    for key, cond, op, rhs, other in _math_conds(ctx.schema):
        v = _num(_get(ctx.spec, key))
        if v is None:
            continue
        if rhs == "depends_on":
            bound = _num(_get(ctx.spec, other)) if isinstance(other, str) else None
            if bound is None:
                continue
            label = f"{other} ({bound})"
        else:
            bound, label = float(rhs), rhs
        if not _OPS[op](v, bound):
            out.append(
                _err(
                    key,
                    f"{key} is {v} but TAO requires {key} {op} {label} (schema math_cond {cond!r}).",
                    f"set {key} so that it is {op} {label}.",
                )
            )
    return out


def c9_schedule(ctx: _Ctx) -> list[Issue]:
    """C9 (warnings): LR schedule points beyond ``train.num_epochs`` never take effect.

    DINO/GDINO ``MultiStep`` uses ``train.optim.lr_steps``, ``StepLR`` uses
    ``lr_step_size``; MAE ``MultiStep`` uses ``train.optim.milestones`` and
    ``warmup_epochs`` should be < ``num_epochs``. Not enforced by TAO (docs/tao-contract.md
    §4.5 C9). Note: the shipped DINO and MAE templates (10 epochs, lr_steps [11] /
    milestones [88, 96]) trigger this warning - TAO's own defaults never decay the LR.
    """
    if not ctx.trains():
        return []
    epochs = _num(_get(ctx.spec, "train.num_epochs"))
    if epochs is None:
        return []
    sched = _get(ctx.spec, "train.optim.lr_scheduler")
    out = []
    if ctx.network_arch in _DETR:
        if sched == "MultiStep":
            steps = _get(ctx.spec, "train.optim.lr_steps")
            if isinstance(steps, list) and any((_num(s) or 0) > epochs for s in steps):
                out.append(
                    _warn(
                        "train.optim.lr_steps",
                        f"lr_steps {steps} go beyond train.num_epochs {epochs}; those LR drops never happen.",
                        f"use lr_steps <= {epochs} (e.g. [{max(1, int(epochs * 0.8))}]) or raise train.num_epochs.",
                    )
                )
        elif sched == "StepLR":
            size = _num(_get(ctx.spec, "train.optim.lr_step_size"))
            if size is not None and size > epochs:
                out.append(
                    _warn(
                        "train.optim.lr_step_size",
                        f"lr_step_size {size} is larger than train.num_epochs {epochs}; the LR never drops.",
                        f"use lr_step_size <= {epochs} or raise train.num_epochs.",
                    )
                )
    if ctx.network_arch == "mae":
        ms = _get(ctx.spec, "train.optim.milestones")
        if sched == "MultiStep" and isinstance(ms, list) and any((_num(s) or 0) > epochs for s in ms):
            out.append(
                _warn(
                    "train.optim.milestones",
                    f"milestones {ms} go beyond train.num_epochs {epochs}; those LR drops never happen.",
                    f"use milestones <= {epochs} or raise train.num_epochs.",
                )
            )
        warm = _num(_get(ctx.spec, "train.optim.warmup_epochs"))
        if warm is not None and warm >= epochs:
            out.append(
                _warn(
                    "train.optim.warmup_epochs",
                    f"warmup_epochs {warm} is not < train.num_epochs {epochs}; training never leaves warm-up.",
                    f"set train.optim.warmup_epochs < {epochs}.",
                )
            )
    return out


def c10_nvdinov2_backbone(ctx: _Ctx) -> list[Issue]:
    """C10: NVDINOv2 ``img_size`` in {224, 518}, ``patch_size`` in {14, 16}, and ``img_size % patch_size == 0``.

    Sources: TAO Core 7.3.0 nvdinov2 schema enums (``model.backbone.img_size``/``patch_size``,
    ordered_int); a ViT splits the image into whole patches (518 = 37 x 14, 224 = 16 x 14 =
    14 x 16; 518 is not a multiple of 16). docs/tao-contract.md §4.5 C10.
    """
    if ctx.network_arch != "nvdinov2":
        return []
    img, patch = _num(_get(ctx.spec, "model.backbone.img_size")), _num(_get(ctx.spec, "model.backbone.patch_size"))
    out = []
    if img is not None and img not in (224, 518):
        out.append(_err("model.backbone.img_size", f"img_size {img} is not supported.", "use 224 or 518."))
    if patch is not None and patch not in (14, 16):
        out.append(_err("model.backbone.patch_size", f"patch_size {patch} is not supported.", "use 14 or 16."))
    if not out and img is not None and patch is not None and img % patch:
        out.append(
            _err(
                "model.backbone.img_size",
                f"img_size {img} is not a multiple of patch_size {patch}.",
                "use patch_size 14 with img_size 518 or 224, or patch_size 16 with img_size 224.",
            )
        )
    return out


def c11_mae_stage(ctx: _Ctx) -> list[Issue]:
    """C11 (warnings): MAE inference needs a finetuned model; finetune needs a real ``num_classes``; ConvNeXtV2 wants 224.

    Sources: [ext] NVIDIA skill bank MAE notes (inference requires a ``train.stage=finetune``
    checkpoint; ``num_classes`` matters only for finetune; keep ``input_size=224`` for
    ConvNeXtV2's mask grid); TAO Core 7.3.0 MAE ``model.num_classes`` defaults to 1000
    (ImageNet), so a finetune spec that does not set it trains a 1000-way head
    (docs/tao-contract.md §4.5 C11, §6 item 5).
    """
    if ctx.network_arch != "mae":
        return []
    out = []
    stage = _get(ctx.spec, "train.stage")
    if ctx.action == "inference" and stage == "pretrain":
        out.append(
            _warn(
                "train.stage",
                "MAE inference classifies with a finetuned model, but train.stage is 'pretrain'.",
                "set train.stage: finetune and use a checkpoint from a finetune job.",
            )
        )
    if ctx.trains() and stage == "finetune" and _get(ctx.given, "model.num_classes") is _NOT_SET:
        out.append(
            _warn(
                "model.num_classes",
                "finetune without model.num_classes: TAO's default 1000 (ImageNet) sizes the classifier head.",
                "set model.num_classes to the number of classes in your dataset.",
            )
        )
    arch = _get(ctx.spec, "model.arch")
    size = _num(_get(ctx.spec, "dataset.augmentation.input_size"))
    if isinstance(arch, str) and arch.startswith("convnextv2") and size is not None and size != 224:
        out.append(
            _warn(
                "dataset.augmentation.input_size",
                f"ConvNeXtV2 MAE uses a 224 mask grid; input_size is {size}.",
                "keep dataset.augmentation.input_size: 224 for convnextv2_* backbones.",
            )
        )
    return out


def c12_text_len(ctx: _Ctx) -> list[Issue]:
    """C12 (warning): Grounding DINO ``model.max_text_len`` should stay 256 (the token length pretrained checkpoints use).

    Source: [ext] NVIDIA skill bank Grounding DINO notes; TAO Core 7.3.0 default 256
    (docs/tao-contract.md §4.5 C12). The label-map token length itself is data, not spec.
    """
    if ctx.network_arch != "grounding_dino":
        return []
    n = _num(_get(ctx.spec, "model.max_text_len"))
    if n is None or n == 256:
        return []
    return [
        _warn(
            "model.max_text_len",
            f"max_text_len {n} differs from 256, the length pretrained Grounding DINO checkpoints use.",
            "keep model.max_text_len: 256 unless the model was trained with another length.",
        )
    ]


def _find_keys(tree: Any, keys: frozenset[str] | set[str] | tuple[str, ...], prefix: str = "", found: list | None = None) -> list:
    """(dotted path, value) of every entry named one of ``keys`` under ``tree``, depth first in
    key order (paths are only built where a key matches or a container continues)."""
    found = [] if found is None else found
    if isinstance(tree, dict):
        for k, v in tree.items():
            hit = k in keys
            if hit or isinstance(v, (dict, list)):
                path = f"{prefix}.{k}" if prefix else str(k)
                if hit:
                    found.append((path, v))
                if isinstance(v, (dict, list)):
                    _find_keys(v, keys, path, found)
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            if isinstance(v, (dict, list)):
                _find_keys(v, keys, f"{prefix}[{i}]", found)
    return found


def _may_name_an_archive(tree: Any) -> bool:
    """False when no string under ``tree`` can end with an archive suffix: none of them occurs
    in its JSON text (one orjson dump and three substring searches instead of a walk)."""
    text = json_text(tree)
    return text is None or any(suffix in text.lower() for suffix in _ARCHIVE_NEEDLES)


def c13_archives(ctx: _Ctx) -> list[Issue]:
    """C13: image folders must be folders, not archives, for the TAO CLI.

    TAO's SDK runner extracts ``X.tar.gz -> X`` before the container starts
    (``SDK/script_runner.py:427-496``); the TAO CLI itself reads a folder. Checked keys:
    ``image_dir``, ``images_dir``, ``cal_image_dir`` anywhere (strings or lists of strings) and
    MAE's ``dataset.{train,val,test}_data_sources`` (image folders as strings). Only the
    caller's spec is checked. docs/tao-contract.md §4.5 C13.
    """
    if not _may_name_an_archive(ctx.given):
        return []
    out = []

    def check(path: str, value: Any) -> None:
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            if isinstance(v, str) and "://" in v:
                continue  # a remote URI: the platform downloads and extracts it (TAO SDK runner)
            if isinstance(v, str) and v.lower().endswith(_ARCHIVE_SUFFIXES):
                field = f"{path}[{i}]" if isinstance(value, list) else path
                out.append(
                    _err(
                        field,
                        f"{v!r} is an archive; TAO reads images from a folder.",
                        "pass the extracted folder (tao-skills stages archives: give the archive as a data source, not as a spec value).",
                    )
                )

    for path, value in _find_keys(ctx.given, _IMAGE_DIR_KEYS):
        check(path, value)
    if ctx.network_arch == "mae":
        for key in ("dataset.train_data_sources", "dataset.val_data_sources", "dataset.test_data_sources"):
            v = _get(ctx.given, key)
            if v is not _NOT_SET:
                check(key, v)
    return out


def c14_batch_and_channels(ctx: _Ctx) -> list[Issue]:
    """C14: ``export.input_channel`` in {1, 3}; export/engine batch sizes are -1 (dynamic) or >= 1; TRT min <= opt <= max batch.

    Sources: TAO Core 7.3.0 schemas (``export.input_channel`` ordered_int 1|3; ``batch_size``
    "-1 implies dynamic tensor shapes"); a TensorRT optimization profile needs
    min <= opt <= max. docs/tao-contract.md §4.5 C14.
    """
    out = []
    ch = _num(_get(ctx.spec, "export.input_channel"))
    if ctx.action == "export" and ch is not None and ch not in (1, 3):
        out.append(_err("export.input_channel", f"input_channel {ch} is not 1 or 3.", "use 3 (RGB) or 1 (grayscale)."))
    for key, dynamic, lowest in _dynamic_keys(ctx):
        b = _num(_get(ctx.spec, key))
        if b is not None and b != dynamic and b < lowest:
            out.append(
                _err(
                    key,
                    f"{key} {b} is neither {dynamic} (dynamic) nor a batch size >= {lowest}.",
                    f"set {key}: {dynamic} for dynamic shapes or a size >= {lowest}.",
                )
            )
    if ctx.action == "gen_trt_engine":
        t = "gen_trt_engine.tensorrt."
        lo, opt, hi = (_num(_get(ctx.spec, t + k)) for k in ("min_batch_size", "opt_batch_size", "max_batch_size"))
        if lo is not None and opt is not None and hi is not None and not (lo <= opt <= hi):
            out.append(
                _err(
                    t + "opt_batch_size",
                    f"TensorRT batch profile min {lo} / opt {opt} / max {hi} is not ordered.",
                    "set min_batch_size <= opt_batch_size <= max_batch_size.",
                )
            )
    return out


def _dynamic_keys(ctx: _Ctx) -> list[tuple[str, float, float]]:
    """(key, dynamic value, lowest real value) for the batch sizes this action reads as dynamic.

    From the schema's ``x_tao_reads.dynamic`` (scripts/generate_schemas.py READER_RULES); without
    an annotated schema, the action's own ``batch_size``.
    """
    if ctx.schema:
        hit = _DYNAMIC_BY_ID.get(id(ctx.schema))
        if hit is not None and hit[0] is ctx.schema:
            return hit[1]
    found: list[tuple[str, float, float]] = []
    for key, node in _schema_nodes(ctx.schema or {}):
        dyn = _num((node.get("x_tao_reads") or {}).get("dynamic"))
        if dyn is not None:
            lo = _num(node.get("minimum"))
            found.append((key, dyn, max(1, lo) if lo is not None else 1))
    if not found and ctx.action in ("export", "gen_trt_engine"):
        found.append((f"{ctx.action}.batch_size", -1, 1))
    if ctx.schema:
        if len(_DYNAMIC_BY_ID) > 128:
            _DYNAMIC_BY_ID.clear()
        _DYNAMIC_BY_ID[id(ctx.schema)] = (ctx.schema, found)
    return found


_DYNAMIC_BY_ID: dict[int, tuple[dict, list[tuple[str, float, float]]]] = {}


def c15_sampler(ctx: _Ctx) -> list[Issue]:
    """C15 (warning): DINO ``dataset.train_sampler`` only takes effect with ``dataset.dataset_type: default``.

    Source: TAO Core 7.3.0 ``config/dino/dataset.py`` train_sampler description
    (docs/tao-contract.md §4.5 C15).
    """
    if ctx.network_arch != "dino" or not ctx.trains():
        return []
    sampler, dtype = _get(ctx.spec, "dataset.train_sampler"), _get(ctx.spec, "dataset.dataset_type")
    if sampler in (_NOT_SET, "default_sampler") or dtype in (_NOT_SET, "default"):
        return []
    return [
        _warn(
            "dataset.train_sampler",
            f"train_sampler {sampler!r} is ignored with dataset_type {dtype!r}.",
            "set dataset.dataset_type: default to use this sampler, or leave train_sampler: default_sampler.",
        )
    ]


def c16_dropped_keys(ctx: _Ctx) -> list[Issue]:
    """C16 (warnings): evaluate/inference/export/gen_trt_engine specs should not carry training-only paths.

    TAO Core 7.3.0 ``network_configs/{dino,grounding_dino}.config.json``
    ``dynamic_config.action_rules`` remove ``model.pretrained_backbone_path`` and
    ``train.resume_training_checkpoint_path`` for these actions (docs/tao-contract.md §4.5
    C16). Only non-empty values in the caller's spec are reported.
    """
    if ctx.network_arch not in _DETR or ctx.action not in ("evaluate", "inference", "export", "gen_trt_engine"):
        return []
    out = []
    for key in ("model.pretrained_backbone_path", "train.resume_training_checkpoint_path"):
        v = _get(ctx.given, key)
        if v not in (_NOT_SET, None, ""):
            out.append(
                _warn(
                    key,
                    f"{key} is set but the {ctx.action} action does not use it (TAO drops it).",
                    f"remove {key} from the {ctx.action} spec.",
                )
            )
    return out


def c17_gdino_captions(ctx: _Ctx) -> list[Issue]:
    """C17: Grounding DINO inference needs a non-empty ``dataset.infer_data_sources.captions`` list of non-empty strings.

    The captions are the class vocabulary of text-prompted detection (position = label); an
    empty list or an empty caption loads but fails when the text encoder tokenizes the prompt
    (TAO Core 7.3.0 ``config/grounding_dino/dataset.py`` infer_data_sources: image_dir + captions).
    Checked when the spec sets the key (a missing key is ``required_keys``' job).
    """
    if ctx.network_arch != "grounding_dino" or ctx.action != "inference":
        return []
    key = "dataset.infer_data_sources.captions"
    caps = _get(ctx.given, key)
    if caps is _NOT_SET or caps is None:
        return []
    if not isinstance(caps, list) or not caps:
        return [
            _err(
                key, f"captions {caps!r} is not a non-empty list.", f'set {key}: ["car", "person", ...] (one caption per class).'
            )
        ]
    blank = [i for i, c in enumerate(caps) if not isinstance(c, str) or not c.strip() or c == MISSING]
    if blank:
        return [
            _err(
                f"{key}[{blank[0]}]",
                f"caption(s) at {blank} are empty; every caption names a class.",
                f"give every entry of {key} a class name (or remove the empty ones).",
            )
        ]
    return []


RULES: tuple[Callable[[_Ctx], list[Issue]], ...] = (
    c1_num_select,
    c2_interm_indices,
    c6_intervals,
    c7_gpu_count,
    c8_math_cond,
    c9_schedule,
    c10_nvdinov2_backbone,
    c11_mae_stage,
    c12_text_len,
    c13_archives,
    c14_batch_and_channels,
    c15_sampler,
    c16_dropped_keys,
    c17_gdino_captions,
)


_NODES_BY_ID: dict[int, tuple[dict, list[tuple[str, dict]]]] = {}
_CONDS_BY_ID: dict[int, tuple[dict, list[tuple[str, str, str, str, Any]]]] = {}


def _per_schema(cache: dict[int, tuple[dict, Any]], schema: dict, build: Callable[[dict], Any]) -> Any:
    """``build(schema)``, remembered per schema object (schemas are read-only)."""
    hit = cache.get(id(schema))
    if hit is None or hit[0] is not schema:
        if len(cache) > 128:
            cache.clear()
        hit = cache[id(schema)] = (schema, build(schema))
    return hit[1]


def _math_conds(schema: dict) -> list[tuple[str, str, str, str, Any]]:
    """(key, math_cond, op, right-hand side, depends_on) of every checkable ``math_cond`` of a
    schema (:func:`c8_math_cond`); read once per schema object."""

    def build(s: dict) -> list[tuple[str, str, str, str, Any]]:
        conds = []
        for key, node in _schema_nodes(s):
            cond = node.get("math_cond")
            m = _NUMBER_COND.match(cond) if isinstance(cond, str) else None
            if m:
                conds.append((key, cond, m.group(1), m.group(2), node.get("depends_on")))
        return conds

    return _per_schema(_CONDS_BY_ID, schema, build)


def _schema_nodes(schema: dict) -> list[tuple[str, dict]]:
    """(dotted key, node) for every node of a schema; cached per schema object (schemas are read-only)."""
    return _per_schema(_NODES_BY_ID, schema, lambda s: list(_walk_schema(s)))


def _walk_schema(schema: dict, prefix: str = ""):
    props = schema.get("properties")
    if not isinstance(props, dict):
        return
    for k, v in props.items():
        if isinstance(v, dict):
            path = f"{prefix}.{k}" if prefix else k
            yield path, v
            yield from _walk_schema(v, path)


@lru_cache(maxsize=64)
def _packaged_schema_text(network_arch: str, schema_file: str) -> str | None:
    from taoskills.paths import skills_dir

    for manifest in sorted(Path(skills_dir()).glob("*/schemas/manifest.json")):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("network_arch") == network_arch:
            path = manifest.parent / schema_file
            return path.read_text(encoding="utf-8") if path.is_file() else None
    return None


def packaged_schema(network_arch: str, action: str | None, container: str = "train") -> dict | None:
    """The packaged schema of ``network_arch`` for ``action`` (``skills/*/schemas``), or None."""
    if not action:
        return None
    name = f"{'deploy_' if container == 'deploy' else ''}{action}.schema.json"
    text = _packaged_schema_text(network_arch, name)
    return json.loads(text) if text else None


def check_constraints(
    network_arch: str,
    action: str | None,
    spec: dict,
    *,
    schema: dict | None = None,
    container: str = "train",
) -> list[Issue]:
    """Run every rule (C1-C16 where checkable) on ``spec`` for ``network_arch``/``action``.

    ``schema`` is the action's TAO-dialect schema (its defaults fill keys the spec leaves out
    and its ``math_cond`` strings drive C8); when omitted the packaged schema of the skill
    with this ``network_arch`` is used. ``action`` is the TAO action (``train``,
    ``evaluate``, ``gen_trt_engine`` ...; a ``deploy_`` prefix is accepted). Returns issues
    with ``code`` ``constraint`` or ``warning``.
    """
    if action and action.startswith("deploy_"):
        action, container = action.removeprefix("deploy_"), "deploy"
    if schema is None:
        schema = packaged_schema(network_arch, action, container)
    given = spec if isinstance(spec, dict) else {}
    default = schema.get("default") if isinstance(schema, dict) else None
    effective = _effective(default, given) if isinstance(default, dict) else given
    ctx = _Ctx(network_arch, action, container, effective, given, schema)
    issues: list[Issue] = []
    for rule in RULES:
        issues.extend(rule(ctx))
    return issues
