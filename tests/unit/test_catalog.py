"""Catalog behaviour: loading, validation errors that name file and field, lookup, lazy files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from taoskills import paths
from taoskills.bank.catalog import Catalog, load_skill
from taoskills.errors import NotFound, SkillError

BANK = paths.skills_dir()
SKILL = "tao-train-nvdinov2"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    Catalog.clear_cache()
    yield
    Catalog.clear_cache()


def _copy_skill(tmp_path: Path, name: str = SKILL, *, with_files: bool = False) -> Path:
    """Copy SKILL.md + skill_info.yaml of a real skill into tmp_path/bank/<name>."""
    src = BANK / name
    dst = tmp_path / "bank" / name
    (dst / "references").mkdir(parents=True)
    shutil.copy(src / "SKILL.md", dst / "SKILL.md")
    shutil.copy(src / "references" / "skill_info.yaml", dst / "references" / "skill_info.yaml")
    if with_files:
        info = yaml.safe_load((dst / "references" / "skill_info.yaml").read_text())
        (dst / "schemas").mkdir()
        (dst / "schemas" / "manifest.json").write_text(json.dumps({"actions": sorted(info["actions"])}))
        for action, spec in info["actions"].items():
            (dst / "schemas" / spec["schema_file"]).write_text(
                json.dumps(
                    {
                        "type": "object",
                        "x_action": action,
                        "properties": {"train": {"type": "object"}},
                        "maximum_demo": float("inf"),
                    }
                )
            )
            (dst / "references" / spec["spec_template"]).write_text(
                yaml.safe_dump({"action": action, "train": {"num_epochs": 10}})
            )
    return dst


def _edit_info(folder: Path, fn) -> None:
    path = folder / "references" / "skill_info.yaml"
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


# --- the real bank -------------------------------------------------------------------------


def test_real_bank_loads_every_skill():
    cat = Catalog.load(strict=False)
    assert set(cat.names()) == {
        "tao-train-nvdinov2",
        "tao-train-dino",
        "tao-train-mask-auto-encoder",
        "tao-train-grounding-dino",
        "tao-run-automl",
    }
    for skill in cat:
        assert skill.name == skill.dir.name == skill.info.name == skill.frontmatter["name"]
        assert skill.body.strip().startswith("#")


def test_load_is_cached_per_path_and_reloadable():
    a = Catalog.load(strict=False)
    assert Catalog.load(strict=False) is a
    assert Catalog.load(BANK, strict=False) is a
    assert Catalog.load(strict=False, reload=True) is not a


@pytest.mark.parametrize(
    "alias,expected",
    [
        ("dino", "tao-train-dino"),
        ("DINO", "tao-train-dino"),
        ("nvdinov2", "tao-train-nvdinov2"),
        ("mae", "tao-train-mask-auto-encoder"),
        ("mask-auto-encoder", "tao-train-mask-auto-encoder"),
        ("grounding_dino", "tao-train-grounding-dino"),
        ("Grounding DINO", "tao-train-grounding-dino"),
        ("grounding-dino", "tao-train-grounding-dino"),
        ("automl", "tao-run-automl"),
        ("tao-run-automl", "tao-run-automl"),
    ],
)
def test_get_accepts_names_archs_and_short_names(alias, expected):
    assert Catalog.load(strict=False).get(alias).name == expected


def test_get_unknown_gives_did_you_mean_and_list():
    cat = Catalog.load(strict=False)
    with pytest.raises(NotFound) as exc:
        cat.get("tao-train-dinno")
    err = exc.value
    assert "Did you mean 'tao-train-dino'" in err.message
    assert err.field == "skill"
    assert set(err.details["skills"]) == set(cat.names())


def test_by_network_and_unknown_network():
    cat = Catalog.load(strict=False)
    assert cat.by_network("grounding_dino").name == "tao-train-grounding-dino"
    assert cat.by_network("mae").name == "tao-train-mask-auto-encoder"
    with pytest.raises(NotFound) as exc:
        cat.by_network("din")
    assert "dino" in exc.value.message and exc.value.field == "network_arch"


def test_action_lookup_lists_actions_on_miss():
    skill = Catalog.load(strict=False).get("nvdinov2")
    assert skill.action("export").command == "nvdinov2 export -e {config_path}"
    with pytest.raises(NotFound) as exc:
        skill.action("evaluate")
    assert "train, inference, export, deploy_gen_trt_engine" in exc.value.message
    assert exc.value.details["actions"] == ["train", "inference", "export", "deploy_gen_trt_engine"]


def test_automl_skill_is_the_application():
    cat = Catalog.load(strict=False)
    assert cat.automl_skill().name == "tao-run-automl"
    assert {s.name for s in cat.models()} == set(cat.names()) - {"tao-run-automl"}


# --- strictness, lazy files ------------------------------------------------------------------


def test_strict_load_reports_missing_generated_files(tmp_path):
    _copy_skill(tmp_path)
    bank = tmp_path / "bank"
    with pytest.raises(SkillError) as exc:
        Catalog.load(bank)
    err = exc.value
    missing = err.details["errors"][0]["details"]["missing"]
    assert "schemas/manifest.json" in missing
    assert "schemas/train.schema.json" in missing
    assert "references/spec_template_deploy_gen_trt_engine.yaml" in missing
    assert {i.field for i in err.issues} >= {"schemas/train.schema.json"}
    # non-strict still loads: the folder itself is valid
    assert Catalog.load(bank, strict=False).get("nvdinov2").name == SKILL


def test_schema_template_manifest_are_lazy_and_cached(tmp_path):
    _copy_skill(tmp_path, with_files=True)
    skill = Catalog.load(tmp_path / "bank").get(SKILL)
    schema = skill.schema("train")
    assert schema["x_action"] == "train" and schema["maximum_demo"] == float("inf")
    assert skill.schema("train") is schema
    assert skill.template("deploy_gen_trt_engine")["action"] == "deploy_gen_trt_engine"
    assert skill.manifest["actions"] == sorted(skill.actions)
    files = skill.files()
    assert "SKILL.md" in files and "schemas/deploy_gen_trt_engine.schema.json" in files
    assert all(not f.startswith("/") for f in files)
    assert skill.automl_ready() == (True, "ok")
    with pytest.raises(NotFound):
        skill.schema("evaluate")
    with pytest.raises(NotFound):
        skill.read_text("../../etc/passwd")


def test_automl_not_ready_without_train_template(tmp_path):
    folder = _copy_skill(tmp_path, with_files=True)
    (folder / "references" / "spec_template_train.yaml").unlink()
    skill = Catalog.load(tmp_path / "bank", strict=False).get(SKILL)
    ok, why = skill.automl_ready()
    assert not ok and "not runnable until schemas are generated" in why


def test_broken_json_schema_is_a_skill_error(tmp_path):
    folder = _copy_skill(tmp_path, with_files=True)
    (folder / "schemas" / "export.schema.json").write_text("{not json")
    skill = Catalog.load(tmp_path / "bank").get(SKILL)
    with pytest.raises(SkillError) as exc:
        skill.schema("export")
    assert "export.schema.json" in exc.value.field


# --- validation errors name the file and the field -------------------------------------------


def test_unknown_key_in_skill_info_names_the_field(tmp_path):
    folder = _copy_skill(tmp_path)
    _edit_info(folder, lambda d: d["actions"]["train"].__setitem__("commnd", "x"))
    with pytest.raises(SkillError) as exc:
        load_skill(folder)
    assert exc.value.field.endswith("skill_info.yaml:actions.train.commnd")
    assert any(i.field == "actions.train.commnd" for i in exc.value.issues)


def test_bad_regex_names_the_error_pattern(tmp_path):
    folder = _copy_skill(tmp_path)
    _edit_info(folder, lambda d: d["error_patterns"][0].__setitem__("regex", "CUDA (out of memory"))
    with pytest.raises(SkillError) as exc:
        load_skill(folder)
    assert "error_patterns.0.regex" in exc.value.field


def test_bad_dotted_key_is_rejected(tmp_path):
    folder = _copy_skill(tmp_path)
    _edit_info(folder, lambda d: d["actions"]["train"]["required_keys"].append("dataset..images_dir"))
    with pytest.raises(SkillError) as exc:
        load_skill(folder)
    assert "actions.train.required_keys" in exc.value.field


def test_skill_info_name_mismatch_rejected(tmp_path):
    folder = _copy_skill(tmp_path)
    _edit_info(folder, lambda d: d.__setitem__("name", "tao-train-other"))
    with pytest.raises(SkillError) as exc:
        load_skill(folder)
    assert "names disagree" in exc.value.message
    assert exc.value.field.endswith("skill_info.yaml:name")


def test_folder_name_mismatch_rejected(tmp_path):
    folder = _copy_skill(tmp_path)
    renamed = folder.with_name("tao-train-renamed")
    folder.rename(renamed)
    with pytest.raises(SkillError) as exc:
        load_skill(renamed)
    assert "SKILL.md:name" in exc.value.field


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda t: t.replace("license: Apache-2.0", "license: Apache-2.0\ntags: detection"), "frontmatter.tags"),
        (lambda t: t.replace("description: ", "description: use <this> ", 1), "frontmatter.description"),
        (lambda t: t.replace('version: "0.1.0"', "version: 0.1"), "frontmatter.metadata.version"),
    ],
)
def test_frontmatter_rules(tmp_path, mutate, field):
    folder = _copy_skill(tmp_path)
    md = folder / "SKILL.md"
    md.write_text(mutate(md.read_text()))
    with pytest.raises(SkillError) as exc:
        load_skill(folder)
    assert exc.value.field.endswith(field)


def test_catalog_load_collects_every_broken_skill(tmp_path):
    a = _copy_skill(tmp_path, "tao-train-nvdinov2")
    b = _copy_skill(tmp_path, "tao-train-dino")
    _edit_info(a, lambda d: d.__setitem__("bogus", 1))
    _edit_info(b, lambda d: d.__setitem__("bogus", 2))
    with pytest.raises(SkillError) as exc:
        Catalog.load(tmp_path / "bank", strict=False)
    assert len(exc.value.details["errors"]) == 2


def test_missing_bank_folder(tmp_path):
    with pytest.raises(NotFound):
        Catalog.load(tmp_path / "nope")
