"""MAE engine building blocks: TAO defaults, spec checks, data folders, masking, mixup, checkpoint
loading across pretrain -> finetune, and the seed's error patterns (no training loop)."""

from __future__ import annotations

import copy

import pytest
import torch

from taoskills.engine import registry
from taoskills.engine.mae import augment as A
from taoskills.engine.mae import data as D
from taoskills.engine.mae import model as M
from taoskills.engine.mae import spec as S
from taoskills.errors import NotSupported, PreflightError, SpecError

pytestmark = pytest.mark.torch  # needs the engine extra (torch, transformers, Lightning)

#: Tiny test architectures (the TAO arch table is data; tests add entries of the same families).
TINY = {
    "vit_tiny_patch8": {"family": "vit", "hidden": 32, "depth": 2, "heads": 2, "patch": 8},
    "hiera_tiny_test": {"family": "hiera", "embed": 16, "depths": [1, 1, 2, 1], "heads": [1, 1, 2, 2]},
}


@pytest.fixture(autouse=True)
def tiny_archs(monkeypatch):
    for name, info in TINY.items():
        monkeypatch.setitem(S.ARCHS, name, info)


def _cfg(arch="vit_tiny_patch8", size=64, **over):
    cfg = copy.deepcopy(S.DEFAULTS)
    cfg["model"]["arch"] = arch
    cfg["model"]["decoder_embed_dim"] = 32
    cfg["dataset"]["augmentation"]["input_size"] = size
    cfg["dataset"]["train_data_sources"] = "/data/train"
    for key, value in over.items():
        node = cfg
        parts = key.split("__")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return cfg


@pytest.mark.taocore
def test_defaults_match_tao_core():
    from taocore_helpers import experiment_config_class

    omegaconf = pytest.importorskip("omegaconf")
    tao = omegaconf.OmegaConf.to_container(omegaconf.OmegaConf.structured(experiment_config_class("mae")))
    assert tao == S.DEFAULTS


@pytest.mark.taocore
def test_arch_table_covers_tao_enum():
    import dataclasses

    from taocore_helpers import experiment_config_class

    field = next(f for f in dataclasses.fields(experiment_config_class("mae")().model) if f.name == "arch")
    enum = field.metadata["valid_options"].split(",")
    assert set(enum) == set(S.ARCHS) - set(TINY)


def test_registered_with_all_actions():
    desc = registry.get("mae")
    assert desc is not None and desc.display_name == "MAE"
    assert desc.actions == ("train", "evaluate", "inference", "export")
    defaults, source = desc.spec_defaults()
    assert defaults is S.DEFAULTS and "mae" in source


def test_fp16_on_cpu_is_a_host_issue():
    desc = registry.get("mae")
    spec = {"train": {"precision": "fp16"}}
    issues = desc.host_issues("train", spec, registry.HostInfo(cuda=False, gpus=0))
    assert [i["field"] for i in issues] == ["train.precision"] and "fp32" in issues[0]["fix"]
    assert desc.host_issues("train", spec, registry.HostInfo(cuda=True, gpus=1)) == []


def test_check_accepts_defaults_and_names_bad_keys():
    S.check(_cfg(), "train")
    S.check(_cfg(arch="convnextv2_base", size=224), "train")
    bad = _cfg(
        train__mask_ratio=1.0,
        train__optim__lr=0.0,
        train__optim__lr_scheduler="poly",
        dataset__augmentation__mixup_mode="row",
        dataset__augmentation__input_size=60,
        train__precision="fp64",
    )
    with pytest.raises(SpecError) as err:
        S.check(bad, "train")
    fields = {i.field for i in err.value.issues}
    assert {
        "train.mask_ratio",
        "train.optim.lr",
        "train.optim.lr_scheduler",
        "dataset.augmentation.mixup_mode",
        "dataset.augmentation.input_size",
        "train.precision",
    } <= fields
    assert all(i.fix for i in err.value.issues)


def test_check_refuses_what_the_engine_cannot_do():
    with pytest.raises(NotSupported, match="auto_aug"):
        S.check(_cfg(dataset__augmentation__auto_aug="original"), "train")
    with pytest.raises(NotSupported, match="global_pool"):
        S.check(_cfg(arch="convnextv2_atto", model__global_pool=False), "train")
    with pytest.raises(NotSupported, match="TensorRT"):
        S.check(_cfg(evaluate__checkpoint="/m.pth", evaluate__trt_engine="/m.engine", dataset__val_data_sources="/v"), "evaluate")
    with pytest.raises(NotSupported, match="ONNX only"):
        S.check(_cfg(export__format="xdl"), "export")
    with pytest.raises(SpecError) as err:
        S.check(_cfg(arch="hiera_tiny_test", export__checkpoint="/m.pth", export__onnx_file="/m.onnx"), "export")
    assert {i.field for i in err.value.issues} == {"export.input_width", "export.input_height"}


def test_seed_error_inference_with_pretrain_stage():
    cfg = _cfg(inference__checkpoint="/m.pth", dataset__test_data_sources="/t")
    with pytest.raises(NotSupported) as err:
        S.check(cfg, "inference")
    assert err.value.field == "train.stage"
    assert "NotImplementedError" in str(err.value) and "finetune checkpoint" in err.value.fix


def test_class_folders(tmp_path):
    from PIL import Image

    root = tmp_path / "train"
    for c, n in (("b_dog", 2), ("a_cat", 3)):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8)).save(root / c / f"{i}.png")
    classes, samples = D.class_folders(root, field="dataset.train_data_sources")
    assert classes == ["a_cat", "b_dog"] and sorted(y for _, y in samples) == [0, 0, 0, 1, 1]
    (root / "c_empty").mkdir()
    (root / "c_empty" / "notes.txt").write_text("x")
    with pytest.raises(PreflightError, match="c_empty"):
        D.class_folders(root, field="dataset.train_data_sources")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "x.png")
    with pytest.raises(PreflightError, match="no class sub-folders"):
        D.class_folders(flat, field="dataset.train_data_sources")
    tar = tmp_path / "images_train.tar.gz"
    tar.write_bytes(b"")
    with pytest.raises(PreflightError, match="archive"):
        D.class_folders(tar, field="dataset.train_data_sources")


def test_transforms_shapes_and_randaugment():
    from PIL import Image

    img = Image.new("RGB", (90, 60), (200, 30, 30))
    aug = copy.deepcopy(S.DEFAULTS["dataset"]["augmentation"])
    aug.update(input_size=32, re_prob=1.0, color_jitter=0.4)
    for finetune in (False, True):
        x = D.TrainTransform(aug, finetune=finetune)(img)
        assert x.shape == (3, 32, 32) and torch.isfinite(x).all()
    assert D.eval_transform(img, aug).shape == (3, 32, 32)
    ra = A.RandAugment("rand-m9-n3-mstd0.5-inc1")
    assert (ra.m, ra.n, ra.mstd, ra.inc) == (9.0, 3, 0.5, True)
    for _ in range(20):
        assert ra(img).size == img.size


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_mixup_soft_targets(mode):
    aug = dict(S.DEFAULTS["dataset"]["augmentation"], mixup_mode=mode)
    mix = A.Mixup(aug, num_classes=3)
    x, y = torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    out, t = mix(x, y)
    assert out.shape == x.shape and t.shape == (6, 3)
    assert torch.allclose(t.sum(1), torch.ones(6), atol=1e-5) and (t >= 0).all()
    off = A.Mixup(dict(aug, mixup=0.0, cutmix=0.0, smoothing=0.1), num_classes=3)
    same, t0 = off(x, y)
    assert same is x and torch.allclose(t0[0], torch.tensor([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3]))


def test_fcmae_is_dense_and_masks_once_after_the_stem():
    cfg = _cfg(arch="convnextv2_atto")
    net = M.build_pretrain(cfg).eval()
    seen = {}
    net.convnextv2.encoder.register_forward_pre_hook(lambda mod, args: seen.__setitem__("stem", args[0].detach()))
    x = torch.randn(1, 3, 64, 64)
    noise = torch.tensor([[0.9, 0.1, 0.8, 0.7]])  # keeps patch 1 (top right), hides 0, 2, 3
    loss, pred, mask = net(x, noise=noise)
    assert mask.tolist() == [[1.0, 0.0, 1.0, 1.0]] and pred.shape == (1, 4, 32 * 32 * 3)
    stem = seen["stem"][0]  # [C, 16, 16]: 8x8 stem cells per 32 px patch
    assert stem[:, :8, :8].abs().max() == 0 and stem[:, 8:, :].abs().max() == 0 and stem[:, :8, 8:].abs().max() > 0
    assert not any("Minkowski" in type(m).__name__ or "Sparse" in type(m).__name__ for m in net.modules())
    # the loss only counts hidden patches: changing the prediction target of the kept patch changes nothing
    x2 = x.clone()
    x2[..., :32, 32:] += 5.0
    target = M.patchify(x, 32)
    target2 = M.patchify(x2, 32)
    assert torch.allclose(M.masked_mse(pred, target, mask, True), M.masked_mse(pred, target2, mask, True))


@pytest.mark.parametrize("arch", ["vit_tiny_patch8", "convnextv2_atto", "hiera_tiny_test"])
def test_pretrain_checkpoint_loads_into_classifier(arch):
    cfg = _cfg(arch=arch)
    pre = M.build_pretrain(cfg)
    sd = {f"model.{k}": v for k, v in pre.state_dict().items()}  # as in a Lightning checkpoint
    clf = M.build_classifier(cfg, num_classes=3)
    rep = M.load_pretrained(clf, sd, field="train.pretrained_model_path")
    assert rep["missing"] == [] and rep["unexpected"] == []
    assert rep["dropped"] and all(
        any(p in k for p in ("decoder", "mask_token", "pred", "proj", "encoder_norm", "multiscale")) for k in rep["dropped"]
    )
    own = clf.backbone.state_dict()
    enc = pre.convnextv2 if arch.startswith("convnext") else (pre.net.vit if arch.startswith("vit") else pre.net.hiera)
    for k, v in enc.state_dict().items():
        assert torch.equal(own[k], v), k
    assert clf.head.weight.std() < 1e-3 and clf.head.bias.abs().max() == 0  # re-initialised head
    assert clf(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_finetune_checkpoint_reloads_with_new_head():
    cfg = _cfg(arch="convnextv2_atto")
    old = M.build_classifier(cfg, num_classes=5)
    sd = {f"model.{k}": v for k, v in old.state_dict().items()}
    new = M.build_classifier(cfg, num_classes=3)
    rep = M.load_pretrained(new, sd, field="train.pretrained_model_path")
    assert rep["missing"] == [] and rep["unexpected"] == [] and rep["dropped"] == ["model.head.weight", "model.head.bias"]
    assert torch.equal(new.backbone.embeddings.patch_embeddings.weight, old.backbone.embeddings.patch_embeddings.weight)


def test_vit_position_embeddings_interpolate_hiera_refuses():
    pre = M.build_pretrain(_cfg(size=64))
    sd = {f"model.{k}": v for k, v in pre.state_dict().items()}
    clf = M.build_classifier(_cfg(size=96), num_classes=2)
    rep = M.load_pretrained(clf, sd, field="train.pretrained_model_path")
    assert rep["missing"] == [] and clf.backbone.embeddings.position_embeddings.shape[1] == 1 + 12 * 12
    hpre = M.build_pretrain(_cfg(arch="hiera_tiny_test", size=64))
    hsd = {f"model.{k}": v for k, v in hpre.state_dict().items()}
    with pytest.raises(SpecError) as err:
        M.load_pretrained(M.build_classifier(_cfg(arch="hiera_tiny_test", size=96), 2), hsd, field="train.pretrained_model_path")
    assert err.value.field == "dataset.augmentation.input_size"


def test_layer_decay_groups():
    cfg = _cfg(arch="convnextv2_base", size=64)
    clf = M.build_classifier(cfg, num_classes=2)
    groups = M.param_groups(clf, cfg, stage="finetune")
    head = [g for g in groups if any(p is clf.head.weight for p in g["params"])][0]
    assert head["lr_scale"] == 1.0 and head["weight_decay"] == 0.05
    scales = sorted({round(g["lr_scale"], 8) for g in groups})
    # backbone layer ids 0..13 (stem 0, stages 1, 2, 3-11 in blocks of 3, 12, final norm 13) x backbone_multiplier
    # 0.1, plus the head at 1.0
    assert len(scales) == 15 and min(scales) == pytest.approx(0.1 * 0.75**13, rel=1e-5) and max(scales) == 1.0
    assert all(g["weight_decay"] == 0.0 for g in groups if all(p.ndim <= 1 for p in g["params"]))
    assert sum(len(g["params"]) for g in groups) == len(list(clf.parameters()))


def test_freeze_names_unknown_prefix():
    clf = M.build_classifier(_cfg(), num_classes=2)
    assert M.apply_freeze(clf, ["embeddings"]) == 4  # cls token, position table, patch projection weight + bias
    assert not clf.backbone.embeddings.cls_token.requires_grad and clf.head.weight.requires_grad
    with pytest.raises(SpecError) as err:
        M.apply_freeze(clf, ["stem_nonexistent"])
    assert err.value.field == "train.freeze"


@pytest.mark.parametrize("arch", ["vit_tiny_patch8", "convnextv2_atto", "hiera_tiny_test"])
def test_onnx_matches_pytorch_per_family(arch, tmp_path):
    pytest.importorskip("onnxruntime")
    from taoskills.engine.mae.export import TOLERANCE, compare, export_onnx

    torch.manual_seed(0)
    clf = M.build_classifier(_cfg(arch=arch), num_classes=3, drop_path=0.0).eval()
    torch.nn.init.normal_(clf.head.weight, std=0.5)  # a trained-looking head, so logits are not ~0
    path = tmp_path / f"{arch}.onnx"
    exporter = export_onnx(clf, torch.randn(2, 3, 64, 64), path, out_name="logits", opset=17, dynamic=True, verbose=False)
    diff, shape = compare(path, clf, torch.randn(3, 3, 64, 64))
    assert exporter in ("torchscript", "dynamo")
    assert shape == [3, 3] and diff < TOLERANCE
