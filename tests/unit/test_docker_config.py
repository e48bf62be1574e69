"""Docker platform rules that need no daemon: GPU device requests as rendered, the image
allowlist, workspace confinement, spec path rewriting, and the hardened run arguments."""

from __future__ import annotations

import os

import pytest

from taoskills.bank.catalog import Catalog
from taoskills.errors import PolicyRefusal
from taoskills.jobs.store import JobRecord
from taoskills.platforms import docker_config as dc
from taoskills.platforms.docker import DockerPlatform, container_command
from taoskills.platforms.engines import get_engine

PLANTED = "planted-SECRET-0a1b2c3d4e5f"


@pytest.fixture(scope="module")
def cat():
    return Catalog.load()


@pytest.fixture()
def cfg(tmp_path):
    return dc.DockerConfig.from_env(workspace=tmp_path)


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        (
            {"num_gpus": 2, "gpu_ids": [0, 1]},
            [{"Driver": "nvidia", "Capabilities": [["gpu"]], "Count": 0, "DeviceIDs": ["0", "1"]}],
        ),
        ({"num_gpus": 1, "gpu_ids": [3]}, [{"Driver": "nvidia", "Capabilities": [["gpu"]], "Count": 0, "DeviceIDs": ["3"]}]),
        ({"num_gpus": 4, "gpu_ids": [0]}, [{"Driver": "nvidia", "Capabilities": [["gpu"]], "Count": 4}]),
        ({"num_gpus": -1}, [{"Driver": "nvidia", "Capabilities": [["gpu"]], "Count": -1}]),
        ({"num_gpus": 0}, []),
    ],
)
def test_gpu_device_requests_as_rendered(cat, train, expected):
    info = cat.get("tao-train-dino").info
    assert dc.device_requests(info, "train", {"train": train}, enabled=True) == expected
    assert dc.device_requests(info, "train", {"train": train}, enabled=False) == []


def test_run_kwargs_render_gpus_and_hardening(cat, tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_ENCRYPTION_KEY", PLANTED)
    plat = DockerPlatform(client=object(), workspace=tmp_path, gpus="on", allow_root=True)
    info = cat.get("tao-train-dino").info
    rec = JobRecord(
        skill=info.name,
        network_arch="dino",
        action="train",
        platform="docker",
        engine="tao",
        spec={"train": {"num_gpus": 2, "gpu_ids": [0, 1]}},
        workdir=str(tmp_path / "jobs/j1"),
        results_dir=str(tmp_path / "jobs/j1/results"),
    )
    kw = plat.run_kwargs(rec, info, get_engine("tao"), image="nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt")
    (req,) = kw["device_requests"]
    assert dict(req) == {"Driver": "nvidia", "Count": 0, "DeviceIDs": ["0", "1"], "Capabilities": [["gpu"]], "Options": {}}
    assert kw["cap_drop"] == ["ALL"] and kw["security_opt"] == ["no-new-privileges:true"] and kw["init"] is True
    assert kw["labels"][dc.LABEL_JOB] == rec.job_id and kw["name"] == f"tao-skills-{rec.job_id}"
    assert kw["command"][:2] == ["sh", "-c"] and kw["command"][-5:] == [
        "dino",
        "train",
        "-e",
        "/spec.yaml",
        "results_dir=/results",
    ]
    assert kw["command"][4] == "dino"
    targets = {m["Target"]: m for m in kw["mounts"]}
    assert targets["/workspace"]["ReadOnly"] and targets["/spec.yaml"]["ReadOnly"] and not targets["/results"]["ReadOnly"]
    assert targets[dc.SECRETS_MOUNT]["ReadOnly"]
    assert all("docker.sock" not in m["Source"] for m in kw["mounts"])
    assert PLANTED not in repr(kw) and "TAO_ENCRYPTION_KEY" in kw["labels"]["tao-skills.secrets"]
    assert "NVIDIA_VISIBLE_DEVICES" not in kw["environment"]


def test_deploy_action_uses_the_deploy_image(cat, cfg):
    info = cat.get("tao-train-dino").info
    assert cfg.image_for("tao", info, "train").endswith("-pyt")
    deploy = next(a for a, x in info.actions.items() if x.container == "deploy")
    assert cfg.image_for("tao", info, deploy).endswith("-deploy")
    assert cfg.image_for("builtin", info, "train") == dc.ENGINE_IMAGE
    cmd = container_command(get_engine("tao"), info, deploy)
    assert cmd[0] == "dino" and cmd[-1] == "results_dir=/results" and "/spec.yaml" in cmd


def test_image_allowlist(tmp_path):
    assert dc.check_image("nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt", [])
    for bad in ("alpine:latest", "nvcr.io/other/thing:1", "nvcr.io/nvidia/taoX:1", "--privileged", "a b"):
        with pytest.raises(PolicyRefusal):
            dc.check_image(bad, [])
    assert dc.check_image("mine/img:2", ["mine/"]) and dc.check_image("x:1", ["x:1"])
    with pytest.raises(PolicyRefusal):
        dc.check_image("x:2", ["x:1"])


def test_workspace_confinement_and_spec_rewrite(cfg, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    res = str(tmp_path / "jobs/j/results")
    assert cfg.host_to_container(data) == "/workspace/data"
    assert cfg.host_to_container(res + "/train", results_dir=res) == "/results/train"
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    with pytest.raises(PolicyRefusal) as exc:
        cfg.inside_workspace(outside)
    assert "outside the docker platform's workspace" in exc.value.message and "TAO_SKILLS_DOCKER_WORKSPACE" in exc.value.fix
    link = data / "escape"
    link.symlink_to(outside)
    with pytest.raises(PolicyRefusal):
        cfg.inside_workspace(link)  # symlinks are followed before the check
    spec = {"results_dir": res, "dataset": {"images_dir": str(data), "other": "/opt/in/container"}}
    assert dc.rewrite_spec(spec, cfg, res) == {
        "results_dir": "/results",
        "dataset": {"images_dir": "/workspace/data", "other": "/opt/in/container"},
    }
    with pytest.raises(PolicyRefusal) as exc:
        dc.rewrite_spec({"model": {"pretrained_backbone_path": str(outside)}}, cfg, res)
    assert exc.value.field == "model.pretrained_backbone_path"


def test_docker_socket_is_never_mounted(tmp_path, monkeypatch):
    for path in ("/var/run/docker.sock", "/var/run", "/run"):
        with pytest.raises(PolicyRefusal):
            dc.DockerConfig.from_env(workspace=tmp_path, toolchain_mounts=[path])
    monkeypatch.setenv("TAO_SKILLS_DOCKER_PULL", "sometimes")
    with pytest.raises(PolicyRefusal) as exc:
        dc.DockerConfig.from_env(workspace=tmp_path)
    assert exc.value.field == "TAO_SKILLS_DOCKER_PULL"


def test_root_is_refused_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "getuid", lambda: 0)
    with pytest.raises(PolicyRefusal) as exc:
        DockerPlatform(client=object(), workspace=tmp_path).user()
    assert "TAO_SKILLS_DOCKER_ALLOW_ROOT" in exc.value.fix
    monkeypatch.setattr(os, "getuid", lambda: 1234)
    monkeypatch.setattr(os, "getgid", lambda: 99)
    assert DockerPlatform(client=object(), workspace=tmp_path).user() == "1234:99"


def test_explicit_container_user_is_never_root(tmp_path):
    for bad in ("0:0", "root", "1000"):
        with pytest.raises(PolicyRefusal) as exc:
            dc.DockerConfig.from_env(workspace=tmp_path, user=bad)
        assert exc.value.field == "TAO_SKILLS_DOCKER_USER"
    assert DockerPlatform(client=object(), workspace=tmp_path, user="1000:1000").user() == "1000:1000"
