"""Deterministic routing against a small bank built in the test (independent of skills/)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from taoskills.bank.routing import RouteResult, extract_parameters, extract_paths, load_near_misses, route
from taoskills.bank.skill_info import SkillInfo
from taoskills.errors import SpecError


def _action(net: str, name: str, container: str = "train") -> dict:
    return {
        "description": name,
        "command": f"{net} {name} -e {{config_path}}",
        "container": container,
        "spec_template": f"spec_template_{name}.yaml",
        "schema_file": f"{name}.schema.json",
    }


def _model(name: str, arch: str, actions: list[str], routing: dict, shorthand: dict | None = None) -> SkillInfo:
    return SkillInfo.model_validate(
        {
            "name": name,
            "description": name,
            "network_arch": arch,
            "automl_enabled": True,
            "gpu_spec_key": "train.num_gpus",
            "multi_gpu": {"launcher": "lightning"},
            "images": {"train": "nvcr.io/x/pyt:1", "deploy": "nvcr.io/x/deploy:1"},
            "metrics": [{"name": "train_loss", "direction": "minimize"}],
            "actions": {a: _action(arch, a, "deploy" if a.startswith("deploy_") else "train") for a in actions},
            "shorthand": shorthand or {},
            "routing": routing,
        }
    )


INFOS = [
    _model(
        "tao-train-nvdinov2",
        "nvdinov2",
        ["train", "inference", "export", "deploy_gen_trt_engine"],
        {
            "triggers": ["NVDINOv2", "DINOv2", "DINOv2 backbone", "self-supervised ViT pretraining"],
            "keywords": ["self-supervised", "unlabeled images", "ViT"],
            "negatives": ["object detection", "MAE"],
            "action_words": {"inference": ["embeddings"]},
        },
        {
            "num_epochs": "train.num_epochs",
            "batch_size": "dataset.batch_size",
            "image_size": "model.backbone.img_size",
            "teacher_type": "model.backbone.teacher_type",
            "student_type": "model.backbone.student_type",
        },
    ),
    _model(
        "tao-train-dino",
        "dino",
        [
            "train",
            "evaluate",
            "inference",
            "export",
            "distill",
            "quantize",
            "deploy_gen_trt_engine",
            "deploy_evaluate",
            "deploy_inference",
        ],
        {
            "triggers": ["DINO", "DETR object detection"],
            "keywords": ["object detection", "detector", "COCO"],
            "negatives": ["Grounding DINO", "DINOv2", "open-vocabulary"],
        },
        {
            "num_epochs": "train.num_epochs",
            "batch_size": "dataset.batch_size",
            "num_gpus": "train.num_gpus",
            "learning_rate": "train.optim.lr",
            "num_classes": "dataset.num_classes",
            "backbone": "model.backbone",
            "pretrained_model": "train.pretrained_model_path",
        },
    ),
    _model(
        "tao-train-mask-auto-encoder",
        "mae",
        ["train", "evaluate", "inference", "export", "deploy_gen_trt_engine"],
        {
            "triggers": ["MAE", "Masked Autoencoder", "Mask Auto-Encoder"],
            "keywords": ["fine-tune", "image classification"],
            "negatives": ["DINO", "object detection"],
        },
        {"stage": "train.stage", "arch": "model.arch", "num_classes": "model.num_classes"},
    ),
    _model(
        "tao-train-grounding-dino",
        "grounding_dino",
        ["train", "evaluate", "inference", "export", "quantize", "deploy_gen_trt_engine", "deploy_evaluate", "deploy_inference"],
        {
            "triggers": ["Grounding DINO", "GroundingDINO", "open-vocabulary detection"],
            "keywords": ["captions", "BERT", "object detection"],
            "negatives": ["DINOv2", "MAE"],
        },
    ),
]
AUTOML = SkillInfo.model_validate(
    {
        "name": "tao-run-automl",
        "kind": "application",
        "description": "AutoML",
        "routing": {"triggers": ["AutoML", "HPO", "hyperparameter search"], "negatives": ["no HPO", "disable AutoML"]},
        "automl": {"algorithms": ["bayesian"], "default_algorithm": "bayesian", "policy_off_phrases": ["no HPO", "one-shot run"]},
    }
)


@pytest.fixture
def catalog(tmp_path: Path) -> SimpleNamespace:
    """A Catalog-like object: .skills name -> object with .name, .dir, .info; every model
    folder packages a parseable train schema and template (AutoML runnable)."""
    skills = {}
    for info in [*INFOS, AUTOML]:
        d = tmp_path / info.name
        (d / "schemas").mkdir(parents=True)
        (d / "references").mkdir()
        (d / "schemas/train.schema.json").write_text(json.dumps({"type": "object"}))
        (d / "references/spec_template_train.yaml").write_text(yaml.safe_dump({"train": {"num_epochs": 1}}))
        skills[info.name] = SimpleNamespace(name=info.name, dir=d, info=info)
    return SimpleNamespace(skills=skills)


def r(text: str, catalog, **kw) -> RouteResult:
    return route(text, catalog, **kw)


# --- overlaps -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,skill",
    [
        ("train Grounding DINO on my ODVG data", "tao-train-grounding-dino"),
        ("train groundingdino", "tao-train-grounding-dino"),
        ("train grounding-dino", "tao-train-grounding-dino"),
        ("train DINO on COCO", "tao-train-dino"),
        ("pretrain DINOv2 on unlabeled images", "tao-train-nvdinov2"),
        ("train NVDINOv2", "tao-train-nvdinov2"),
        ("train a DINO detector with a DINOv2 backbone", "tao-train-dino"),
        ("train DINO, not Grounding DINO", "tao-train-dino"),
        ("train Grounding DINO rather than DINO", "tao-train-grounding-dino"),
        ("pretrain a mask auto encoder", "tao-train-mask-auto-encoder"),
        ("pretrain a mask-autoencoder", "tao-train-mask-auto-encoder"),
        ("pretrain DINO v2 on my photos", "tao-train-nvdinov2"),
        ("fine-tune MAE for image classification", "tao-train-mask-auto-encoder"),
    ],
)
def test_overlaps(catalog, text: str, skill: str) -> None:
    res = r(text, catalog)
    assert res.skill == skill, res.reason
    assert 0 < res.confidence <= 1


def test_grounding_dino_is_one_match(catalog) -> None:
    res = r("evaluate Grounding DINO", catalog)
    owners = {m.owner for m in res.matches if m.kind in ("trigger", "keyword")}
    assert owners == {"tao-train-grounding-dino"}
    assert "tao-train-dino" not in res.scores


@pytest.mark.parametrize(
    "text,near_miss,nearest_word",
    [
        ("train DINOv3 on my images", "dinov3", "NVDINOv2"),
        ("train dino v3", "dinov3", "NVDINOv2"),
        ("train RT-DETR on COCO", "rtdetr", "DINO"),
        ("train Deformable DETR", "deformable_detr", "DINO"),
        ("train Mask Grounding DINO", "mask_grounding_dino", "Grounding DINO"),
        ("train YOLOv8 on my data", "yolo", "bank covers NVDINOv2, DINO, MAE, Grounding DINO"),
        ("train SegFormer on Cityscapes", "segformer", "not in this bank"),
        ("train classification_pyt", "classification_pyt", "MAE"),
        ("ViT classifier finetune", "classification_pyt", "MAE"),
        ("llama finetune", "llm", "not one of these skills"),
        ("fine-tune Stable Diffusion", "stable_diffusion", "not one of these skills"),
        ("transcribe audio with whisper", "whisper", "not one of these skills"),
        ("BERT finetune for sentiment", "bert", "not one of these skills"),
    ],
)
def test_near_misses(catalog, text: str, near_miss: str, nearest_word: str) -> None:
    res = r(text, catalog)
    assert res.skill is None, res.reason
    assert res.near_miss is not None and res.near_miss.name == near_miss
    assert res.no_skill_reason and nearest_word in res.no_skill_reason
    assert res.action is None and res.automl_policy is None and res.confidence == 0.0


def test_dinov3_message_names_network_and_nearest(catalog) -> None:
    msg = r("Train DINOv3", catalog).no_skill_reason
    assert "DINOv3 is a different TAO network (dinov3) not in this bank; nearest: NVDINOv2" in msg


def test_yolo_message(catalog) -> None:
    msg = r("train YOLO", catalog).no_skill_reason
    assert msg.startswith("YOLO is not one of these skills; the bank covers NVDINOv2, DINO, MAE, Grounding DINO")


def test_nothing_matches(catalog) -> None:
    res = r("what is the capital of France?", catalog)
    assert res.skill is None and res.near_miss is None
    assert "bank covers" in res.no_skill_reason and res.matches == []


def test_near_miss_mentioned_as_data_format_does_not_block(catalog) -> None:
    res = r("convert my YOLO labels to COCO and train DINO", catalog)
    assert res.skill == "tao-train-dino" and res.near_miss and res.near_miss.name == "yolo"


def test_tie_is_ambiguous(catalog) -> None:
    res = r("DINO or Grounding DINO?", catalog)
    # DINO has the negative "Grounding DINO" so it loses; two plain object-detection hints tie
    assert res.skill == "tao-train-grounding-dino"
    tie = r("object detection", catalog)
    assert tie.skill is None and tie.ambiguous and "ambiguous" in tie.no_skill_reason


def test_path_words_do_not_route(catalog) -> None:
    res = r("train it on /data/grounding_dino_coco/ with /ckpt/dino_model_latest.pth", catalog)
    assert res.skill is None
    assert {p.name for p in res.parameters} >= {"dataset", "checkpoint"}


def test_negatives_lower_the_score(catalog) -> None:
    plain = r("train NVDINOv2", catalog)
    neg = r("train NVDINOv2 for object detection", catalog)
    assert neg.skill == "tao-train-nvdinov2"
    assert neg.scores["tao-train-nvdinov2"] < plain.scores["tao-train-nvdinov2"]
    assert any(m.kind == "negative" for m in neg.matches)


def test_negated_mention_does_not_count(catalog) -> None:
    res = r("I do not want MAE, train DINOv2", catalog)
    assert res.skill == "tao-train-nvdinov2"
    assert any(m.negated and m.owner == "tao-train-mask-auto-encoder" for m in res.matches)


def test_deterministic(catalog) -> None:
    text = "Train DINO on s3://b/coco/ for 5 epochs, batch size 2, no HPO"
    a, b = r(text, catalog), r(text, catalog)
    assert a.model_dump() == b.model_dump()
    json.loads(a.model_dump_json())


# --- actions -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,skill,action",
    [
        ("train DINO", "tao-train-dino", "train"),
        ("DINO on my data", "tao-train-dino", "train"),
        ("evaluate the DINO model", "tao-train-dino", "evaluate"),
        ("run DINO inference on my images", "tao-train-dino", "inference"),
        ("export DINO to ONNX", "tao-train-dino", "export"),
        ("distill DINO from a FAN teacher", "tao-train-dino", "distill"),
        ("distillation training for DINO", "tao-train-dino", "distill"),
        ("quantize Grounding DINO", "tao-train-grounding-dino", "quantize"),
        ("build a TensorRT engine for DINO", "tao-train-dino", "deploy_gen_trt_engine"),
        ("evaluate the DINO TensorRT engine", "tao-train-dino", "deploy_evaluate"),
        ("run TensorRT inference with Grounding DINO", "tao-train-grounding-dino", "deploy_inference"),
        ("NVDINOv2 embeddings for my catalog", "tao-train-nvdinov2", "inference"),
        ("train DINO then export it", "tao-train-dino", "train"),
        ("export the DINO model I trained", "tao-train-dino", "export"),
        ("evaluate MAE", "tao-train-mask-auto-encoder", "evaluate"),
    ],
)
def test_actions(catalog, text: str, skill: str, action: str) -> None:
    res = r(text, catalog)
    assert (res.skill, res.action) == (skill, action), res.reason


def test_actions_mentioned_keep_text_order(catalog) -> None:
    res = r("train DINO, evaluate it, then export to ONNX", catalog)
    assert res.action == "train"
    assert res.actions_mentioned == ["train", "evaluate", "export"]


def test_unsupported_action(catalog) -> None:
    res = r("evaluate NVDINOv2", catalog)
    assert res.skill == "tao-train-nvdinov2" and res.action is None
    assert res.unsupported_action == "evaluate"
    assert "inference" in res.reason


def test_explicit_action_wins(catalog) -> None:
    res = r("export DINO to ONNX", catalog, action="evaluate")
    assert (res.action, res.action_source) == ("evaluate", "explicit")
    assert r("DINO", catalog, action="gen_trt_engine").action == "deploy_gen_trt_engine"


def test_explicit_action_invalid(catalog) -> None:
    with pytest.raises(SpecError) as err:
        r("train NVDINOv2", catalog, action="evaluate")
    e = err.value
    assert e.field == "action"
    assert e.details["allowed"] == ["train", "inference", "export", "deploy_gen_trt_engine"]
    assert "train, inference, export, deploy_gen_trt_engine" in e.fix


# --- AutoML policy through routing ----------------------------------------------------------------
def test_default_policy_on(catalog) -> None:
    res = r("train DINO on COCO", catalog)
    pol = res.automl_policy
    assert pol and (pol.policy, pol.source, pol.route_via) == ("on", "default", "tao-run-automl")


def test_automl_with_model(catalog) -> None:
    res = r("run HPO for DINO", catalog)
    assert (res.skill, res.action) == ("tao-train-dino", "train")
    assert res.automl_policy.policy == "on" and res.automl_policy.source == "request text"
    assert "tao-run-automl" in [a.skill for a in res.alternatives]


def test_automl_without_model(catalog) -> None:
    res = r("run a hyperparameter search for me", catalog)
    assert res.skill == "tao-run-automl" and res.network_arch is None
    assert "which model" in res.reason
    assert {a.skill for a in res.alternatives} == {i.name for i in INFOS}


@pytest.mark.parametrize(
    "text",
    [
        "train DINO, no HPO",
        "train DINO, plain training",
        "train DINO without AutoML",
        "train DINO, disable AutoML",
        "turn off AutoML and train DINO",
        "train DINO as a one-shot run",
    ],
)
def test_policy_off_phrases_through_route(catalog, text: str) -> None:
    res = r(text, catalog)
    assert res.skill == "tao-train-dino" and res.action == "train", res.reason
    assert res.automl_policy.policy == "off"
    assert "tao-run-automl" not in [a.skill for a in res.alternatives]


def test_explicit_policy(catalog) -> None:
    assert r("train DINO with HPO", catalog, automl_policy="off").automl_policy.policy == "off"
    assert r("train DINO, no HPO", catalog, automl_policy="auto").automl_policy.source == "explicit"
    with pytest.raises(SpecError) as err:
        r("train DINO", catalog, automl_policy="sometimes")
    assert err.value.field == "automl_policy"


def test_non_train_policy(catalog) -> None:
    pol = r("export DINO with AutoML", catalog).automl_policy
    # an AutoML word adds a train mention, but export comes first in the text
    assert pol is not None
    res = r("evaluate DINO", catalog)
    assert res.automl_policy.applies is False and res.automl_policy.policy == "off"


def test_missing_schema_through_route(catalog) -> None:
    (catalog.skills["tao-train-dino"].dir / "schemas/train.schema.json").unlink()
    pol = r("train DINO", catalog).automl_policy
    assert pol.policy == "off" and not pol.automl_runnable
    assert "not runnable for this model until schemas are generated" in pol.reason


# --- parameters --------------------------------------------------------------------------------
def test_parameters_with_shorthand_keys(catalog) -> None:
    text = (
        "Train DINO on s3://acme/coco/images.tar.gz with val data in /data/coco/val/ for 12 epochs, "
        "batch size 4, on 8 GPUs, lr 2e-4, 5 classes, resnet_50, pretrained weights /models/dino.pth"
    )
    res = r(text, catalog)
    p = {x.name: x for x in res.parameters}
    assert p["num_epochs"].value == 12 and p["num_epochs"].keys == ["train.num_epochs"]
    assert p["batch_size"].value == 4 and p["batch_size"].keys == ["dataset.batch_size"]
    assert p["num_gpus"].value == 8 and p["num_gpus"].keys == ["train.num_gpus"]
    assert p["learning_rate"].value == pytest.approx(2e-4) and p["learning_rate"].keys == ["train.optim.lr"]
    assert p["num_classes"].value == 5 and p["num_classes"].keys == ["dataset.num_classes"]
    assert p["backbone"].value == "resnet_50" and p["backbone"].keys == ["model.backbone"]
    datasets = [x for x in res.parameters if x.name == "dataset"]
    assert [(d.value, d.role) for d in datasets] == [
        ("s3://acme/coco/images.tar.gz", "train_datasets"),
        ("/data/coco/val/", "eval_dataset"),
    ]
    assert p["checkpoint"].value == "/models/dino.pth" and p["checkpoint"].role == "pretrained_model"
    assert p["checkpoint"].keys == ["train.pretrained_model_path"]
    for x in res.parameters:
        assert text[x.span[0] : x.span[1]] == x.text


def test_vit_shorthand_maps_to_teacher_and_student(catalog) -> None:
    res = r("pretrain NVDINOv2 with vit_s at image size 224", catalog)
    bb = res.param("backbone")
    assert bb.value == "vit_s" and bb.keys == ["model.backbone.teacher_type", "model.backbone.student_type"]
    assert res.param("image_size").value == 224 and res.param("image_size").keys == ["model.backbone.img_size"]


def test_mae_stage(catalog) -> None:
    assert r("fine-tune MAE on my labeled set", catalog).param("stage").value == "finetune"
    assert r("pretrain MAE", catalog).param("stage").keys == ["train.stage"]


def test_key_value_pairs_and_role_by_action(catalog) -> None:
    res = r("evaluate DINO on /data/test_set/ with model.num_queries=300 num_epochs=3", catalog)
    p = {x.name: x for x in res.parameters}
    assert p["model.num_queries"].value == 300 and p["model.num_queries"].keys == ["model.num_queries"]
    assert p["num_epochs"].value == 3 and p["num_epochs"].keys == ["train.num_epochs"]
    assert p["dataset"].role == "eval_dataset"


@pytest.mark.parametrize(
    "text,name,value",
    [
        ("train for 3 epochs", "num_epochs", 3),
        ("epochs: 40", "num_epochs", 40),
        ("bs=16", "batch_size", 16),
        ("on a single GPU", "num_gpus", 1),
        ("on 4xA100", "num_gpus", 4),
        ("learning rate of 0.0001", "learning_rate", 0.0001),
        ("at 640x640", "image_size", 640),
        ("at 960x544", "image_size", [960, 544]),
        ("img_size=518", "image_size", 518),
        ("use vit_l", "backbone", "vit_l"),
    ],
)
def test_extract_parameters_table(text: str, name: str, value) -> None:
    params = extract_parameters(text)
    assert any(p.name == name and p.value == value for p in params), params


def test_extract_paths() -> None:
    text = "data in s3://b/x/images.tar.gz, ./local/dir/, ~/coco/ and annotations.json; checkpoint model_epoch_009.pth. and/or train/val"
    values = [v for _, _, v in extract_paths(text)]
    assert values == ["s3://b/x/images.tar.gz", "./local/dir/", "~/coco/", "annotations.json", "model_epoch_009.pth"]


def test_near_miss_table_is_well_formed() -> None:
    table = load_near_misses()
    names = [e["name"] for e in table]
    assert len(names) == len(set(names))
    for required in (
        "dinov3",
        "rtdetr",
        "deformable_detr",
        "mask_grounding_dino",
        "segformer",
        "classification_pyt",
        "ocdnet",
        "pointpillars",
        "yolo",
        "stable_diffusion",
        "llm",
        "whisper",
        "bert",
    ):
        assert required in names
