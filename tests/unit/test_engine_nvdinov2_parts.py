"""NVDINOv2 engine building blocks: TAO defaults, schedules, losses, masks, spec checks (no training)."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch

from taoskills.engine.nvdinov2 import data as D
from taoskills.engine.nvdinov2 import model as M
from taoskills.engine.nvdinov2 import spec as S
from taoskills.errors import NotSupported, SpecError

pytestmark = pytest.mark.torch  # needs the engine extra


@pytest.mark.taocore
def test_defaults_match_tao_core():
    import nvidia_tao_core.config.nvdinov2.default_config as default_config
    import omegaconf

    tao = omegaconf.OmegaConf.to_container(omegaconf.OmegaConf.structured(default_config.ExperimentConfig))
    assert tao == S.DEFAULTS


def _cfg(**over):
    cfg = copy.deepcopy(S.DEFAULTS)
    cfg["dataset"]["train_dataset"]["images_dir"] = "/data"
    for key, value in over.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def test_check_accepts_defaults_and_names_bad_keys():
    S.check(_cfg(), "train")
    with pytest.raises(SpecError) as err:
        S.check(
            _cfg(
                **{
                    "dataset.workers": 0,
                    "train.checkpoint_interval": 20,
                    "dataset.transform.global_crops_scale": [0.9, 0.1],
                    "train.schedulers.learning_rate.max_decay_steps": 5,
                    "train.precision": "fp16",
                }
            ),
            "train",
        )
    fields = {i.field: i for i in err.value.issues}
    assert "persistent_workers option needs num_workers > 0" in fields["dataset.workers"].reason
    assert {
        "train.checkpoint_interval",
        "dataset.transform.global_crops_scale",
        "train.schedulers.learning_rate.max_decay_steps",
        "train.precision",
    } <= set(fields)
    with pytest.raises(NotSupported) as err:
        S.check(_cfg(**{"model.distill.enable": True}), "train")
    assert err.value.field == "model.distill.enable"
    with pytest.raises(NotSupported) as err:
        S.check(_cfg(**{"model.backbone.teacher_type": "vit_b", "model.backbone.student_type": "vit_s"}), "train")
    assert "distillation" in str(err.value)


def test_check_inference_engine_file_and_trt():
    with pytest.raises(SpecError) as err:
        S.check(_cfg(**{"inference.checkpoint": "/m/model.engine", "dataset.test_dataset.images_dir": "/d"}), "inference")
    assert "TensorRT engine passed to PyT inference" in str(err.value)
    with pytest.raises(NotSupported):
        S.check(_cfg(**{"inference.checkpoint": "/m/s.pth", "inference.trt_engine": "/m/x.engine"}), "inference")
    with pytest.raises(SpecError) as err:
        S.check(_cfg(), "export")  # checkpoint and onnx_file are ??? (TAO MISSING)
    assert {"export.checkpoint", "export.onnx_file"} <= {i.field for i in err.value.issues}


def test_cosine_schedule_shape():
    s = {"val_start": 0.0, "val_base": 1.0, "val_final": 0.1, "warm_up_steps": 10, "max_decay_steps": 110}
    assert M.cosine_schedule(0, s) == 0.0
    assert M.cosine_schedule(5, s) == pytest.approx(0.5)
    assert M.cosine_schedule(10, s) == pytest.approx(1.0)
    assert M.cosine_schedule(60, s) == pytest.approx(0.55)
    assert M.cosine_schedule(110, s) == pytest.approx(0.1) and M.cosine_schedule(10**6, s) == pytest.approx(0.1)
    assert M.cosine_schedule(3, s, freeze_steps=4) == 0.0
    tt = S.DEFAULTS["train"]["schedulers"]["teacher_temperature"]  # TAO: 0.04 -> 0.07 over 37500, then flat
    assert M.cosine_schedule(0, tt) == pytest.approx(0.04) and M.cosine_schedule(40000, tt) == pytest.approx(0.07)


def test_sinkhorn_knopp_equipartition():
    torch.manual_seed(0)
    logits = torch.randn(64, 16) * 0.3
    q = M.sinkhorn_knopp(logits, temp=0.05, n_iter=20)
    assert torch.allclose(q.sum(1), torch.ones(64), atol=1e-4)
    plain = torch.softmax(logits / 0.05, -1).sum(0)
    # columns (prototypes) are far closer to equal use than with a plain softmax
    assert (q.sum(0) - 4).abs().max() < 0.25 < (plain - 4).abs().max()
    # extreme logits do not overflow
    assert torch.isfinite(M.sinkhorn_knopp(logits * 1000, temp=0.04)).all()


def test_losses_behave():
    torch.manual_seed(0)
    t = torch.softmax(torch.randn(4, 8), -1)
    good = [torch.log(t) * M.STUDENT_TEMP, torch.log(t) * M.STUDENT_TEMP]
    bad = [torch.randn(4, 8), torch.randn(4, 8)]
    assert M.dino_loss(good, [t, t], 2) < M.dino_loss(bad, [t, t], 2)
    spread = torch.eye(4)
    close = torch.ones(4, 4) + 0.01 * torch.randn(4, 4)
    assert M.koleo_loss(spread) < M.koleo_loss(close)
    masks = torch.tensor([[True, False, True], [False, False, False]])
    lg = torch.randn(2, 8)
    loss = M.ibot_loss(lg, torch.softmax(lg / M.STUDENT_TEMP, -1), masks)
    assert torch.isfinite(loss) and loss > 0


def test_head_and_param_groups():
    cfg = _cfg(
        **{
            "model.backbone.student_type": "vit_s",
            "model.backbone.teacher_type": "vit_s",
            "model.backbone.img_size": 56,
            "train.layerwise_decay": 0.5,
        }
    )
    bb = M.build_backbone(cfg)
    assert bb.config.hidden_size == 384 and bb.config.num_hidden_layers == 12
    assert bb.config._attn_implementation == "sdpa"
    assert M.build_backbone(cfg, attn="eager").config._attn_implementation == "eager"
    head = M.DINOHead(384, 32, 3, 64, 16)
    out = head(torch.randn(5, 384))
    assert out.shape == (5, 32) and out.abs().max() <= 1.0 + 1e-5  # unit-norm prototypes, unit-norm input
    groups = M.param_groups(bb, head, 0.5)
    mults = sorted({g["lr_multiplier"] for g in groups})
    assert mults[0] == pytest.approx(0.5**13) and mults[-1] == 1.0
    assert any(g["is_last_layer"] for g in groups)
    names = {id(p): n for n, p in bb.named_parameters()}
    for g in groups:
        for p in g["params"]:
            n = names.get(id(p), "")
            if n.endswith("bias") or "cls_token" in n or "position_embeddings" in n:
                assert g["wd_multiplier"] == 0.0


def test_register_backbone_and_weight_mismatch_message():
    cfg = _cfg(
        **{
            "model.backbone.student_type": "vit_s",
            "model.backbone.teacher_type": "vit_s",
            "model.backbone.img_size": 56,
            "model.backbone.num_register_tokens": 4,
        }
    )
    reg = M.build_backbone(cfg)
    assert type(reg).__name__ == "Dinov2WithRegistersModel" and M.num_prefix_tokens(reg) == 5
    plain = M.build_backbone(_cfg(**{"model.backbone.student_type": "vit_s", "model.backbone.img_size": 56}))
    with pytest.raises(SpecError) as err:
        M.load_backbone_weights(plain, reg.state_dict(), field="inference.checkpoint")
    assert "num_register_tokens 4" in str(err.value) and err.value.field == "inference.checkpoint"


def test_block_mask_and_collate():
    rng = random.Random(0)
    for n in (1, 5, 13, 32):
        m = D.block_mask(8, 8, n, rng)
        assert m.shape == (64,) and int(m.sum()) == n
    imgs = [{"global": [torch.zeros(3, 28, 28)] * 2, "local": [torch.zeros(3, 14, 14)] * 3} for _ in range(4)]
    batch = D.Collate(14, 28)(imgs)
    assert batch["global"].shape == (8, 3, 28, 28) and batch["local"].shape == (12, 3, 14, 14)
    assert batch["masks"].shape == (8, 4) and int((batch["masks"].sum(1) > 0).sum()) == 4
    assert not D.Collate(14, 28, masking=False)(imgs)["masks"].any()


def test_multicrop_sizes(tmp_path):
    from taoskills.data.sample_data import write_sample_images

    files = write_sample_images(tmp_path, n=2, size=64)
    tf = {
        "n_global_crops": 2,
        "global_crops_scale": [0.32, 1.0],
        "global_crops_size": 42,
        "n_local_crops": 3,
        "local_crops_scale": [0.05, 0.32],
        "local_crops_size": 28,
    }
    item = D.MultiCropDataset(files, tf)[0]
    assert [t.shape for t in item["global"]] == [(3, 42, 42)] * 2
    assert [t.shape for t in item["local"]] == [(3, 28, 28)] * 3
    assert D.eval_transform(D.load_rgb(files[0]), 56).shape == (3, 56, 56)
    assert math.isfinite(float(item["global"][0].mean()))
