"""Acceptance for the engine and platform seams: a dummy engine network and a dummy platform,
registered from this test only, are seen by the CLI, MCP (get_skill runs_here), preflight and
the engine CLI with no other edit. Also: the runtime engine and platform registries."""

from __future__ import annotations

import asyncio
import json
import sys
import types

import pytest
from mcp import Client
from typer.testing import CliRunner

from taoskills.data.preflight import CheckResult
from taoskills.engine import cli as engine_cli
from taoskills.engine import registry
from taoskills.engine.registry import EngineNetwork
from taoskills.errors import NotFound, NotSupported
from taoskills.platforms import engines, placement
from taoskills.platforms import registry as platforms
from taoskills.platforms.base import PlatformBase, PlatformState, multi_gpu_env
from taoskills.service import Service
from taoskills.surfaces import cli
from taoskills.surfaces.mcp import build_server

DUMMY_PLATFORM = "dummyplat"


def _dummy_rule(action, spec, host):
    if action == "train" and (spec.get("train") or {}).get("num_gpus", 1) > 1:
        return [{"field": "train.num_gpus", "reason": "dummy engine runs one GPU", "fix": "set train.num_gpus=1"}]
    return []


class DummyPlatform(PlatformBase):
    """Accepts remote URIs (an object-storage platform would) and reports one host check."""

    name = DUMMY_PLATFORM

    def submit(self, record):
        return "dummy-1"

    def poll(self, record):
        return PlatformState(state="RUNNING")

    def cancel(self, record):
        return None

    def logs(self, record, tail=200, grep=None, max_bytes=65536):
        return ""

    def host_checks(self, engine, info, action, spec):
        return [CheckResult(name="dummy.host", ok=True, message=f"dummy host runs {engine.name}")] + [
            CheckResult(name="engine.host", ok=False, field=i["field"], message=i["reason"], fix=i["fix"])
            for i in engine.host_issues(info, action, spec, registry.HostInfo(platform=self.name))
        ]

    def quick_check(self, engine, info, action):
        return None

    def check_input(self, field, value, *, batch_size=None):
        return [CheckResult(name="dummy.input", ok=True, field=field, message=f"{value} accepted")]

    def artifacts(self, record):
        raise NotSupported("dummy", field="platform", fix="none")


@pytest.fixture()
def dummies(tmp_path, monkeypatch):
    """A dummy built-in engine network for DINO (train only) and the dummy platform."""
    spec_mod = types.ModuleType("dummy_dino_pkg.spec")
    spec_mod.DEFAULTS = {"results_dir": "", "train": {"num_gpus": 1, "word": "x"}}
    spec_mod.SOURCE = "test dummy"
    monkeypatch.setitem(sys.modules, "dummy_dino_pkg", types.ModuleType("dummy_dino_pkg"))
    monkeypatch.setitem(sys.modules, "dummy_dino_pkg.spec", spec_mod)

    def runner(action):
        def run(ctx):
            (ctx.results_dir / "dummy.txt").write_text(str(ctx.cfg["train"]["word"]))
            return {"score": 2.0}

        return run

    real = registry.get("dino")
    registry.register(
        EngineNetwork(
            network="dino",
            display_name="DummyDINO",
            actions=("train",),
            package="dummy_dino_pkg",
            host_rules=(_dummy_rule,),
            runner=runner,
            requires=(),
        ),
        replace=True,
    )
    platforms.register(DUMMY_PLATFORM, DummyPlatform, description="test dummy")
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    yield
    platforms.unregister(DUMMY_PLATFORM)
    if real is not None:
        registry.register(real, replace=True)
    else:
        registry.unregister("dino")


def test_dummy_engine_and_platform_seen_everywhere(dummies, tmp_path):
    runner = CliRunner()
    # CLI: skills list shows the dummy's action under the built-in engine
    res = runner.invoke(cli.app, ["skills", "list", "--json"])
    assert res.exit_code == 0, res.output
    dino = next(s for s in json.loads(res.stdout) if s["name"] == "tao-train-dino")
    assert dino["builtin_engine_actions"] == ["train"] and dino["engine_actions"]["builtin"] == ["train"]

    # MCP get_skill: runs_here lists the dummy platform for the built-in engine
    async def get_skill():
        async with Client(build_server(Service(home=tmp_path / "home"))) as client:
            res = await client.call_tool("get_skill", {"name": "tao-train-dino"})
            assert not res.is_error
            return res.structured_content

    detail = asyncio.run(get_skill())
    options = detail["runs_here"]["train"]["options"]
    assert {"engine": "builtin", "platform": DUMMY_PLATFORM, "ok": True, "reason": None, "fix": None} in options

    # preflight (CLI): the dummy platform's input policy and host checks, the dummy engine's host rule
    spec = tmp_path / "train.yaml"
    svc = Service(home=tmp_path / "home")
    template = svc.get_spec_template("tao-train-dino", "train")
    template["train"]["num_gpus"] = 2
    template["dataset"]["train_data_sources"] = [{"image_dir": "s3://bucket/images", "json_file": "s3://bucket/a.json"}]
    spec.write_text(json.dumps(template))
    res = runner.invoke(
        cli.app,
        ["preflight", "tao-train-dino", "train", str(spec), "--engine", "builtin", "--platform", DUMMY_PLATFORM, "--json"],
    )
    report = json.loads(res.stdout)
    names = {c["name"] for c in report["checks"]}
    assert "dummy.host" in names and res.exit_code == 2
    assert "train.num_gpus" in [i["field"] for i in report["issues"]]  # the dummy platform's host check

    # engine CLI: runs the dummy network under TAO's results contract
    spec.write_text("train:\n  word: hello\n")
    out = tmp_path / "out"
    assert engine_cli.main(["dino", "train", "-e", str(spec), f"results_dir={out}"]) == 0
    assert (out / "train" / "dummy.txt").read_text() == "hello"
    lines = [json.loads(x) for x in (out / "train" / "status.json").read_text().splitlines()]
    assert lines[0]["message"] == "Starting DummyDINO train." and lines[-1]["kpi"] == {"score": 2.0}


def test_runtime_engine_registry_and_commands():
    svc = Service()
    info = svc.catalog.get("tao-train-dino").info
    tao, builtin = engines.get_engine("tao"), engines.get_engine("builtin")
    assert list(engines.engines())[:2] == ["tao", "builtin"]
    assert tao.command(info, "train", "/w/spec.yaml") == ["dino", "train", "-e", "/w/spec.yaml"]
    req = tao.requirements(info, "train")
    assert req.tools == ("dino",) and req.image == info.images["train"] and req.hardware_severity == "error"
    deploy = next(a for a, x in info.actions.items() if x.container == "deploy")
    assert tao.requirements(info, deploy).image == info.images["deploy"]
    assert builtin.why_not(info, "distill") and "engine='tao'" in builtin.fix(info, "distill")
    assert builtin.why_not(info, "train") is None  # the built-in DINO engine
    nv = svc.catalog.get("tao-train-nvdinov2").info
    assert builtin.why_not(nv, "train") is None
    assert builtin.command(nv, "export", "/w/s.yaml")[1:] == ["-m", "taoskills.engine", "nvdinov2", "export", "-e", "/w/s.yaml"]
    with pytest.raises(NotFound) as exc:
        engines.get_engine("magic")
    assert "builtin" in exc.value.fix


def test_runtime_engine_registered_from_a_test_is_offered(monkeypatch, tmp_path):
    class Echo(engines.RuntimeEngine):
        name, order = "echo", 1

        def requirements(self, info, action):
            return engines.EngineRequirements(check_name="host.echo", what="echo", fix="none")

        def command(self, info, action, spec_path):
            return ["echo", spec_path]

    engines.register(Echo())
    try:
        svc = Service(home=tmp_path / "home")
        where = svc.get_skill("tao-train-dino").runs_here["train"]
        assert where.engine == "echo" and where.runs_here
        script = svc.render_runner("tao-train-dino", "train", svc.get_spec_template("tao-train-dino", "train")).script
        assert "echo " in script and "TAO_SKILLS_JOB_ID" in script
    finally:
        engines.unregister("echo")


def test_platform_registry():
    assert platforms.names()[0] == "local"
    assert set(platforms.names()) >= {"local", "docker", "slurm", "kubernetes"}
    with pytest.raises(NotFound) as exc:
        platforms.get_platform("cloud9")
    assert "local" in exc.value.fix
    with pytest.raises(ValueError):
        platforms.register("local", DummyPlatform)


def test_multi_gpu_env_follows_the_skill_contract():
    svc = Service()
    gd = svc.catalog.get("tao-train-grounding-dino").info
    env = multi_gpu_env(gd, "train", {"train": {"num_gpus": 4}})
    assert env == {
        "WORLD_SIZE": "1",
        "NUM_GPU_PER_NODE": "4",
        "NODE_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }
    assert multi_gpu_env(gd, "export", {"train": {"num_gpus": 4}}) == {}


def test_hardware_minimums_are_host_checks(monkeypatch, tmp_path):
    """skill_info hardware.min_gpus: an error for the TAO engine, a warning naming the minimum for the built-in engine."""
    from taoskills.platforms import hostchecks

    monkeypatch.setattr(
        hostchecks, "check_nvidia_smi", lambda severity: CheckResult(name="host.gpu", ok=True, message="0", details={"gpus": 0})
    )
    svc = Service(home=tmp_path / "home")
    sk = svc.catalog.get("tao-train-dino")
    local = platforms.get_platform("local")
    spec = svc.get_spec_template("tao-train-dino", "train")
    tao = {c.name: c for c in local.host_checks(engines.get_engine("tao"), sk.info, "train", spec)}
    assert tao["host.hardware.gpus"].severity == "error" and "1 GPU" in tao["host.hardware.gpus"].message
    nv = svc.catalog.get("tao-train-nvdinov2").info
    fake = engines.BuiltinEngine()
    monkeypatch.setattr(
        fake,
        "requirements",
        lambda info, action: engines.EngineRequirements(
            check_name="x", what="x", fix="x", hardware=info.hardware, hardware_severity="warning"
        ),
    )
    checks = {c.name: c for c in local.host_checks(fake, nv, "train", {"train": {"precision": "32-true"}})}
    assert checks["host.hardware.gpus"].severity == "warning" and "minimum is 4 GPU" in checks["host.hardware.gpus"].message


@pytest.mark.torch  # places the job on the built-in engine, which needs the engine extra
def test_placement_prefers_an_engine_that_implements_the_action(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    info = Service().catalog.get("tao-train-mask-auto-encoder").info
    # TensorRT engine building: only TAO's deploy container implements it
    where = placement.place(info, "deploy_gen_trt_engine", platform="local")
    assert not where.runs_here and "TAO container" in where.next
    assert placement.place(info, "train", platform="local").engine == "builtin"  # the built-in MAE engine
    with pytest.raises(NotSupported) as exc:
        placement.require(info, "deploy_gen_trt_engine", engine=None, platform="local")
    assert exc.value.fix == where.next


def test_list_jobs_polls_once_per_platform(tmp_path, monkeypatch):
    from taoskills.jobs.store import JobRecord

    calls = []

    class Counting(DummyPlatform):
        name = "countplat"

        def poll(self, record):
            raise AssertionError("list_jobs must use poll_many")

        def poll_many(self, records):
            records = list(records)
            calls.append(sorted(r.job_id for r in records))
            return {r.job_id: PlatformState(state="RUNNING") for r in records}

        def artifacts(self, record):
            return platforms.get_platform("local").artifacts(record)

    platforms.register("countplat", Counting)
    try:
        svc = Service(home=tmp_path / "home")
        for i in range(3):
            svc.store.create(
                JobRecord(
                    job_id=f"job-{i}",
                    skill="tao-train-nvdinov2",
                    network_arch="nvdinov2",
                    action="train",
                    platform="countplat",
                    engine="builtin",
                    status="RUNNING",
                    spec={},
                    results_dir=str(tmp_path / f"r{i}"),
                    workdir=str(tmp_path / f"w{i}"),
                    log_path=str(tmp_path / f"w{i}" / "log.txt"),
                )
            )
        jobs = svc.list_jobs()
        assert calls == [["job-0", "job-1", "job-2"]] and {j.status for j in jobs} == {"RUNNING"}
    finally:
        platforms.unregister("countplat")


def test_status_read_through_an_artifact_reader(tmp_path):
    """monitor.progress_from reads status lines from a platform's reader (here: a dict, as object storage would)."""
    from taoskills.jobs import monitor

    blobs = {
        "train/status.json": b'{"status": "STARTED", "message": "Starting"}\n{"status": "RUNNING", "epoch": 1, "max_epoch": 3, "kpi": {"train_loss": 2.5}}\n'
    }
    s = monitor.progress_from(blobs.get, "train")
    assert s.exists and s.epoch == 1 and s.max_epoch == 3 and s.kpis == {"train_loss": 2.5}
    assert not monitor.progress_from(blobs.get, "export").exists
    root = {"status.json": b'{"status": "SUCCESS"}\n'}
    assert monitor.progress_from(root.get, "export").finished


def test_local_platform_refuses_remote_inputs_and_owns_the_policy(tmp_path):
    local = platforms.get_platform("local")
    [check] = local.check_input("dataset.train_dataset.images_dir", "s3://bucket/images")
    assert not check.ok and check.name == "remote_input" and "local" in check.message and check.fix
    assert all(c.ok for c in DummyPlatform().check_input("dataset.train_dataset.images_dir", "s3://bucket/images"))


def test_tao_engine_runner_uses_the_skill_command_and_multi_gpu_env(tmp_path, monkeypatch):
    """With the TAO entrypoint on PATH, auto picks it over the built-in engine for DINO: the runner runs the
    skill's ``command`` with TAO's multi-GPU environment (one node on the local platform)."""
    tool = tmp_path / "bin" / "dino"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}:/usr/bin:/bin")
    svc = Service(home=tmp_path / "home")
    spec = svc.get_spec_template("tao-train-dino", "train")
    spec["train"]["num_gpus"] = 2
    where = svc.get_skill("tao-train-dino").runs_here["train"]
    assert where.runs_here and where.engine == "tao" and where.platform == "local"
    result = svc.render_runner("tao-train-dino", "train", spec)
    assert result.engine == "tao"
    assert "dino train -e " in result.script
    assert "export NUM_GPU_PER_NODE=2" in result.script and "export WORLD_SIZE=1" in result.script
