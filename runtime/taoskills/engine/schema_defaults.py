"""TAO Core defaults of whole spec sections, read from the packaged skill schemas.

Each model skill ships ``schemas/train.schema.json``, generated from TAO Core 7.3.0's
``ExperimentConfig`` by ``scripts/generate_schemas.py``; its top-level ``default`` holds the
``OmegaConf.structured`` value of every section the train action reads (``wandb``, ``model``,
``dataset``, ``train``, ...). The validator reads the same files. The engines' ``DEFAULTS``
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
def _train_defaults(skill: str) -> dict[str, Any]:
    for bank in _banks():
        path = bank / skill / SCHEMA
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
    raise NotFound(
        f"skill {skill}: {SCHEMA} was not found in {', '.join(str(b) for b in _banks())}",
        field="skills_dir",
        fix="reinstall tao-skills (the wheel packages the skill bank) or point TAO_SKILLS_DIR at a bank holding it",
    )


def schema_defaults(skill: str, *sections: str) -> dict[str, Any]:
    """``{section: TAO Core default}`` for each named top-level ``section`` of ``skill``'s train
    schema (e.g. ``schema_defaults("tao-train-dino", "wandb", "dataset", "train")``); each value is
    a fresh deep copy, key order as TAO Core declares it. Errors: NotFound when no bank holds
    the skill's schema, SkillError when the schema lacks a section."""
    default = _train_defaults(skill)
    missing = [s for s in sections if s not in default]
    if missing:
        raise SkillError(
            f"skill {skill}: {SCHEMA} has no default for {', '.join(missing)}",
            field=SCHEMA,
            fix="regenerate the schemas from TAO Core (scripts/generate_schemas.py)",
        )
    return {s: copy.deepcopy(default[s]) for s in sections}


__all__ = ["schema_defaults"]
