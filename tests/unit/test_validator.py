"""taoskills.specs.validator on the packaged TAO-dialect schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from taoskills.errors import SpecError
from taoskills.specs import validator
from taoskills.specs.validator import assert_valid, schema_keys, to_json_schema, validate_spec

REPO = Path(__file__).resolve().parents[2]
SKILLS = ("tao-train-nvdinov2", "tao-train-dino", "tao-train-grounding-dino", "tao-train-mask-auto-encoder")

# Warnings the untouched templates raise on purpose (TAO's own defaults, constraints C9/C11).
EXPECTED_TEMPLATE_WARNINGS = {
    ("tao-train-dino", "train"): {"train.optim.lr_steps"},
    ("tao-train-dino", "distill"): {"train.optim.lr_steps"},
    ("tao-train-mask-auto-encoder", "train"): {"train.optim.milestones"},
    ("tao-train-mask-auto-encoder", "inference"): {"train.stage"},
}


def load(skill: str, key: str) -> tuple[dict, dict]:
    folder = REPO / "skills" / skill
    entry = json.loads((folder / "schemas/manifest.json").read_text())["actions"][key]
    return json.loads((folder / entry["path"]).read_text()), yaml.safe_load((folder / entry["spec_template"]).read_text())


def entries():
    for skill in SKILLS:
        for key in json.loads((REPO / "skills" / skill / "schemas/manifest.json").read_text())["actions"]:
            yield pytest.param(skill, key, id=f"{skill}:{key}")


def by_field(issues):
    return {i.field: i for i in issues}


@pytest.fixture(scope="module")
def dino_train():
    return load("tao-train-dino", "train")[0]


@pytest.mark.parametrize("skill,key", list(entries()))
def test_every_template_validates_clean(skill, key):
    schema, template = load(skill, key)
    issues = validate_spec(schema, template, action=key)
    assert [i for i in issues if i.code != "warning"] == []
    assert {i.field for i in issues} == EXPECTED_TEMPLATE_WARNINGS.get((skill, key), set())


@pytest.mark.parametrize("skill,key", list(entries()))
def test_require_complete_reports_only_missing_values(skill, key):
    schema, template = load(skill, key)
    issues = validate_spec(schema, template, action=key, require_complete=True)
    missing = [i for i in issues if i.code == "missing"]
    assert all(i.code in ("missing", "warning") for i in issues)
    for issue in missing:
        top = issue.field.split(".")[0]
        assert top in validator.sections_read(schema, schema["x_tao_schema"]["action"])
        assert "required value not set" in issue.reason


def test_missing_is_allowed_unless_complete_is_required(dino_train):
    export_schema, export_tpl = load("tao-train-dino", "export")
    assert export_tpl["export"]["onnx_file"] == "???"
    assert [i for i in validate_spec(export_schema, export_tpl) if i.code != "warning"] == []
    fields = {i.field for i in validate_spec(export_schema, export_tpl, require_complete=True) if i.code == "missing"}
    assert fields == {"export.checkpoint", "export.onnx_file"}
    export_tpl["export"].update(checkpoint="/r/model.pth", onnx_file="/r/model.onnx")
    assert validate_spec(export_schema, export_tpl, require_complete=True) == []


def test_deploy_evaluate_needs_the_engine_not_the_checkpoint():
    schema, tpl = load("tao-train-dino", "deploy_evaluate")
    fields = {i.field for i in validate_spec(schema, tpl, require_complete=True)}
    assert fields == {"evaluate.trt_engine"}
    tpl["evaluate"]["trt_engine"] = "/r/model.engine"
    assert validate_spec(schema, tpl, require_complete=True) == []


def test_int8_engine_needs_calibration():
    schema, tpl = load("tao-train-dino", "deploy_gen_trt_engine")
    tpl["gen_trt_engine"].update(onnx_file="/r/m.onnx", trt_engine="/r/m.engine")
    assert validate_spec(schema, tpl, require_complete=True) == []
    tpl["gen_trt_engine"]["tensorrt"]["data_type"] = "INT8"
    fields = {i.field for i in validate_spec(schema, tpl, require_complete=True)}
    assert fields == {"gen_trt_engine.tensorrt.calibration.cal_image_dir", "gen_trt_engine.tensorrt.calibration.cal_cache_file"}


def test_required_keys_override_the_scan():
    schema, tpl = load("tao-train-dino", "export")
    issues = validate_spec(schema, tpl, require_complete=True, required_keys=["export.checkpoint", "results_dir"])
    assert {i.field for i in issues} == {"export.checkpoint", "results_dir"}


def test_unknown_key_gets_did_you_mean(dino_train):
    (issue,) = [i for i in validate_spec(dino_train, {"train": {"num_epoch": 5}}) if i.code != "warning"]
    assert issue.field == "train.num_epoch"
    assert issue.code == "unknown_key"
    assert "train.num_epochs" in issue.fix


def test_misplaced_key_points_to_where_it_lives(dino_train):
    issues = by_field(validate_spec(dino_train, {"num_epochs": 5, "train": {"lr": 0.1}}))
    assert "'train.num_epochs'" in issues["num_epochs"].fix
    assert "'train.optim.lr'" in issues["train.lr"].fix


def test_section_of_another_action_is_named(dino_train):
    (issue,) = [i for i in validate_spec(dino_train, {"export": {"onnx_file": "x.onnx"}}) if i.code != "warning"]
    assert issue.field == "export"
    assert "not read by the train action" in issue.reason


def test_unknown_key_without_neighbour_lists_valid_keys(dino_train):
    (issue,) = [i for i in validate_spec(dino_train, {"train": {"cudnn": {"zzz_qqq": 1}}}) if i.code != "warning"]
    assert issue.field == "train.cudnn.zzz_qqq"
    assert "benchmark" in issue.fix and "deterministic" in issue.fix


def test_wrong_type_names_field_expected_type_and_value(dino_train):
    (issue,) = [i for i in validate_spec(dino_train, {"train": {"num_epochs": "ten"}}) if i.code != "warning"]
    assert issue.field == "train.num_epochs"
    assert issue.code == "type"
    assert "integer" in issue.reason and "'ten'" in issue.reason


def test_int_is_strict_but_float_takes_ints(dino_train):
    fields = by_field(validate_spec(dino_train, {"train": {"num_epochs": 10.0, "optim": {"lr": 1}}}))
    assert fields["train.num_epochs"].code == "type"
    assert "train.optim.lr" not in fields
    assert (
        by_field(validate_spec(dino_train, {"train": {"activation_checkpoint": 1.5}}))["train.activation_checkpoint"].code
        == "type"
    )


def test_numeric_string_is_a_warning_like_omegaconf(dino_train):
    issues = by_field(validate_spec(dino_train, {"train": {"optim": {"lr": "1e-4"}}}))
    assert issues["train.optim.lr"].code == "warning"
    assert "0.0001" in issues["train.optim.lr"].reason


def test_enum_violation_suggests_the_close_option(dino_train):
    (issue,) = [i for i in validate_spec(dino_train, {"model": {"backbone": "resnet50"}}) if i.code != "warning"]
    assert issue.field == "model.backbone"
    assert issue.code == "enum"
    assert "'resnet_50'" in issue.fix


def test_ordered_int_enum():
    schema, _ = load("tao-train-nvdinov2", "train")
    (issue,) = validate_spec(schema, {"model": {"backbone": {"img_size": 320}}})
    assert issue.field == "model.backbone.img_size" and issue.code == "enum"


def test_bound_violation(dino_train):
    issues = by_field(validate_spec(dino_train, {"train": {"num_epochs": 0, "optim": {"lr": 1.5}}}))
    assert issues["train.num_epochs"].code == "bound" and ">= 1" in issues["train.num_epochs"].fix
    assert issues["train.optim.lr"].code == "bound" and "<= 1" in issues["train.optim.lr"].fix
    assert "train.validation_interval" not in issues  # no cascade from the rejected num_epochs


def test_infinity_bound_means_no_upper_bound(dino_train):
    node = dino_train["properties"]["train"]["properties"]["num_epochs"]
    assert node["maximum"] == float("inf")
    js = to_json_schema(dino_train)["properties"]["train"]["properties"]["num_epochs"]
    assert "maximum" not in js and js["minimum"] == 1
    issues = validate_spec(dino_train, {"train": {"num_epochs": 10**9, "optim": {"lr_steps": [10**9]}}})
    assert [i for i in issues if i.code != "warning"] == []


def test_default_outside_tao_bound_is_accepted():
    schema, _ = load("tao-train-nvdinov2", "export")
    assert schema["properties"]["export"]["properties"]["batch_size"]["minimum"] == 0
    assert validate_spec(schema, {"export": {"batch_size": -1}}) == []
    assert by_field(validate_spec(schema, {"export": {"batch_size": -2}}))["export.batch_size"].code == "bound"


def test_interpolation_is_not_type_checked(dino_train):
    spec = {"encryption_key": "${oc.env:TAO_ENCRYPTION_KEY,tlt_encode}", "train": {"num_epochs": "${oc.env:EPOCHS,10}"}}
    assert [i for i in validate_spec(dino_train, spec) if i.code != "warning"] == []


def test_null_only_where_tao_allows_it(dino_train):
    assert by_field(validate_spec(dino_train, {"train": {"num_epochs": None}}))["train.num_epochs"].code == "type"
    mae, _ = load("tao-train-mask-auto-encoder", "train")
    assert [i for i in validate_spec(mae, {"dataset": {"test_data_sources": None}}) if i.code != "warning"] == []


def test_json_schema_shape(dino_train):
    js = to_json_schema(dino_train)
    assert js["$schema"].endswith("2020-12/schema")
    assert js["additionalProperties"] is False
    train = js["properties"]["train"]
    assert train["type"] == "object" and train["additionalProperties"] is False
    assert train["properties"]["num_epochs"]["type"] == "integer"
    assert train["properties"]["optim"]["properties"]["lr"]["type"] == "number"
    assert train["properties"]["gpu_ids"]["type"] == "array"
    assert js["properties"]["model"]["properties"]["backbone"]["enum"][0] == "fan_tiny"
    assert js["properties"]["distill"]["type"] == ["object", "null"]  # opaque collection, default None
    assert "automl_disabled_parameters" not in js["properties"]  # TAO artifact, not a spec key
    assert to_json_schema(json.loads(json.dumps(dino_train))) is js  # cached by content


def test_schema_keys(dino_train):
    keys = schema_keys(dino_train)
    assert {"train.num_epochs", "train.optim.lr", "model.backbone", "dataset.augmentation.train_random_crop_max"} <= keys
    assert "train" not in keys and "train.optim" not in keys
    assert "export.onnx_file" not in keys  # not in the train schema
    assert "automl_disabled_parameters" not in keys


def test_assert_valid_raises_spec_error_with_issues(dino_train):
    with pytest.raises(SpecError) as exc:
        assert_valid(dino_train, {"train": {"num_epoch": 5, "num_gpus": "two"}})
    assert {i.field for i in exc.value.issues} == {"train.num_epoch", "train.num_gpus"}
    assert exc.value.field in {"train.num_epoch", "train.num_gpus"}
    warnings = assert_valid(dino_train, {"train": {"num_epochs": 20}})
    assert all(w.code == "warning" for w in warnings)


def test_constraints_run_from_validate_spec(dino_train):
    issues = by_field(validate_spec(dino_train, {"model": {"num_select": 500}}, network_arch="dino", action="train"))
    assert issues["model.num_select"].code == "constraint"


def test_non_mapping_spec(dino_train):
    (issue,) = validate_spec(dino_train, ["train"])
    assert issue.code == "type"


# --- TAO's reading conventions (generator annotations x_tao_*) ---------------------------------


@pytest.mark.parametrize("skill", ["tao-train-dino", "tao-train-grounding-dino"])
def test_trt_data_type_is_compared_case_insensitively(skill):
    schema, template = load(skill, "deploy_gen_trt_engine")
    for value in ("fp16", "Fp32", "FP16"):
        spec = {"gen_trt_engine": {"tensorrt": {"data_type": value}}}
        assert [i for i in validate_spec(schema, spec) if i.code != "warning"] == [], value
    issues = validate_spec(schema, {"gen_trt_engine": {"tensorrt": {"data_type": "fp64"}}})
    assert [i.code for i in issues if i.field == "gen_trt_engine.tensorrt.data_type"] == ["enum"]


@pytest.mark.parametrize("key", ["export", "deploy_gen_trt_engine"])
def test_dataset_batch_size_minus_one_is_dynamic_for_export_and_engines(key):
    schema, _ = load("tao-train-dino", key)
    assert not [i for i in validate_spec(schema, {"dataset": {"batch_size": -1}}) if i.code != "warning"]
    for bad in (0, -2):
        assert "dataset.batch_size" in {
            i.field for i in validate_spec(schema, {"dataset": {"batch_size": bad}}) if i.code != "warning"
        }


def test_dataset_batch_size_minus_one_is_refused_for_training(dino_train):
    assert "dataset.batch_size" in {i.field for i in validate_spec(dino_train, {"dataset": {"batch_size": -1}})}


def test_distill_bindings_are_checked_key_by_key():
    schema, _ = load("tao-train-dino", "distill")
    good = {"student_module_name": "backbone", "teacher_module_name": "backbone", "criterion": "L2", "weight": 1.0}
    assert not [i for i in validate_spec(schema, {"distill": {"bindings": [good]}}) if i.code != "warning"]
    issues = by_field(validate_spec(schema, {"distill": {"bindings": [good, {**good, "wieght": 2.0}]}}))
    assert issues["distill.bindings[1].wieght"].code == "unknown_key" and "weight" in issues["distill.bindings[1].wieght"].fix
    issues = by_field(validate_spec(schema, {"distill": {"bindings": [{**good, "weight": "heavy"}]}}))
    assert issues["distill.bindings[0].weight"].code == "type"
    issues = by_field(validate_spec(schema, {"distill": {"teacher": {"backbone": "fan_small", "num_querys": 3}}}))
    assert issues["distill.teacher.num_querys"].code == "unknown_key"


def test_optional_fields_take_null(dino_train):
    spec = {
        "model": {"pretrained_backbone_path": None},
        "dataset": {"eval_class_ids": None, "augmentation": {"fixed_random_crop": None}},
    }
    assert not [i for i in validate_spec(dino_train, spec) if i.code != "warning"]
