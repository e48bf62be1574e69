"""TAO Core defaults of whole spec sections, read from the packaged skill schemas.

Each model skill ships ``schemas/train.schema.json``, generated from TAO Core 7.3.0's
``ExperimentConfig`` by ``scripts/generate_schemas.py``; its top-level ``default`` holds the
``OmegaConf.structured`` value of every section the train action reads (``wandb``, ``model``,
``dataset``, ``train``, ...); each other action's schema holds its own section (``evaluate``,
``export``, ``gen_trt_engine`` in ``deploy_gen_trt_engine``). The validator reads the same files. The engines' ``DEFAULTS``
take the sections TAO Core defines without engine-specific values from here instead of
repeating them by hand; the engine-part tests still compare every ``DEFAULTS`` with the
installed TAO Core config. Torch-free; read once per skill.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from taoskills import paths
from taoskills.errors import NotFound, SkillError

SCHEMA = "schemas/train.schema.json"


def _banks() -> list[Path]:
    """The skill bank in use (:func:`taoskills.paths.skills_dir`), then the runtime's own copies
    (the repository's ``skills/``, the wheel's ``taoskills/_skills``), so a custom bank without
    the model skills still leaves the engines their defaults."""
    here = Path(__file__).resolve()
    return list(dict.fromkeys([paths.skills_dir(), here.parents[3] / "skills", here.parents[1] / "_skills"]))


@cache
def _defaults(skill: str, schema: str) -> dict[str, Any] | None:
    """The top-level ``default`` of ``schemas/<schema>.schema.json`` in the first bank holding
    it, or None when no bank has that schema."""
    for bank in _banks():
        path = bank / skill / "schemas" / f"{schema}.schema.json"
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))  # Infinity allowed, as the catalog reads it
            default = data.get("default") if isinstance(data, dict) else None
            if not isinstance(default, dict):
                raise SkillError(
                    f"{path} has no top-level 'default' mapping",
                    field=str(path),
                    fix="regenerate the schemas from TAO Core (scripts/generate_schemas.py)",
                )
            return default
    return None


def _section(skill: str, section: str) -> Any:
    """TAO Core's default of ``section``: from the train schema, else from the schema of the
    action named like it (``export``), else its TensorRT deploy action (``deploy_gen_trt_engine``)."""
    for schema in ("train", section, f"deploy_{section}"):
        default = _defaults(skill, schema)
        if default is not None and section in default:
            return default[section]
    raise SkillError(
        f"skill {skill}: no packaged schema has a default for {section}",
        field=SCHEMA,
        fix="regenerate the schemas from TAO Core (scripts/generate_schemas.py)",
    )


def schema_defaults(skill: str, *sections: str) -> dict[str, Any]:
    """``{section: TAO Core default}`` for each named top-level ``section`` of ``skill`` (e.g.
    ``schema_defaults("tao-train-dino", "wandb", "train", "export")``), read from the train
    schema or, for action sections the train action does not read, from that action's schema;
    each value is a fresh deep copy, key order as TAO Core declares it. Errors: NotFound when no
    bank holds the skill's train schema, SkillError when no schema has a section."""
    if _defaults(skill, "train") is None:
        raise NotFound(
            f"skill {skill}: {SCHEMA} was not found in {', '.join(str(b) for b in _banks())}",
            field="skills_dir",
            fix="reinstall tao-skills (the wheel packages the skill bank) or point TAO_SKILLS_DIR at a bank holding it",
        )
    return {s: copy.deepcopy(_section(skill, s)) for s in sections}


__all__ = ["schema_defaults"]
