#!/usr/bin/env python3
"""Generate the TAO-dialect schemas, manifests and spec templates of the four model skills.

Maintainer script: it imports ``nvidia_tao_core`` (TAO Core 7.3.0); the runtime never does.

For every network it asks TAO Core's own generator,
``nvidia_tao_core.scripts.generate_schema.generate_schema(network, action)`` (which uses
``nvidia_tao_core.api_utils.dataclass2json_converter`` on the network's
``nvidia_tao_core.config.<network>.default_config.ExperimentConfig`` and then keeps the
top-level sections the action reads: ``train``, ``distill``, ``quantize``, the action itself
and every section that is not an action of that network), and writes:

* ``skills/<skill>/schemas/<action>.schema.json`` for each PyTorch-container action;
* ``skills/<skill>/schemas/deploy_<action>.schema.json`` for each TensorRT (TAO Deploy)
  action. TAO Core 7.3.0 has no separate deploy experiment config for these networks:
  ``config/dino/deploy.py`` and ``config/grounding_dino/deploy.py`` only define the
  ``gen_trt_engine`` block that is already part of ``ExperimentConfig`` (nvdinov2 and mae have
  no deploy module at all), and the deploy container reads the same spec layout. The deploy
  schemas are therefore derived from the same ``ExperimentConfig`` and differ from the PyTorch
  ones only in ``x_tao_schema.container``;
* ``skills/<skill>/schemas/manifest.json``;
* ``skills/<skill>/references/spec_template_<action>.yaml`` and
  ``spec_template_deploy_<action>.yaml``: the schema's top-level ``default`` dumped to YAML.

Faithfulness: the TAO dialect is kept as TAO Core emits it (leaf ``type`` is the TAO value type
``int``/``float``/``bool``/``string``/``categorical``/``ordered_int``/``list``/``collection``;
``minimum``/``maximum`` from valid_min/valid_max; ``enum``, ``option_weights``, ``math_cond``,
``depends_on``, ``parent_param``, ``automl_enabled``, ``popular``, ``pattern``; root
``automl_default_parameters``/``automl_disabled_parameters``/``popular``/``required``; the
``properties.automl_disabled_parameters`` artifact list). What is added or changed, and why:

1. ``x_tao_schema`` (provenance: TAO Core version, network, action, container, config class,
   and the top-level sections TAO's action filter removed);
2. lists TAO builds from Python sets (root/section ``automl_*_parameters``, ``required``,
   section ``popular`` lists) are sorted, and the root ``popular`` dict is key-sorted, so the
   output is byte-identical from run to run (TAO's own order there depends on hash seeds);
3. ``default`` of every node that maps to an ``ExperimentConfig`` field is the value TAO's
   structured config holds (``OmegaConf.to_container(OmegaConf.structured(ExperimentConfig))``),
   because that is what a TAO container runs with. TAO's converter writes the field's
   ``default_value`` metadata instead, which differs in places (TAO Core 7.3.0: MAE
   ``model.num_classes`` 1 vs 1000 and ``dataset.batch_size`` 1 vs 3; DINO/GDINO
   ``dataset.eval_class_ids`` [1] vs null (= all classes), ``augmentation.fixed_random_crop``
   1024 vs null; nvdinov2 ``gen_trt_engine.tensorrt.data_type`` "fp32,fp16" vs "fp32"; every
   ``Optional[str]`` ``""`` vs null; ``wandb.name``/``wandb.tags``);
   A scalar ``type`` that contradicts the field's annotation follows the annotation, because
   OmegaConf types the node by it (TAO Core 7.3.0 MAE ``train.optim.warmup_epochs``: ``float``
   field declared with ``INT_FIELD``, so TAO accepts 2.5);
4. ``x_tao_nullable: true`` on every node whose dataclass field is ``Optional[...]`` (TAO's
   converter drops ``Optional``; OmegaConf accepts null exactly there);
5. dataclass-typed sections the converter leaves opaque (DINO ``distill``:
   ``Optional[DINODistillationConfig]``) get their ``properties`` from the dataclass, and
   list fields get ``x_tao_items``: the item schema (``List[<dataclass>]`` such as
   ``distill.bindings`` or ``quantize.layers``, key by key, as OmegaConf's structured merge
   checks them; or the item value type of ``List[int]``/``List[float]``/``List[bool]``);
6. ``x_tao_reads``: how TAO reads a value beyond its dataclass type (see ``READER_RULES``):
   ``enum_case: insensitive`` where the reader lower-cases the value before comparing, and
   ``dynamic: -1`` where -1 means a dynamic (batch) dimension for that action.

Spec templates are the action's sections of the structured config's values (item 3), so they
equal TAO Core's defaults. Deliberate differences (each listed in ``TEMPLATE_DIFFERENCES``):
the ``distill`` template carries the ``distill`` block built from ``DINODistillationConfig()``
(``ExperimentConfig.distill`` defaults to null, which would leave nothing to fill in).

``Infinity``: TAO bounds such as ``valid_max="inf"`` become the float ``inf``. The files are
written with Python's ``json.dumps`` (``allow_nan=True``, the default), which spells it as the
token ``Infinity`` (``-Infinity`` for ``-inf``). That token is not strict JSON, but Python's
``json.loads`` reads it back as ``float('inf')``, which is what the runtime uses. Strict JSON
parsers (``jq``, JavaScript ``JSON.parse``) reject it.

Usage::

    python scripts/generate_schemas.py            # (re)write the files
    python scripts/generate_schemas.py --check    # exit 1 and list files that differ

TAO Core's converter module does ``import requests`` at import time but only uses it in a
download helper this script never calls; when ``requests`` is not installed a stub module is
put in ``sys.modules`` so that the converter imports.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import importlib.metadata
import json
import logging
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_VERSION = 1

# network_arch -> (skill folder, PyTorch-container actions, TAO Deploy actions); TAO 7.3 action
# lists (TAO Core 7.3.0 network_configs/<net>.config.json, plus the TAO Deploy actions).
NETWORKS: dict[str, dict[str, Any]] = {
    "nvdinov2": {
        "skill": "tao-train-nvdinov2",
        "actions": ["train", "inference", "export"],
        "deploy": ["gen_trt_engine"],
    },
    "dino": {
        "skill": "tao-train-dino",
        "actions": ["train", "evaluate", "inference", "export", "distill", "quantize"],
        "deploy": ["gen_trt_engine", "evaluate", "inference"],
    },
    "grounding_dino": {
        "skill": "tao-train-grounding-dino",
        "actions": ["train", "evaluate", "inference", "export", "quantize"],
        "deploy": ["gen_trt_engine", "evaluate", "inference"],
    },
    "mae": {
        "skill": "tao-train-mask-auto-encoder",
        "actions": ["train", "evaluate", "inference", "export"],
        "deploy": ["gen_trt_engine"],
    },
}

# Keys whose list values TAO builds from Python sets (order depends on the hash seed).
_SET_DERIVED_LISTS = ("automl_default_parameters", "automl_disabled_parameters", "required", "popular")


def _import_tao_core():
    """Import TAO Core's schema generator and converter (stubbing ``requests`` if missing)."""
    os.environ.setdefault("TAO_LOG_LEVEL", "WARNING")
    try:
        import requests  # noqa: F401
    except ImportError:
        stub = types.ModuleType("requests")

        def _no_network(*_a, **_k):
            raise RuntimeError("requests is stubbed by generate_schemas.py (no network use)")

        stub.get = _no_network  # type: ignore[attr-defined]
        sys.modules["requests"] = stub
    from nvidia_tao_core.api_utils import dataclass2json_converter
    from nvidia_tao_core.scripts import generate_schema

    logging.getLogger("nvidia_tao_core").setLevel(logging.WARNING)
    return generate_schema, dataclass2json_converter


def tao_core_version() -> str:
    """Installed nvidia-tao-core version (e.g. ``"7.3.0"``)."""
    return importlib.metadata.version("nvidia-tao-core")


def _sort_popular(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sort_popular(value[k]) for k in sorted(value)}
    return value


def _canonical_node(node: dict) -> None:
    """Sort set-derived lists in a schema node and recurse through ``properties``."""
    for key in _SET_DERIVED_LISTS:
        val = node.get(key)
        if isinstance(val, list) and all(isinstance(v, str) for v in val):
            node[key] = sorted(val)
    props = node.get("properties")
    if isinstance(props, dict):
        for child in props.values():
            if isinstance(child, dict):
                _canonical_node(child)
    if isinstance(node.get("x_tao_items"), dict):
        _canonical_node(node["x_tao_items"])


def canonicalize(schema: dict) -> dict:
    """Return ``schema`` with hash-order-dependent parts made deterministic (see module doc)."""
    out = copy.deepcopy(schema)
    _canonical_node(out)
    if isinstance(out.get("popular"), dict):
        out["popular"] = _sort_popular(out["popular"])
    return out


def _config_module(network: str):
    return importlib.import_module(f"nvidia_tao_core.config.{network}.default_config")


def _section_dataclass(network: str, section: str):
    """The dataclass type of ``ExperimentConfig.<section>`` (unwrapping ``Optional``)."""
    exp_cls = _config_module(network).ExperimentConfig
    hint = typing.get_type_hints(exp_cls).get(section)
    for cand in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(cand):
            return cand
    return None


#: How TAO reads a value beyond its dataclass type: (network or "*", action or "*", dotted key,
#: ``x_tao_reads`` annotation). Sources: TAO Deploy's engine builders lower-case
#: ``tensorrt.data_type`` before comparing it (so ``fp16`` = ``FP16``; the skills' ``trt_data_type``
#: shorthand documents lower case); ``batch_size: -1`` means a dynamic batch dimension for export
#: and engine building (TAO Core 7.3.0 ``export.batch_size`` / ``gen_trt_engine.batch_size``
#: descriptions: "A value of -1 implies dynamic tensor shapes"; the export and gen_trt_engine
#: entrypoints read ``dataset.batch_size`` with the same convention).
READER_RULES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("*", "*", "gen_trt_engine.tensorrt.data_type", {"enum_case": "insensitive"}),
    ("*", "export", "export.batch_size", {"dynamic": -1}),
    ("*", "export", "dataset.batch_size", {"dynamic": -1}),
    ("*", "gen_trt_engine", "gen_trt_engine.batch_size", {"dynamic": -1}),
    ("*", "gen_trt_engine", "dataset.batch_size", {"dynamic": -1}),
)

#: Spec-template values that deliberately differ from TAO Core's structured-config defaults.
TEMPLATE_DIFFERENCES: dict[tuple[str, str], str] = {
    ("dino", "distill"): (
        "distill: the block of DINODistillationConfig() instead of null (ExperimentConfig.distill "
        "defaults to None; the distill action needs the teacher, bindings and teacher checkpoint keys)"
    ),
}

_HINT_TYPES = {bool: "bool", int: "int", float: "float", str: "string"}


def structured_defaults(cls: Any) -> dict:
    """Values of ``OmegaConf.structured(cls)`` as plain containers (``"???"`` kept, no resolution)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cls), resolve=False, enum_to_str=True)  # type: ignore[return-value]


def _unwrap_optional(hint: Any) -> tuple[bool, Any]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)])  # noqa: UP007
    return False, hint


def _node_from_hint(hint: Any) -> dict:
    """A TAO-dialect node for a field the converter does not describe (type only)."""
    if hint in _HINT_TYPES:
        return {"type": _HINT_TYPES[hint]}
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return {"type": "list"}
    if origin is dict or dataclasses.is_dataclass(hint):
        return {"type": "collection"}
    return {}  # Any or a Union: any value


def _dataclass_schema(cls: Any) -> dict:
    """TAO converter schema of a dataclass, annotated like a section (properties, defaults, nullables)."""
    _, converter = _import_tao_core()
    node = converter.create_json_schema(converter.dataclass_to_json(cls()))
    node["type"] = "collection"
    _annotate(node, cls, structured_defaults(cls))
    return node


def _annotate(node: dict, cls: Any, value: Any, only: set[str] | None = None) -> None:
    """Make ``node`` (the schema of dataclass ``cls``) tell what OmegaConf's structured merge checks.

    Per field: ``default`` = the structured config's value, ``x_tao_nullable`` for ``Optional``,
    ``properties`` for dataclass-typed fields the converter left opaque, ``x_tao_items`` for lists.
    """
    hints = typing.get_type_hints(cls)
    props = node.get("properties")
    if not isinstance(props, dict):
        props = node["properties"] = {}
    values = value if isinstance(value, dict) else {}
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        optional, inner = _unwrap_optional(hints[f.name])
        child = props.get(f.name)
        if not isinstance(child, dict):
            child = props[f.name] = _node_from_hint(inner)
        child["default"] = values.get(f.name)
        declared = _HINT_TYPES.get(inner)
        if declared and child.get("type") in _HINT_TYPES.values() and child["type"] != declared:
            child["type"] = declared  # OmegaConf types the node by the annotation, not value_type
        if optional:
            child["x_tao_nullable"] = True
        if dataclasses.is_dataclass(inner):
            sub = values.get(f.name)
            if not isinstance(child.get("properties"), dict) or not _real_props(child):
                child.update({k: v for k, v in _dataclass_schema(inner).items() if k not in ("default", "type")})
            _annotate(child, inner, sub if isinstance(sub, dict) else structured_defaults(inner))
            child["default"] = sub  # the field's own value (None for an unset Optional section)
        elif typing.get_origin(inner) in (list, tuple):
            item_args = typing.get_args(inner)
            item = _unwrap_optional(item_args[0])[1] if item_args else Any
            if dataclasses.is_dataclass(item):
                items = _dataclass_schema(item)
                items.pop("default", None)
                child["x_tao_items"] = items
            elif item in _HINT_TYPES or typing.get_origin(item) in (dict, list):
                child["x_tao_items"] = _node_from_hint(item)
    node["default"] = value


def _real_props(node: dict) -> dict:
    return {k: v for k, v in (node.get("properties") or {}).items() if isinstance(v, dict)}


def _node_at(schema: dict, dotted: str) -> dict | None:
    node: Any = schema
    for part in dotted.split("."):
        node = (node.get("properties") or {}).get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def annotate_schema(network: str, action: str, schema: dict) -> dict:
    """Items 3-6 of the module doc on a schema TAO's generator emitted (in place; returns it)."""
    exp_cls = _config_module(network).ExperimentConfig
    kept = {k: v for k, v in structured_defaults(exp_cls).items() if k in schema["properties"]}
    _annotate(schema, exp_cls, kept, only=set(kept))
    for net, act, key, reads in READER_RULES:
        if net not in ("*", network) or act not in ("*", action):
            continue
        node = _node_at(schema, key)
        if node is not None:
            node["x_tao_reads"] = dict(reads)
    return schema


def build_schema(network: str, action: str, container: str) -> dict:
    """TAO-dialect schema of ``network`` for ``action`` plus ``x_tao_schema`` provenance."""
    generate_schema, converter = _import_tao_core()
    schema = canonicalize(generate_schema.generate_schema(network, action))
    annotate_schema(network, action, schema)
    _canonical_node(schema)  # the item/section schemas added above carry set-built lists too
    full = converter.create_json_schema(converter.dataclass_to_json(_config_module(network).ExperimentConfig()))
    removed = sorted(k for k in full["properties"] if k not in schema["properties"])
    schema["x_tao_schema"] = {
        "schema_version": SCHEMA_VERSION,
        "tao_core_version": tao_core_version(),
        "network_arch": network,
        "action": action,
        "container": container,
        "config": f"nvidia_tao_core.config.{network}.default_config.ExperimentConfig",
        "generator": "nvidia_tao_core.scripts.generate_schema.generate_schema",
        "sections_not_read": removed,
        "infinity": "bounds may be the token Infinity (Python json reads it as float('inf'))",
    }
    return schema


def build_template(network: str, action: str, schema: dict) -> dict:
    """Spec template: the structured config's values of the action's sections (schema ``default``).

    An action block that defaults to null (DINO ``distill``) is filled from its dataclass
    (``TEMPLATE_DIFFERENCES``).
    """
    template = copy.deepcopy(schema["default"])
    if template.get(action) is None and action in schema["properties"]:
        cls = _section_dataclass(network, action)
        if cls is not None:
            template[action] = structured_defaults(cls)
    return template


def dump_json(obj: Any) -> str:
    """Deterministic JSON text (2-space indent, ``Infinity`` allowed, trailing newline)."""
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=True) + "\n"


def dump_template(network: str, action: str, container: str, template: dict) -> str:
    """YAML text of a spec template with a provenance header."""
    label = f"deploy {action}" if container == "deploy" else action
    header = (
        f"# Spec template: {network} {label} (TAO Core {tao_core_version()} ExperimentConfig defaults).\n"
        "# Generated by scripts/generate_schemas.py - do not edit by hand.\n"
        '# "???" marks a value TAO requires you to set (Hydra MISSING).\n'
    )
    body = yaml.safe_dump(template, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    return header + body


def generate_all(root: Path = REPO_ROOT) -> dict[Path, str]:
    """Every generated file: absolute path -> exact text."""
    files: dict[Path, str] = {}
    for network, info in NETWORKS.items():
        skill_dir = root / "skills" / info["skill"]
        manifest_actions: dict[str, Any] = {}
        automl_enabled = False
        entries = [(a, "train") for a in info["actions"]] + [(a, "deploy") for a in info["deploy"]]
        for action, container in entries:
            key = action if container == "train" else f"deploy_{action}"
            schema = build_schema(network, action, container)
            template = build_template(network, action, schema)
            schema_rel = f"schemas/{key}.schema.json"
            template_rel = f"references/spec_template_{key}.yaml"
            files[skill_dir / schema_rel] = dump_json(schema)
            files[skill_dir / template_rel] = dump_template(network, action, container, template)
            manifest_actions[key] = {
                "action": action,
                "container": container,
                "path": schema_rel,
                "spec_template": template_rel,
                "automl_default_parameters": schema.get("automl_default_parameters", []),
                "automl_disabled_parameters": schema.get("automl_disabled_parameters", []),
                "popular": schema.get("popular", {}),
            }
            if action == "train" and schema.get("automl_default_parameters"):
                automl_enabled = True
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "network_arch": network,
            "skill": info["skill"],
            "tao_core_version": tao_core_version(),
            "automl_enabled": automl_enabled,
            "actions": manifest_actions,
        }
        files[skill_dir / "schemas" / "manifest.json"] = dump_json(manifest)
    return files


def owned_paths(root: Path = REPO_ROOT) -> set[Path]:
    """Files on disk this script owns (schemas/*.json and spec templates of the four skills)."""
    found: set[Path] = set()
    for info in NETWORKS.values():
        skill_dir = root / "skills" / info["skill"]
        found.update((skill_dir / "schemas").glob("*.json"))
        found.update((skill_dir / "references").glob("spec_template_*.yaml"))
    return found


def check(root: Path = REPO_ROOT) -> list[str]:
    """Paths (relative to ``root``) whose content differs from a fresh generation, or are stale."""
    expected = generate_all(root)
    problems: list[str] = []
    for path, text in sorted(expected.items()):
        rel = path.relative_to(root).as_posix()
        if not path.is_file():
            problems.append(f"{rel} (missing)")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{rel} (differs)")
    for path in sorted(owned_paths(root) - set(expected)):
        problems.append(f"{path.relative_to(root).as_posix()} (not generated; stale)")
    return problems


def write_all(root: Path = REPO_ROOT) -> list[Path]:
    """Write every generated file; returns the paths written."""
    written = []
    for path, text in sorted(generate_all(root).items()):
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="regenerate in memory; exit 1 listing differing files")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.root)
        for p in problems:
            print(p)
        if problems:
            print(f"{len(problems)} generated file(s) out of date: run python scripts/generate_schemas.py", file=sys.stderr)
            return 1
        print("schemas, manifests and spec templates are up to date")
        return 0
    written = write_all(args.root)
    for p in written:
        print(f"wrote {p.relative_to(args.root).as_posix()}")
    print(f"{len(written)} file(s) written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
