"""The engines' shared spec sections come from the packaged train schemas (taoskills.engine.schema_defaults)."""

import json

import pytest

from taoskills import paths
from taoskills.engine.schema_defaults import schema_defaults
from taoskills.errors import NotFound, SkillError


def test_sections_are_the_schema_defaults_and_fresh_copies():
    schema = json.loads((paths.skills_dir() / "tao-train-dino" / "schemas" / "train.schema.json").read_text())
    got = schema_defaults("tao-train-dino", "wandb", "train")
    assert list(got) == ["wandb", "train"]
    assert got["wandb"] == schema["default"]["wandb"] and got["train"] == schema["default"]["train"]
    got["wandb"]["project"] = "changed"  # a caller's edit never reaches the next caller
    assert schema_defaults("tao-train-dino", "wandb")["wandb"]["project"] == schema["default"]["wandb"]["project"]


def test_engine_defaults_share_the_schema_sections():
    from taoskills.engine.dino import defaults as dino
    from taoskills.engine.nvdinov2 import spec as nvdinov2

    assert dino.DEFAULTS["dataset"] == schema_defaults("tao-train-dino", "dataset")["dataset"]
    assert nvdinov2.DEFAULTS["train"] == schema_defaults("tao-train-nvdinov2", "train")["train"]


def test_unknown_skill_or_section_is_a_clear_error():
    with pytest.raises(NotFound) as nf:
        schema_defaults("tao-train-nothing", "train")
    assert nf.value.fix and "train.schema.json" in nf.value.message
    with pytest.raises(SkillError) as se:
        schema_defaults("tao-train-dino", "no_such_section")
    assert "no_such_section" in se.value.message


def test_action_sections_come_from_their_action_schemas():
    bank = paths.skills_dir() / "tao-train-dino" / "schemas"
    export = json.loads((bank / "export.schema.json").read_text())["default"]["export"]
    trt = json.loads((bank / "deploy_gen_trt_engine.schema.json").read_text())["default"]["gen_trt_engine"]
    got = schema_defaults("tao-train-dino", "export", "gen_trt_engine")
    assert got == {"export": export, "gen_trt_engine": trt}
