"""NVDINOv2 lean checkpoints and the estimate's parameter counts against the real module (torch)."""

from __future__ import annotations

import copy

import pytest

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def module():
    from taoskills.engine.nvdinov2 import spec as S
    from taoskills.engine.nvdinov2.train import NVDINOv2Module

    cfg = copy.deepcopy(S.DEFAULTS)
    cfg["model"]["backbone"].update(student_type="vit_s", teacher_type="vit_s", img_size=224, num_register_tokens=4)
    cfg["train"]["num_prototypes"] = 1024
    return cfg, NVDINOv2Module(cfg)


def test_estimate_counts_the_parameters_the_engine_builds(module):
    from taoskills.jobs.estimate import Shape

    cfg, m = module
    shape = Shape.from_spec(cfg)
    assert shape.backbone == sum(p.numel() for p in m.student["backbone"].parameters())
    assert shape.head == sum(p.numel() for p in m.student["head"].parameters())


def test_lean_checkpoint_round_trip_restores_every_weight(module, tmp_path):
    import torch

    from taoskills.engine.nvdinov2 import checkpoint as C
    from taoskills.errors import SpecError

    _, m = module
    full = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.AdamW(m.student.parameters())
    ckpt = {"state_dict": dict(full), "optimizer_states": [opt.state_dict()], "epoch": 1}
    tag = "epoch_001_step_00004"
    C.make_lean(ckpt, tag)
    assert not any(k.startswith(("student.backbone.", "teacher.backbone.")) for k in ckpt["state_dict"])
    assert ckpt["optimizer_states"][0]["state"] == {} and ckpt["optimizer_states"][0]["param_groups"]
    path = tmp_path / f"model_{tag}.pth"
    torch.save(ckpt, path)
    with pytest.raises(SpecError) as exc:  # companions missing
        C.companions(torch.load(path, weights_only=False), path)
    assert exc.value.field == C.FIELD and "student_" in exc.value.message
    for role in ("student", "teacher"):
        torch.save(getattr(m, role)["backbone"].state_dict(), tmp_path / f"{role}_{tag}.pth")
    (tmp_path / "nvdinov2_model_latest.pth").symlink_to(path.name)
    loaded = torch.load(tmp_path / "nvdinov2_model_latest.pth", weights_only=False)
    C.restore_backbones(loaded, tmp_path / "nvdinov2_model_latest.pth")
    assert set(loaded["state_dict"]) == set(full) and C.LEAN_KEY not in loaded
    assert all(torch.equal(loaded["state_dict"][k], full[k]) for k in full)
    opt.load_state_dict(loaded["optimizer_states"][0])  # an empty state loads: AdamW restarts its moments
