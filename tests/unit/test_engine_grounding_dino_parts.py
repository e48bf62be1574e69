"""Grounding DINO engine building blocks: TAO defaults, spec checks, text encoder, masks, loss
weighting, post-processing, data checks for the skill's error patterns (no training)."""

from __future__ import annotations

import copy
import json
import random
import tarfile

import pytest
import torch

from taoskills.engine import registry
from taoskills.engine.grounding_dino import data as D
from taoskills.engine.grounding_dino import metrics
from taoskills.engine.grounding_dino import model as M
from taoskills.engine.grounding_dino import spec as S
from taoskills.engine.grounding_dino import synthetic as Y
from taoskills.engine.grounding_dino import text_encoder as T
from taoskills.errors import NotSupported, PreflightError, SpecError

pytestmark = pytest.mark.torch  # needs the engine extra (torch, transformers, Lightning)


@pytest.mark.taocore
def test_defaults_match_tao_core():
    omegaconf = pytest.importorskip("omegaconf")
    default_config = pytest.importorskip("nvidia_tao_core.config.grounding_dino.default_config")
    tao = omegaconf.OmegaConf.to_container(omegaconf.OmegaConf.structured(default_config.ExperimentConfig))
    assert tao == S.DEFAULTS


def test_registered_with_every_action():
    desc = registry.get("grounding_dino")
    assert desc is not None and desc.display_name == "Grounding DINO"
    for action in ("train", "evaluate", "inference", "export", "quantize"):
        assert registry.supports("grounding_dino", action)
    defaults, source = desc.spec_defaults()
    assert defaults["model"]["max_text_len"] == 256 and "grounding_dino" in source


def _cfg(**over):
    cfg = copy.deepcopy(S.DEFAULTS)
    cfg["dataset"]["train_data_sources"] = [
        {"image_dir": "/d", "json_file": "/d/a.jsonl", "label_map": "/d/l.json"},
        {"image_dir": "", "json_file": ""},
    ]
    cfg["dataset"]["val_data_sources"] = {"image_dir": "/v", "json_file": "/v/a.json"}
    for key, value in over.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def test_check_accepts_tao_defaults_and_skips_empty_sources():
    S.check(_cfg(), "train")
    assert len(S.sources(_cfg()["dataset"]["train_data_sources"])) == 1


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("model.backbone", "fan_tiny", "TAO container engine"),
        ("model.dn_number", 100, "denoising"),
        ("model.decoder_sa_type", "ca_label", "self-attention"),
        ("train.distributed_strategy", "fsdp", "DDP"),
    ],
)
def test_check_refuses_what_transformers_cannot_do(key, value, needle):
    with pytest.raises(NotSupported) as err:
        S.check(_cfg(**{key: value}), "train")
    assert err.value.field == key and needle in str(err.value) + (err.value.fix or "")


def test_check_names_bad_keys_with_fixes():
    with pytest.raises(SpecError) as err:
        S.check(_cfg(**{"model.num_select": 1000, "model.num_feature_levels": 2, "train.precision": "fp8"}), "train")
    fields = {i.field for i in err.value.issues}
    assert {"model.num_select", "model.num_feature_levels", "train.precision"} <= fields
    assert all(i.fix for i in err.value.issues)
    with pytest.raises(SpecError) as err:
        S.check(_cfg(**{"dataset.infer_data_sources": {"image_dir": ["/x"], "captions": [""]}}), "inference")
    assert "dataset.infer_data_sources.captions" in {i.field for i in err.value.issues}
    with pytest.raises(SpecError) as err:
        S.check(
            _cfg(
                **{
                    "evaluate.checkpoint": "/m/model.engine",
                    "dataset.test_data_sources": {"image_dir": "/v", "json_file": "/v/a.json"},
                }
            ),
            "evaluate",
        )
    assert err.value.field == "evaluate.checkpoint"


def test_backbone_folder_extension(tmp_path):
    M.write_backbone(tmp_path / "swin")
    S.check(_cfg(**{"model.backbone": str(tmp_path / "swin")}), "train")
    cfg = _cfg(**{"model.backbone": str(tmp_path / "swin"), "model.return_interm_indices": [2, 3, 4]})
    assert list(M.backbone_config(cfg).out_indices) == [2, 3, 4]
    assert M.backbone_config(_cfg()).embed_dim == 96  # swin_tiny_224_1k


def test_text_encoder_keeps_bert_ids_and_fails_offline_with_fix(tmp_path, monkeypatch):
    folder = T.write_text_encoder(tmp_path / "bert", Y.vocabulary_texts())
    tok = T.load_tokenizer(str(folder))
    ids = tok(D.caption_of(["red circle", "blue triangle"]))["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102 and ids.count(1012) == 2 and 100 not in ids
    assert not T.has_weights(str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    with pytest.raises(SpecError) as err:
        T.load_tokenizer("bert-base-uncased")
    assert "Text encoder loading error" in str(err.value) and "local folder" in err.value.fix


def test_phrase_masks_equal_transformers_helper():
    from transformers.models.grounding_dino import modeling_grounding_dino as G

    from taoskills.engine.grounding_dino.export import phrase_masks

    special = torch.tensor(G.SPECIAL_TOKENS)
    rng = random.Random(0)
    for _ in range(20):
        ids = torch.tensor([[rng.choice([101, 102, 1012, 1029, 1030, 1031, 1032, 0]) for _ in range(12)] for _ in range(3)])
        a = G.generate_masks_with_special_tokens_and_transfer_map(ids, special)
        b = phrase_masks(ids, special)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_weighted_loss_applies_tao_coefficients():
    cfg = _cfg(**{"model.cls_loss_coef": 3.0, "model.interm_loss_coef": 0.5})
    one = torch.tensor(1.0)
    d = {
        "loss_ce": one,
        "loss_bbox": one,
        "loss_giou": one,
        "loss_ce_0": one,
        "loss_ce_enc": one,
        "loss_bbox_enc": one,
        "cardinality_error": one,
    }
    assert float(M.weighted_loss(d, cfg)) == pytest.approx(3 + 5 + 2 + 3 + 1.5 + 2.5)
    cfg["model"]["no_interm_box_loss"] = True
    assert float(M.weighted_loss(d, cfg)) == pytest.approx(3 + 5 + 2 + 3 + 1.5)


def test_post_process_ranks_phrases_and_scales_boxes():
    ids = torch.tensor([[101, 1030, 1031, 1012, 1032, 1012, 102]])
    maps = M.phrase_maps(ids, 8)
    assert maps[0].shape == (2, 8) and torch.allclose(maps[0].sum(-1), torch.ones(2))
    logits = torch.full((1, 3, 8), -10.0)
    logits[0, 1, 4] = 5.0  # query 1 -> phrase 1
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.25, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]]])
    out = M.post_process(logits, boxes, maps, [(100, 200)], num_select=2)[0]
    assert out["labels"][0] == 1 and out["scores"][0] > 0.9
    assert out["boxes"][0].tolist() == pytest.approx([0.0, 0.0, 100.0, 100.0])


def test_coco_map_of_ground_truth_is_one(tmp_path):
    paths = Y.write_shapes(tmp_path, n=4, size=48)
    gt = json.loads(paths["coco"].read_text())
    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0} for a in gt["annotations"]
    ]
    assert metrics.coco_map(gt, dets) == {"mAP": pytest.approx(1.0), "mAP50": pytest.approx(1.0)}
    assert metrics.coco_map(gt, []) == {"mAP": 0.0, "mAP50": 0.0}


def _odvg_cfg(paths):
    cfg = _cfg()
    cfg["dataset"]["train_data_sources"] = [
        {"image_dir": str(paths["images"]), "json_file": str(paths["odvg"]), "label_map": str(paths["label_map"])}
    ]
    cfg["dataset"]["val_data_sources"] = {"image_dir": str(paths["images"]), "json_file": str(paths["coco"])}
    return cfg


def test_odvg_reader_and_caption_sampling(tmp_path):
    paths = Y.write_shapes(tmp_path, n=6, size=48, max_objects=3)
    cfg = _odvg_cfg(paths)
    records, vocab = D.read_odvg(cfg)
    assert len(records) == 6 and vocab == sorted(Y.CLASSES)
    cfg["dataset"]["max_labels"] = 2
    ds = D.TrainSet(records, cfg)
    labels = ds.labels_for(["red circle"], vocab, random.Random(0))
    assert len(labels) == 2 and "red circle" in labels
    cfg["dataset"]["augmentation"].update(
        scales=[48], train_random_resize=[48], train_random_crop_min=32, train_random_crop_max=48, random_resize_max_size=48
    )
    x, target, caption = D.TrainSet(records, cfg)[0]
    assert x.shape[0] == 3 and caption.endswith(" .")
    assert target["boxes"].shape[0] == target["class_labels"].shape[0]
    assert ((target["boxes"] >= 0) & (target["boxes"] <= 1)).all()


def test_seed_error_val_category_ids_not_from_zero(tmp_path):
    paths = Y.write_shapes(tmp_path, n=2, size=48)
    gt = json.loads(paths["coco"].read_text())
    for c in gt["categories"]:
        c["id"] += 1
    paths["coco"].write_text(json.dumps(gt))
    with pytest.raises(PreflightError) as err:
        D.read_coco({"image_dir": str(paths["images"]), "json_file": str(paths["coco"])}, "dataset.val_data_sources")
    assert "starting from 0" in str(err.value) and "from 0" in err.value.fix


def test_seed_error_archive_used_as_image_dir(tmp_path):
    paths = Y.write_shapes(tmp_path / "d", n=2, size=48)
    archive = tmp_path / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(paths["images"], arcname="images")
    cfg = _odvg_cfg(paths)
    cfg["dataset"]["train_data_sources"][0]["image_dir"] = str(archive)
    with pytest.raises(PreflightError) as err:
        D.read_odvg(cfg)
    assert "NotADirectoryError" in str(err.value) and "extract" in err.value.fix


def test_seed_errors_max_text_len_and_num_queries(tmp_path):
    from taoskills.engine.grounding_dino.train import preflight

    paths = Y.write_shapes(tmp_path, n=4, size=48, max_objects=3)
    tok = T.load_tokenizer(str(T.write_text_encoder(tmp_path / "bert", Y.vocabulary_texts())))
    cfg = _odvg_cfg(paths)
    records, vocab = D.read_odvg(cfg)
    cfg["model"]["max_text_len"] = 5
    with pytest.raises(SpecError) as err:
        preflight(cfg, records, vocab, tok, list(Y.CLASSES))
    assert err.value.field == "model.max_text_len" and "mat1 and mat2" in str(err.value) and "256" in err.value.fix
    with pytest.raises(SpecError):
        D.tokenize(tok, [D.caption_of(list(Y.CLASSES))], 5)
    cfg["model"]["max_text_len"] = 256
    cfg["model"]["num_queries"] = 1
    with pytest.raises(SpecError) as err:
        preflight(cfg, records, vocab, tok, list(Y.CLASSES))
    assert (
        err.value.field == "model.num_queries"
        and "out of bounds" in str(err.value)
        and "increase model.num_queries" in err.value.fix
    )


def test_quantize_refuses_what_onnxruntime_cannot_do():
    from taoskills.engine.grounding_dino.quantize import check_quantize

    cfg = _cfg(**{"quantize.model_path": "/m.onnx", "quantize.backend": "modelopt.onnx", "quantize.mode": "static_ptq"})
    check_quantize(cfg)
    for key, value in (("quantize.backend", "torchao"), ("quantize.mode", "weight_only_ptq"), ("quantize.algorithm", "awq_lite")):
        bad = copy.deepcopy(cfg)
        bad["quantize"][key.split(".")[1]] = value
        with pytest.raises(NotSupported) as err:
            check_quantize(bad)
        assert err.value.field == key and err.value.fix


def test_log_scale_and_class_embed_bias_start_the_class_head_unsaturated():
    torch = pytest.importorskip("torch")
    from taoskills.engine.grounding_dino import contrastive as C

    assert [C.log_scale_value(v) for v in (None, "none", "auto", "2.5")] == [None, None, "auto", 2.5]
    with pytest.raises(SpecError) as err:
        S.check(_cfg(**{"model.log_scale": "big"}), "train")
    assert "model.log_scale" in {i.field for i in err.value.issues}
    torch.manual_seed(0)
    q, t = (
        torch.nn.functional.layer_norm(torch.randn(2, 30, 64), (64,)),
        torch.nn.functional.layer_norm(torch.randn(2, 5, 64), (64,)),
    )
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    raw = C.ScaledContrastiveEmbedding(8, 64, None, False)(q, t, mask)
    head = C.ScaledContrastiveEmbedding(8, 64, "auto", True)
    out = head(q, t, mask)
    assert out.shape == (2, 30, 8) and torch.isinf(out[1, :, 3:]).all() and torch.isinf(out[:, :, 5:]).all()
    assert raw[0, :, :5].std() > 6 and out[0, :, :5].std() < 1.5  # raw dot products of d=64 saturate the sigmoid
    assert out[0, :, :5].sigmoid().mean() < 0.05  # prior probability 0.01 via the bias
    assert {n for n, _ in head.named_parameters()} == {"bias"}
    learn = C.ScaledContrastiveEmbedding(8, 64, 1.0, False)
    assert {n for n, _ in learn.named_parameters()} == {"log_scale"}


def test_eval_class_ids_must_name_validation_categories_from_zero():
    gt = {"categories": [{"id": 0, "name": "red circle"}, {"id": 1, "name": "blue square"}]}
    metrics.check_eval_class_ids(None, gt, "dataset.val_data_sources")
    metrics.check_eval_class_ids([0, 1], gt, "dataset.val_data_sources")
    with pytest.raises(SpecError) as err:
        metrics.check_eval_class_ids([1, 2], gt, "dataset.val_data_sources")
    assert err.value.field == "dataset.eval_class_ids" and "[2]" in str(err.value) and "0-based" in err.value.fix


def test_backbone_pretraining_is_seeded(tmp_path):
    import torch

    from taoskills.engine.grounding_dino import pretrain as P

    backbone = M.write_backbone(tmp_path / "resnet", kind="resnet")
    stats = P.pretrain_backbone(backbone, tmp_path / "bb.pth", steps=3, batch=4, seed=0)
    assert set(stats) == {"shape_acc", "colour_acc", "loss"} and stats["loss"] > 0
    sd = torch.load(tmp_path / "bb.pth")
    again = P.pretrain_backbone(backbone, tmp_path / "bb2.pth", steps=3, batch=4, seed=0)
    assert again == stats  # seeded: the same scenes and weights
    assert all(torch.equal(v, torch.load(tmp_path / "bb2.pth")[k]) for k, v in sd.items())
