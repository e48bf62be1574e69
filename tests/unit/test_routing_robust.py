"""Routing you can trust: typos, Chinese, near misses, "use my trained X", long input.

Runs against the real bank (skills/ and bank/*.yaml), since the words under test are
routing data; the rules themselves (word_typo) are checked without a catalog.
"""

from __future__ import annotations

import pytest

from taoskills.bank.catalog import Catalog
from taoskills.bank.routing import MAX_SCORED_CHARS, extract_parameters, extract_paths, load_lexicon, route
from taoskills.bank.routing.matching import word_typo

GDINO, DINO, MAE, NV = "tao-train-grounding-dino", "tao-train-dino", "tao-train-mask-auto-encoder", "tao-train-nvdinov2"


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return Catalog.load(strict=False)


@pytest.mark.parametrize(
    ("query", "key", "edits"),
    [
        ("evalute", "evaluate", 1),
        ("nvdionv2", "nvdinov2", 1),
        ("trian", "train", 1),
        ("dno", "dino", 1),
        ("diino", "dino", 1),  # a doubled letter
        ("infernce", "inference", 1),
        ("expert", "export", None),  # another word, not a typo
        ("dingo", "dino", None),
        ("deter", "detr", None),
        ("trained", "train", None),  # a suffixed form
        ("finetuned", "finetune", None),
        ("dinov3", "dinov2", None),  # digits must agree
        ("yolov5", "yolov8", None),
        ("mae", "sam", None),
    ],
)
def test_word_typo_rules(query: str, key: str, edits: int | None) -> None:
    assert word_typo(query, key) == edits


@pytest.mark.parametrize(
    ("text", "skill", "action"),
    [
        ("grounding dno", GDINO, "train"),
        ("Evalute the grouding dino checkpoint", GDINO, "evaluate"),
        ("use my trained DINO to count cars", DINO, "inference"),
        ("find objects described by text", GDINO, "inference"),
        ("detect the objects in a text prompt on /data/a/", GDINO, "inference"),
        ("exprot teh NVDINOv2 model", NV, "export"),
        ("评估MAE模型", MAE, "evaluate"),
        ("把MAE模型导出为ONNX", MAE, "export"),
        ("用训练好的MAE模型做推理", MAE, "inference"),
        ("为 DINO 生成 TensorRT 引擎", DINO, "deploy_gen_trt_engine"),
    ],
)
def test_issue_examples_route(cat, text: str, skill: str, action: str) -> None:
    r = route(text, cat)
    assert (r.skill, r.action) == (skill, action), r.reason


def test_fuzzy_evidence_is_marked(cat) -> None:
    r = route("Evalute the grouding dino checkpoint", cat)
    fuzzy = [m for m in r.matches if m.fuzzy]
    assert fuzzy and fuzzy[0].owner == GDINO and fuzzy[0].phrase.lower().startswith("grounding")
    assert "~" in r.reason


@pytest.mark.parametrize(
    "text",
    ["关闭AutoML,用MAE预训练", "关闭 AutoML 训练 MAE", "禁用AutoML直接训练Grounding DINO", "训练DINO,不要AutoML"],
)
def test_chinese_policy_off(cat, text: str) -> None:
    r = route(text, cat)
    assert r.skill is not None and r.action == "train"
    assert r.automl_policy is not None and r.automl_policy.policy == "off", r.automl_policy


def test_chinese_policy_on_without_a_model(cat) -> None:
    r = route("自动调参", cat)
    assert r.skill == "tao-run-automl"


@pytest.mark.parametrize(
    ("text", "near"),
    [
        ("classify images with a ResNet-50", "timm_classifier"),
        ("extract DINO ViT features", "dino_2021"),
        ("train DINOv3 on satellite tiles", "dinov3"),
        ("train RT-DETR on traffic cameras", "rtdetr"),
        ("segment the frame with SAM", "sam"),
        ("match photos to captions with CLIP", "clip"),
        ("train YOLOv8 on forklifts", "yolo"),
    ],
)
def test_near_misses_abstain_and_are_named(cat, text: str, near: str) -> None:
    r = route(text, cat)
    assert r.skill is None and r.near_miss is not None and r.near_miss.name == near, r.reason
    assert r.near_miss.display in (r.no_skill_reason or "")


def test_an_autoencoder_named_after_with_is_the_model_not_a_part(cat) -> None:
    r = route("run inference with the masked auto-encoder on /data/x/", cat)
    assert (r.skill, r.action) == (MAE, "inference"), r.reason
    # a real part still counts as a part: DINO with a DINOv2 backbone is DINO
    assert route("train DINO with a DINOv2 backbone", cat).skill == DINO


def test_cased_near_miss_names_are_case_sensitive(cat) -> None:
    assert route("meet Sam and clip the coupons", cat).near_miss is None
    assert route("fine-tune SAM", cat).near_miss is not None


def test_ordinary_words_are_not_typos(cat) -> None:
    for text in ("The dingo ate the baby", "deter the birds from the garden", "my expert team needs a report"):
        r = route(text, cat)
        assert r.skill is None and not any(m.fuzzy for m in r.matches), (text, r.matches)


def test_paths_stop_at_chinese_and_chinese_parameters(cat) -> None:
    assert [v for _, _, v in extract_paths("用MAE在/data/unlabeled上预训练")] == ["/data/unlabeled"]
    info = cat.get(MAE).info
    params = {p.name: p.value for p in extract_parameters("微调MAE模型,类别数为10,训练20轮,用4块GPU", info, "train")}
    assert params["num_classes"] == 10 and params["num_epochs"] == 20 and params["num_gpus"] == 4
    assert params["stage"] == "finetune"
    assert {p.name: p.value for p in extract_parameters("用预训练权重微调MAE", info, "train")}["stage"] == "finetune"


def test_lexicon_loads_and_has_chinese_words() -> None:
    lex = load_lexicon()
    assert "评估" in lex.action_words["evaluate"] and "关闭 AutoML" in lex.policy_off
    assert lex.fuzzy.edits_for(3) == 0 and lex.fuzzy.edits_for(13) >= 1


def _request(size: int) -> str:
    unit = "train DINO on /data/coco/ for 5 epochs, grouding dino 关闭AutoML 预训练, classify images with a ResNet-50. "
    return (unit * (size // len(unit) + 1))[:size]


def test_a_one_megabyte_request_routes_with_bounded_work(cat) -> None:
    big = route(_request(1_000_000), cat)
    assert big.truncated and big.work["chars_scored"] == MAX_SCORED_CHARS
    assert big.skill is not None or big.no_skill_reason
    mid = route(_request(100_000), cat)
    assert mid.work == big.work  # the same operation counts for 100 KB and 1 MB
    assert "first" in (big.reason or "")


def test_work_grows_linearly_below_the_cap(cat) -> None:
    small, double = route(_request(2000), cat).work, route(_request(4000), cat).work
    assert not route(_request(2000), cat).truncated
    for key in ("tokens", "fuzzy_queries", "candidates"):
        assert double[key] <= 2 * small[key] + 50, (key, small, double)


def test_request_policy_reads_chinese_words(cat) -> None:
    from taoskills.bank.routing import request_policy

    sk = cat.get(DINO)
    off = request_policy(sk.info, "train", text="直接训练DINO", skill_dir=sk.dir)
    assert off.policy == "off" and off.source == "request text"
    assert request_policy(sk.info, "train", text="train DINO", skill_dir=sk.dir).source == "default"
    assert request_policy(sk.info, "train", explicit="off", text="用AutoML训练", skill_dir=sk.dir).source == "explicit"
