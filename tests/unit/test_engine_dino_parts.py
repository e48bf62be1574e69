"""DINO engine building blocks against their definitions (no training): TAO defaults, spec checks,
matcher, focal loss, contrastive denoising, query selection, look-forward-twice, backbone mapping."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch

from taoskills.engine.dino import criterion as K
from taoskills.engine.dino import data as D
from taoskills.engine.dino import dn as DN
from taoskills.engine.dino import spec as S
from taoskills.engine.dino import transformer as T
from taoskills.errors import NotSupported, SpecError

pytestmark = pytest.mark.torch  # needs the engine extra (torch, transformers, Lightning)

TINY_BACKBONE = {"depths": [1, 1, 1, 1], "hidden_sizes": [16, 32, 64, 128], "embedding_size": 16, "layer_type": "basic"}


@pytest.fixture()
def tiny_backbone(monkeypatch):
    monkeypatch.setitem(S.BACKBONES, "resnet_tiny", TINY_BACKBONE)
    return "resnet_tiny"


def _cfg(**over):
    cfg = copy.deepcopy(S.DEFAULTS)
    src = {"image_dir": "/data/images", "json_file": "/data/annotations.json"}
    cfg["dataset"]["train_data_sources"] = [src]
    cfg["dataset"]["val_data_sources"] = [src]
    for key, value in over.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def _tiny(**over):
    base = {
        "model.backbone": "resnet_tiny",
        "model.hidden_dim": 64,
        "model.nheads": 4,
        "model.dim_feedforward": 64,
        "model.enc_layers": 1,
        "model.dec_layers": 3,
        "model.num_queries": 10,
        "model.num_select": 10,
        "model.dn_number": 6,
        "model.return_interm_indices": [2, 3, 4],
        "model.num_feature_levels": 3,
        "dataset.num_classes": 4,
        "train.activation_checkpoint": False,
    }
    base.update(over)
    return _cfg(**base)


@pytest.mark.taocore
def test_defaults_match_tao_core():
    omegaconf = pytest.importorskip("omegaconf")
    from tests.taocore_helpers import experiment_config_class

    tao = omegaconf.OmegaConf.to_container(omegaconf.OmegaConf.structured(experiment_config_class("dino")))
    assert tao == S.DEFAULTS


def test_check_accepts_defaults_and_names_bad_keys():
    S.check(_cfg(), "train")
    with pytest.raises(SpecError) as err:
        S.check(
            _cfg(
                **{
                    "model.num_select": 300 * 91 + 1,
                    "model.return_interm_indices": [1, 2, 3],
                    "dataset.augmentation.train_random_crop_min": 700,
                    "train.validation_interval": 20,
                }
            ),
            "train",
        )
    fields = {i.field for i in err.value.issues}
    assert {
        "model.num_select",
        "model.return_interm_indices",
        "dataset.augmentation.train_random_crop_max",
        "train.validation_interval",
    } <= fields
    with pytest.raises(SpecError) as err:
        S.check(_cfg(**{"dataset.val_data_sources": None}), "train")
    assert err.value.issues[0].field == "dataset.val_data_sources" and "reuse the train" in err.value.issues[0].fix


@pytest.mark.parametrize(
    ("key", "value"),
    [("model.backbone", "swin_tiny_224_1k"), ("model.decoder_sa_type", "ca_label"), ("train.distributed_strategy", "fsdp")],
)
def test_unsupported_values_name_the_tao_engine(key, value):
    with pytest.raises(NotSupported) as err:
        S.check(_cfg(**{key: value}), "train")
    assert err.value.field == key
    if key == "model.backbone":
        assert "TAO engine" in err.value.fix


def test_evaluate_refuses_tensorrt_files():
    cfg = _cfg(
        **{"evaluate.checkpoint": "/r/train/model.engine", "dataset.test_data_sources": {"image_dir": "/i", "json_file": "/j"}}
    )
    with pytest.raises(SpecError) as err:
        S.check(cfg, "evaluate")
    assert err.value.issues[0].field == "evaluate.checkpoint" and "TensorRT" in err.value.issues[0].reason
    with pytest.raises(NotSupported):
        S.check(_cfg(**{"evaluate.trt_engine": "/x.engine", "evaluate.checkpoint": "/m.pth"}), "evaluate")


def test_focal_loss_matches_definition():
    x, alpha, gamma = 0.3, 0.25, 2.0
    p = 1 / (1 + math.exp(-x))
    pos = alpha * (1 - p) ** gamma * -math.log(p)
    neg = (1 - alpha) * p**gamma * -math.log(1 - p)
    logits = torch.tensor([[x, x]])
    targets = torch.tensor([[1.0, 0.0]])
    assert K.sigmoid_focal_loss(logits, targets, num_boxes=2.0, alpha=alpha, gamma=gamma).item() == pytest.approx(
        (pos + neg) / 2, rel=1e-5
    )


def test_match_cost_terms_and_matcher_against_brute_force():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        q, t, c = 5, 3, 4
        logits = torch.randn(q, c, generator=g)
        boxes = torch.rand(q, 2, generator=g) * 0.5 + 0.25
        boxes = torch.cat([boxes, torch.rand(q, 2, generator=g) * 0.3 + 0.05], 1)
        tl = torch.randint(0, c, (t,), generator=g)
        tb = torch.cat([torch.rand(t, 2, generator=g) * 0.5 + 0.25, torch.rand(t, 2, generator=g) * 0.3 + 0.05], 1)
        cost = K.match_cost(logits, boxes, tl, tb, cost_class=2.0, cost_bbox=5.0, cost_giou=2.0)
        # class term at one entry from the definition
        p = torch.sigmoid(logits[0, tl[0]]).item()
        cls = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-8) - 0.75 * p**2 * -math.log(1 - p + 1e-8)
        l1 = (boxes[0] - tb[0]).abs().sum().item()
        from transformers.loss.loss_for_object_detection import generalized_box_iou

        giou = generalized_box_iou(DN.cxcywh_to_xyxy(boxes[:1]), DN.cxcywh_to_xyxy(tb[:1]))[0, 0].item()
        assert cost[0, 0].item() == pytest.approx(2 * cls + 5 * l1 - 2 * giou, rel=1e-4, abs=1e-5)
        best = min(sum(cost[qi, ti].item() for ti, qi in enumerate(perm)) for perm in itertools.permutations(range(q), t))
        ((qi, ti),) = K.HungarianMatcher(2.0, 5.0, 2.0)(logits[None], boxes[None], [{"labels": tl, "boxes": tb}])
        assert sorted(ti.tolist()) == list(range(t))
        assert sum(cost[a, b].item() for a, b in zip(qi.tolist(), ti.tolist())) == pytest.approx(best, rel=1e-5)


def test_dn_queries_shapes_and_attention_mask():
    torch.manual_seed(0)
    enc = torch.nn.Embedding(5, 8)
    targets = [
        {"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.2, 0.1]])},
        {"labels": torch.tensor([3]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])},
    ]
    content, ref, mask, meta = DN.prepare_for_cdn(
        targets, dn_number=6, label_noise_ratio=0.0, box_noise_scale=0.0, num_queries=4, num_classes=4, label_enc=enc
    )
    assert (meta.num_groups, meta.single_pad, meta.pad_size) == (3, 2, 12)
    assert content.shape == (2, 12, 8) and ref.shape == (2, 12, 4) and mask.shape == (16, 16)
    # no noise: positive and negative copies carry the ground truth exactly
    for g in range(3):
        for part in (0, 1):
            s = 2 * g * 2 + part * 2
            assert torch.allclose(ref[0, s : s + 2].sigmoid(), targets[0]["boxes"], atol=1e-4)
            assert torch.allclose(content[0, s : s + 2], enc(targets[0]["labels"]))
            assert torch.allclose(content[1, s], enc(targets[1]["labels"])[0]) and content[1, s + 1].abs().sum() == 0
    # matching queries never see denoising queries; they see each other
    assert mask[12:, :12].all() and not mask[12:, 12:].any()
    for g in range(3):
        own = slice(4 * g, 4 * g + 4)
        assert not mask[own, own].any() and not mask[own, 12:].any()
        others = [i for i in range(12) if not 4 * g <= i < 4 * g + 4]
        assert mask[own][:, others].all()
    idx = DN.dn_indices(targets, meta)
    assert idx[0][0].tolist() == [0, 1, 4, 5, 8, 9] and idx[0][1].tolist() == [0, 1] * 3
    assert (
        DN.prepare_for_cdn(
            [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}],
            dn_number=6,
            label_noise_ratio=0.5,
            box_noise_scale=1.0,
            num_queries=4,
            num_classes=4,
            label_enc=enc,
        )[3]
        is None
    )


def test_dn_box_noise_scales_and_label_noise():
    torch.manual_seed(0)
    n = 4000
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.1]]).repeat(n, 1)
    negative = torch.arange(n) % 2 == 1
    noisy = DN.noise_boxes(boxes, negative, 0.4)
    shift = (DN.cxcywh_to_xyxy(noisy) - DN.cxcywh_to_xyxy(boxes)).abs() / (0.4 * torch.tensor([0.1, 0.05, 0.1, 0.05]))
    assert shift[~negative].max() < 1.0 + 1e-4 and shift[negative].min() > 1.0 - 1e-4 and shift[negative].max() < 2.0 + 1e-4
    enc = torch.nn.Embedding(11, 4)
    labels = torch.zeros(n // 4, dtype=torch.long)
    t = [{"labels": labels, "boxes": boxes[: n // 4]}]
    content, *_ = DN.prepare_for_cdn(
        t, dn_number=n // 4, label_noise_ratio=0.5, box_noise_scale=0.0, num_queries=1, num_classes=10, label_enc=enc
    )
    flipped = (content[0] - enc.weight[0]).abs().sum(-1) > 0
    # a quarter of labels is redrawn (ratio/2) and 9 in 10 redraws land on another class
    assert flipped.float().mean().item() == pytest.approx(0.25 * 0.9, abs=0.03)


def test_query_selection_takes_top_scoring_tokens():
    cls = torch.tensor([[[0.1, 0.0], [2.0, -1.0], [0.0, 3.0], [-5.0, -5.0]]])
    boxes = torch.arange(16, dtype=torch.float32).view(1, 4, 4)
    mem = torch.arange(12, dtype=torch.float32).view(1, 4, 3)
    top, anchors, feats = T.select_queries(cls, boxes, mem, 2)
    assert top.tolist() == [[2, 1]] and torch.equal(anchors[0], boxes[0, [2, 1]]) and torch.equal(feats[0], mem[0, [2, 1]])
    pad = torch.zeros(1, 4 * 4 + 2 * 2, dtype=torch.bool)
    pad[0, [3, 7, 11, 15]] = True  # last column of level 0 is padding: 3 valid columns
    out, props = T.encoder_proposals(torch.ones(1, 20, 3), pad, [(4, 4), (2, 2)])
    assert torch.isinf(props[0, 3]).all() and out[0, 3].abs().sum() == 0
    c = props[0, 5].sigmoid()  # level 0, row 1, col 1: centre in the valid frame
    assert torch.allclose(c, torch.tensor([1.5 / 3, 1.5 / 4, 0.05, 0.05]), atol=1e-5)
    assert torch.allclose(props[0, 16].sigmoid()[2:], torch.tensor([0.1, 0.1]), atol=1e-5)


def test_look_forward_twice_gradients(tiny_backbone):
    torch.manual_seed(0)
    config = T.msda_config(32, 4, 2, 2, 2, 32, 0.0)
    calls = []

    class Rec(T.MLP):
        def forward(self, x):
            y = super().forward(x)
            y.retain_grad()
            calls.append(y)
            return y

    bbox = Rec(32, 32, 4, 3)
    dec = T.Decoder(config, 32, 4, 32, 0.0, 3, bbox)
    for m in dec.modules():
        if hasattr(m, "sampling_offsets"):
            T.reset_msda(m)
    shapes = [(4, 4), (2, 2)]
    memory = torch.randn(1, 20, 32)
    args = (
        memory,
        torch.ones(1, 20, dtype=torch.bool),
        torch.tensor(shapes),
        shapes,
        torch.tensor([0, 16]),
        torch.ones(1, 2, 2),
        None,
    )
    tgt = torch.randn(1, 5, 32)
    boxes_in = torch.randn(1, 5, 4)
    hs, boxes = dec(tgt, boxes_in, *args)
    assert len(hs) == 3 and boxes[0].shape == (1, 5, 4)
    # call order per layer: (box delta from normed output, reference delta from raw output)
    boxes[1].sum().backward(retain_graph=True)
    assert calls[1].grad is not None and calls[1].grad.abs().sum() > 0  # layer 0's refinement is trained by layer 1's loss
    for c in calls:
        c.grad = None
    boxes[2].sum().backward()
    assert calls[1].grad is None or calls[1].grad.abs().sum() == 0  # but not by layer 2's (references are detached)
    # box_1 = sigmoid(delta_1(norm h_1) + logit(b_0)) with b_0 = layer 0's refined reference
    b0 = (calls[1] + T.inverse_sigmoid(tgt.new_zeros(1, 5, 4) + boxes_in.sigmoid())).sigmoid()
    assert torch.allclose(boxes[1], (calls[2] + T.inverse_sigmoid(b0)).sigmoid(), atol=1e-6)


def _torchvision_names(hf_sd):
    """Rename transformers ResNet keys to torchvision's, written out independently of the engine's mapper."""
    out = {}
    for k, v in hf_sd.items():
        k2 = k.replace("embedder.embedder.convolution", "conv1").replace("embedder.embedder.normalization", "bn1")
        parts = k2.split(".")
        if parts[0] == "encoder":
            s, b = int(parts[2]) + 1, parts[4]
            if parts[5] == "shortcut":
                k2 = f"layer{s}.{b}.downsample.{0 if parts[6] == 'convolution' else 1}.{parts[7]}"
            else:
                i = int(parts[6]) + 1
                k2 = f"layer{s}.{b}.{'conv' if parts[7] == 'convolution' else 'bn'}{i}.{parts[8]}"
        out[k2] = v
    return out


def test_backbone_weight_mapping_from_torchvision_layout(tiny_backbone, tmp_path):
    from taoskills.engine.dino.backbone import Backbone, load_pretrained_backbone

    src = Backbone("resnet_tiny", [1, 2, 3, 4])
    for p in src.parameters():
        torch.nn.init.normal_(p)
    tv = _torchvision_names(src.body.state_dict())
    assert "layer2.0.downsample.0.weight" in tv and "layer1.0.conv2.weight" in tv
    tv["fc.weight"] = torch.zeros(10, 128)
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": {f"model.{k}": v for k, v in tv.items()}}, path)
    dst = Backbone("resnet_tiny", [2, 3, 4])
    info = load_pretrained_backbone(dst, str(path))
    assert info["loaded"] == len(src.body.state_dict()) and not info["missing"]
    for k, v in src.body.state_dict().items():
        assert torch.equal(dst.body.state_dict()[k], v)
    dst.train()
    assert all(not m.training for m in dst.modules() if isinstance(m, torch.nn.BatchNorm2d))
    wrong = {k: torch.zeros(3, *v.shape[1:]) if v.ndim > 1 else v for k, v in tv.items()}
    torch.save(wrong, path)
    with pytest.raises(SpecError) as err:
        load_pretrained_backbone(Backbone("resnet_tiny", [2, 3, 4]), str(path))
    assert err.value.field == "model.pretrained_backbone_path"


def test_model_forward_train_and_eval_outputs(tiny_backbone):
    from taoskills.engine.dino.criterion import SetCriterion
    from taoskills.engine.dino.model import DINO, postprocess

    torch.manual_seed(0)
    cfg = _tiny()
    net = DINO(cfg).train()
    names = [n for n, _ in net.named_parameters()]
    assert any(n.startswith("backbone.0.") for n in names) and any("sampling_offsets" in n for n in names)
    x, mask = torch.randn(2, 3, 64, 64), torch.zeros(2, 64, 64, dtype=torch.bool)
    mask[1, :, 48:] = True
    tg = [
        {"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.2]])},
        {"labels": torch.tensor([3]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])},
    ]
    out = net(x, mask, tg)
    assert out["pred_logits"].shape == (2, 10, 4) and out["dn_meta"].pad_size == 2 * 3 * 2
    assert (
        len(out["aux_outputs"]) == 2 and len(out["dn_outputs"]) == 3 and out["interm_outputs"]["pred_boxes"].shape == (2, 10, 4)
    )
    total, named = SetCriterion(cfg["model"], 4)(out, tg, 3.0)
    assert {"loss_ce", "loss_giou_1", "loss_bbox_interm", "loss_ce_dn", "loss_giou_dn_0"} <= set(named)
    total.backward()
    net.eval()
    with torch.no_grad():
        ev = net(x, mask)
    assert set(ev) == {"pred_logits", "pred_boxes"}
    res = postprocess(ev["pred_logits"], ev["pred_boxes"], torch.tensor([[64, 64], [64, 48]]), 7)
    prob = ev["pred_logits"][0].sigmoid().flatten()
    assert torch.allclose(res[0]["scores"], prob.topk(7).values)
    q = res[1]["labels"] * 0 + torch.topk(ev["pred_logits"][1].sigmoid().flatten(), 7).indices // 4
    expect = DN.cxcywh_to_xyxy(ev["pred_boxes"][1, q]) * torch.tensor([48.0, 64.0, 48.0, 64.0])
    assert torch.allclose(res[1]["boxes"], expect, atol=1e-4)


def test_param_groups_follow_tao_names(tiny_backbone):
    from taoskills.engine.dino.model import DINO
    from taoskills.engine.dino.train import param_groups

    cfg = _tiny()
    groups = {g["name"]: g for g in param_groups(DINO(cfg), cfg["model"], cfg["train"]["optim"])}
    assert groups["backbone"]["lr"] == 2e-5 and groups["main"]["lr"] == 2e-4
    assert groups["proj"]["lr"] == pytest.approx(2e-5)


def test_collate_masks_and_flip(tmp_path):
    from PIL import Image

    a, b = torch.ones(3, 10, 12), torch.ones(3, 8, 16)
    batch, mask, _ = D.Collate(divisor=4)([(a, {}), (b, {})])
    assert (
        batch.shape == (2, 3, 12, 16)
        and mask[0, :10, :12].logical_not().all()
        and mask[0, 10:].all()
        and mask[1, :, :].sum() == 4 * 16
    )
    img = Image.new("RGB", (100, 50))
    boxes = np.array([[10, 5, 30, 25]], dtype=np.float32)
    im2, b2, lab = D.random_crop(img, boxes, np.array([1]), 100, 100, __import__("random").Random(0))
    assert im2.size == (100, 50) and np.allclose(b2, boxes) and lab.tolist() == [1]
    _, b3 = D.resize(img, boxes, 25, None)
    assert np.allclose(b3, boxes / 2)


def test_quantize_checks_name_backend_mode_and_data():
    from taoskills.engine.dino.quantize import check_quantize

    with pytest.raises(NotSupported) as err:
        check_quantize(_cfg())  # TAO's default backend is torchao (PyTorch)
    assert err.value.field == "quantize.backend" and "TAO engine" in err.value.fix
    with pytest.raises(NotSupported) as err:
        check_quantize(_cfg(**{"quantize.backend": "modelopt.onnx"}))  # default mode weight_only_ptq
    assert err.value.field == "quantize.mode"
    with pytest.raises(SpecError) as err:
        check_quantize(_cfg(**{"quantize.backend": "modelopt.onnx", "quantize.mode": "static_ptq"}))
    assert {i.field for i in err.value.issues} == {"quantize.model_path", "dataset.quant_calibration_data_sources"}


def test_registry_and_fp16_host_rule():
    from taoskills.engine import registry
    from taoskills.engine.registry import HostInfo

    desc = registry.get("dino")
    assert desc.display_name == "DINO" and desc.supports("evaluate") and not desc.supports("distill")
    assert desc.spec_defaults()[0] is S.DEFAULTS
    issues = desc.host_issues("train", {"train": {"precision": "fp16"}}, HostInfo(cuda=False))
    assert [i["field"] for i in issues] == ["train.precision"]
    assert desc.host_issues("train", {"train": {"precision": "fp16"}}, HostInfo(cuda=True, gpus=1)) == []


def test_batch_without_boxes_trains(tiny_backbone):
    from taoskills.engine.dino.criterion import SetCriterion
    from taoskills.engine.dino.model import DINO

    cfg = _tiny()
    net = DINO(cfg).train()
    empty = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)} for _ in range(2)]
    out = net(torch.randn(2, 3, 64, 64), torch.zeros(2, 64, 64, dtype=torch.bool), empty)
    assert "dn_meta" not in out
    total, named = SetCriterion(cfg["model"], 4)(out, empty, 1.0)
    assert torch.isfinite(total) and named["loss_bbox"].item() == 0 and named["loss_ce"].item() > 0
    total.backward()
