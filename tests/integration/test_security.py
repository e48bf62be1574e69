"""Security layer: redaction, input guards, minimal job env, launch checks, RE2 grep, store
damage recovery, planted canaries end to end, concurrency of the MCP server, JSON-RPC
robustness over stdio and the HTTP guard (bearer auth, per-client session caps)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from mcp import Client

from taoskills.errors import JobError, PreflightError, SpecError
from taoskills.jobs.store import JobRecord, JobStore
from taoskills.security import env as job_env
from taoskills.security import inputs, launch
from taoskills.security.grep import compile_grep
from taoskills.security.redact import REDACTED, is_secret_env_name, redact, redact_text
from taoskills.security.transport import HttpGuard, screen_line

SKILL = "tao-train-nvdinov2"
CANARIES = {
    "AWS_SECRET_ACCESS_KEY": "CANARY-aws-secret-5d1e0b7f",
    "NGC_API_KEY": "CANARY-ngc-key-99ab21c3",
    "HF_TOKEN": "CANARY-hf-token-77c0ffee",
    "MY_DB_PASSWORD": "CANARY-db-password-1234abcd",
}
ARG_CANARY = "CANARY-argument-secret-4f4f4f4f"


# ----------------------------------------------------------------------------- redaction


def test_secret_env_names_follow_the_patterns():
    for name in ("AWS_SECRET_ACCESS_KEY", "NGC_API_KEY", "HF_TOKEN", "TAO_ENCRYPTION_KEY", "X_SECRET_Y", "DB_PASSWORD"):
        assert is_secret_env_name(name), name
    for name in ("PATH", "HOME", "AWS_DEFAULT_REGION", "CUDA_VISIBLE_DEVICES", "KEYBOARD"):
        assert not is_secret_env_name(name), name


def test_redact_scrubs_values_urls_key_ids_and_secret_keys():
    vals = ["supersecretvalue"]
    text = "x supersecretvalue y https://bob:pw@host/p s3://AKIAABCDEFGHIJKLMNOP:zz@bucket AKIAABCDEFGHIJKLMNOP"
    out = redact_text(text, vals)
    assert "supersecretvalue" not in out and "bob" not in out and ":pw@" not in out and "AKIA" not in out
    assert "https://<redacted>@host/p" in out
    obj = {"encryption_key": "literal", "spec": {"api_key": "${oc.env:NGC_API_KEY}", "msg": ["supersecretvalue"]}}
    got = redact(obj, vals)
    assert got == {"encryption_key": REDACTED, "spec": {"api_key": "${oc.env:NGC_API_KEY}", "msg": [REDACTED]}}
    assert redact_text("short 1 true", ["1"]) == "short 1 true"  # values under 6 characters are not scrubbed


def test_secret_values_follow_every_change_of_the_environment(monkeypatch):
    """The remembered answer for os.environ is keyed on its raw items: set, change, delete."""
    from taoskills.security.redact import secret_values

    monkeypatch.setenv("MY_SERVICE_TOKEN", "first-secret-value")
    assert "first-secret-value" in secret_values()
    assert redact_text("a first-secret-value b") == f"a {REDACTED} b"
    monkeypatch.setenv("MY_SERVICE_TOKEN", "second-secret-value")
    now = secret_values()
    assert "second-secret-value" in now and "first-secret-value" not in now
    monkeypatch.delenv("MY_SERVICE_TOKEN")
    assert "second-secret-value" not in secret_values()
    assert secret_values({"MY_SERVICE_TOKEN": "explicit-mapping"}) == ("explicit-mapping",)


# ----------------------------------------------------------------------------- input guards


@pytest.mark.parametrize(
    "request_, field",
    [
        (
            {"overrides": {"model.backbone.student_type": "${oc.env:AWS_SECRET_ACCESS_KEY}"}},
            "overrides.model.backbone.student_type",
        ),
        ({"pretrained_model": "${oc.env:HF_TOKEN}"}, "pretrained_model"),
        ({"overrides": {"encryption_key": "${oc.env:HOME}"}}, "overrides.encryption_key"),
        ({"overrides": {"encryption_key": ARG_CANARY}}, "overrides.encryption_key"),
        ({"overrides": {"train.num_epochs": 1e30}}, "overrides.train.num_epochs"),
        ({"overrides": {"train.num_epochs": float("nan")}}, "overrides.train.num_epochs"),
        ({"overrides": {"model.name": "a\x00b"}}, "overrides.model.name"),
        ({"data_sources": {"train_datasets": f"s3://AKIAABCDEFGHIJKLMNOP:{ARG_CANARY}@bucket/x"}}, "data_sources.train_datasets"),
        ({"data_sources": {"train_datasets": "x" * 5000}}, "data_sources.train_datasets"),
        ({"request_text": "a" * 20000}, "request_text"),
    ],
)
def test_check_request_refuses_hostile_values_without_echoing_them(request_, field):
    with pytest.raises(SpecError) as err:
        inputs.check_request(request_)
    assert err.value.field == field and err.value.fix
    text = json.dumps(err.value.as_dict())
    assert ARG_CANARY not in text and "AKIA" not in text


def test_check_request_accepts_what_tao_reads_by_name():
    inputs.check_request({"overrides": {"encryption_key": "${oc.env:TAO_ENCRYPTION_KEY}", "train.num_epochs": 5}})
    inputs.check_request({"overrides": {"encryption_key": "tlt_encode"}, "data_sources": {"train_datasets": "/data/x"}})
    schema = {"properties": {"train": {"properties": {"clip": {"type": "float", "default": float("inf")}}}}}
    inputs.check_request({"overrides": {"train.clip": float("inf")}}, schema=schema)  # the schema's default is inf
    with pytest.raises(SpecError):
        inputs.check_request({"overrides": {"train.other": float("inf")}}, schema=schema)


# ----------------------------------------------------------------------------- minimal env


def test_job_env_is_an_allowlist_plus_named_secrets():
    environ = {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_API_KEY": "s1", **CANARIES}
    environ["TAO_ENCRYPTION_KEY"] = "enc-secret"
    environ["RANDOM_SETTING"] = "x"
    env = job_env.job_env(job_env.secret_names_in({"k": "${oc.env:HF_TOKEN}"}), environ=environ, extra={"MY_TOKEN": "t"})
    assert env == {
        "PATH": "/bin",
        "HOME": "/h",
        "LC_ALL": "C",
        "NVIDIA_VISIBLE_DEVICES": "all",
        "HF_TOKEN": CANARIES["HF_TOKEN"],
        "TAO_ENCRYPTION_KEY": "enc-secret",
        "TAO_SKILLS_KEEP_CHECKPOINTS": "1",  # the runtime's default retention (keep the newest save)
    }


# ----------------------------------------------------------------------------- engine


def test_engine_resolves_oc_env_only_for_encryption_key(tmp_path, monkeypatch):
    from taoskills.engine.spec import load_spec

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARIES["AWS_SECRET_ACCESS_KEY"])
    spec = tmp_path / "spec.yaml"
    spec.write_text("model:\n  name: ${oc.env:AWS_SECRET_ACCESS_KEY}\n")
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert err.value.field == "model.name" and CANARIES["AWS_SECRET_ACCESS_KEY"] not in str(err.value)
    spec.write_text("train:\n  num_epochs: 1\n")
    with pytest.raises(SpecError) as err:
        load_spec(spec, ["train.num_epochs=${oc.env:AWS_SECRET_ACCESS_KEY}"])
    assert CANARIES["AWS_SECRET_ACCESS_KEY"] not in str(err.value)
    monkeypatch.setenv("TAO_ENCRYPTION_KEY", "enc-value-123")
    spec.write_text("encryption_key: ${oc.env:TAO_ENCRYPTION_KEY,tlt_encode}\n")
    resolved, _raw = load_spec(spec)
    assert resolved["encryption_key"] == "enc-value-123"


# ----------------------------------------------------------------------------- launch checks


def _torch_zip(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
    return path


def test_checkpoint_header_checks(tmp_path):
    torch = pytest.importorskip("torch")
    real = tmp_path / "student.pth"
    torch.save({"embeddings.patch_embeddings.projection.weight": torch.zeros(2)}, real)
    launch.check_checkpoint_file(str(real), "train.pretrained_model_path", "nvdinov2")
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2)}, other)
    bad = {
        "missing": str(tmp_path / "nope.pth"),
        "folder": str(tmp_path),
        "text": str(tmp_path / "passwd"),
        "zip-no-pkl": str(tmp_path / "x.zip"),
        "other-network": str(other),
    }
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
        zf.writestr("a.txt", "x")
    for why, value in bad.items():
        with pytest.raises(SpecError) as err:
            launch.check_checkpoint_file(value, "train.pretrained_model_path", "nvdinov2")
        assert err.value.field == "train.pretrained_model_path" and err.value.fix, why
    launch.check_checkpoint_file(str(_torch_zip(tmp_path / "z.pth", b"\x80\x02embeddings.")), "k", "nvdinov2")
    launch.check_checkpoints({"train": {"pretrained_model_path": str(real), "resume_training_checkpoint_path": ""}}, "nvdinov2")


def test_one_job_per_resume_source(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    store.create(JobRecord(job_id="job-src", skill=SKILL, action="train", status="RUNNING"))
    with pytest.raises(PreflightError, match="still RUNNING"):
        launch.check_resume_source(store, "job-src")
    store.update_status("job-src", "COMPLETE")
    launch.check_resume_source(store, "job-src")
    store.create(JobRecord(job_id="job-r1", skill=SKILL, action="train", status="RUNNING", labels={"resume_job_id": "job-src"}))
    with pytest.raises(PreflightError, match="already resuming"):
        launch.check_resume_source(store, "job-src")


# ----------------------------------------------------------------------------- grep


def test_grep_is_linear_time_and_refuses_backreferences(tmp_path):
    from taoskills.platforms.base import read_log

    log = tmp_path / "log.txt"
    log.write_text(("a" * 4000 + "\n") * 2000 + "epoch 3 loss 0.1\n")
    t = time.perf_counter()
    assert read_log(log, grep="(.|.)*XYZ") == ""
    assert read_log(log, grep="(a|aa)*$b") == ""
    assert time.perf_counter() - t < 5.0  # python re would need longer than the age of the universe
    assert read_log(log, grep=r"loss \d") == "epoch 3 loss 0.1"
    with pytest.raises(JobError) as err:
        compile_grep(r"(a)\1")
    assert err.value.field == "grep" and "backreference" in err.value.fix


# ----------------------------------------------------------------------------- store damage


def _seed_store(home: Path, n: int = 3) -> list[str]:
    store = JobStore(home / "jobs.db")
    ids = []
    for i in range(n):
        wd = home / "jobs" / f"job-seed{i:08d}"
        wd.mkdir(parents=True)
        rec = JobRecord(
            job_id=f"job-seed{i:08d}", skill=SKILL, action="train", workdir=str(wd), spec={"pad": "x" * 3000}, status="COMPLETE"
        )
        store.create(rec)
        ids.append(rec.job_id)
    store.close()
    return ids


def _truncate(p: Path) -> None:
    p.write_bytes(b"")


def _bad_header(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[:16] = b"NOT A DATABASE!!"
    p.write_bytes(bytes(data))


def _damage_pages(p: Path) -> None:
    data = bytearray(p.read_bytes())
    page = 4096
    assert len(data) > 3 * page
    data[page : 3 * page] = os.urandom(2 * page)
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _bad_header, _damage_pages], ids=["truncated", "bad-header", "damaged-pages"])
def test_damaged_store_is_moved_aside_and_rebuilt(tmp_path, damage, caplog):
    home = tmp_path / "home"
    ids = _seed_store(home)
    assert all((home / "jobs" / i / "job.json").is_file() for i in ids)
    damage(home / "jobs.db")
    with caplog.at_level("WARNING", logger="taoskills.jobs"):
        store = JobStore(home / "jobs.db")
    assert (
        store.recovery_message and "moved it aside" in store.recovery_message and "3 job(s) recovered" in store.recovery_message
    )
    assert any("moved it aside" in r.message for r in caplog.records)
    assert sorted(r.job_id for r in store.list(limit=None)) == ids
    assert list(home.glob("jobs.db.damaged-*"))  # kept for inspection, never deleted
    with sqlite3.connect(home / "jobs.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()
    assert JobStore(home / "jobs.db").recovery_message is None  # healthy now


def test_missing_store_is_rebuilt_from_job_folders(tmp_path):
    home = tmp_path / "home"
    ids = _seed_store(home, 2)
    for p in home.glob("jobs.db*"):
        p.unlink()
    store = JobStore(home / "jobs.db")
    assert "missing" in store.recovery_message
    assert sorted(r.job_id for r in store.list(limit=None)) == ids


# ----------------------------------------------------------------------------- planted canaries


FAKE_ENGINE = r"""
import json, os, pathlib, sys
spec = sys.argv[1]
results = pathlib.Path(os.environ["FAKE_RESULTS"]) / "train"
results.mkdir(parents=True, exist_ok=True)
env = dict(os.environ)
print("engine env:", json.dumps(env))
(results / "results.json").write_text(json.dumps({"env": env, "spec": open(spec).read()}))
(results / "status.json").write_text(json.dumps({"status": "FAILURE", "verbosity": "ERROR",
    "message": "engine saw " + " ".join(f"{k}={v}" for k, v in env.items())}) + "\n")
sys.exit(1)
"""


@pytest.mark.torch  # places the job on the built-in engine, which needs the engine extra
def test_planted_canaries_never_leave_the_server(tmp_path, monkeypatch):
    """Canary secrets in the server's environment and in tool arguments; a job whose engine
    dumps its whole environment. Every MCP reply, CLI output, job record, rendered script,
    spec, log and results file is scanned: 0 hits."""
    from engine_settings import TINY_TRAIN_OVERRIDES
    from taoskills.data.sample_data import write_sample_images
    from taoskills.service import Service
    from taoskills.surfaces.mcp import build_server

    for k, v in CANARIES.items():
        monkeypatch.setenv(k, v)
    data = tmp_path / "data"
    write_sample_images(data / "images_train", n=4)
    home = tmp_path / "home"
    monkeypatch.setenv("TAO_SKILLS_HOME", str(home))
    engine = tmp_path / "fake_engine.py"
    engine.write_text(FAKE_ENGINE)
    svc = Service(home=home)
    original = svc._runner_context

    def fake_context(sk, action, spec, eng, platform, job_id, workdir):
        ctx = original(sk, action, spec, eng, platform, job_id, workdir)
        return ctx.model_copy(
            update={"command": [sys.executable, str(engine), ctx.spec_path], "env": {**ctx.env, "FAKE_RESULTS": ctx.results_dir}}
        )

    monkeypatch.setattr(svc, "_runner_context", fake_context)
    replies: list[str] = []
    hostile_args = [
        ("build_spec", {"skill": SKILL, "action": "train", "overrides": {"encryption_key": ARG_CANARY}}),
        ("build_spec", {"skill": SKILL, "action": "train", "data_sources": {"train_datasets": f"s3://u:{ARG_CANARY}@b/x"}}),
        ("build_spec", {"skill": SKILL, "action": "train", "overrides": {"model.name": "${oc.env:NGC_API_KEY}"}}),
        ("route_request", {"text": f"train nvdinov2 with key {CANARIES['HF_TOKEN']} https://me:{ARG_CANARY}@h/x"}),
        ("validate_spec", {"skill": SKILL, "action": "train", "spec": {"encryption_key": ARG_CANARY}}),
        (
            "render_runner",
            {"skill": SKILL, "action": "train", "spec": {"results_dir": "/tmp/r", "train": {"api_key": ARG_CANARY}}},
        ),
    ]

    async def scenario() -> str:
        async with Client(build_server(svc)) as client:
            for tool, args in hostile_args:
                res = await client.call_tool(tool, args)
                replies.append(json.dumps([c.model_dump() for c in res.content]) + json.dumps(res.structured_content))
            res = await client.call_tool(
                "launch_job",
                {
                    "skill": SKILL,
                    "action": "train",
                    "automl_policy": "off",
                    "profile": "smoke",
                    "data_sources": {"train_datasets": str(data)},
                    "overrides": dict(TINY_TRAIN_OVERRIDES),
                },
            )
            assert not res.is_error, res.content[0].text
            job_id = res.structured_content["job_id"]
            for _ in range(200):
                st = await client.call_tool("job_status", {"job_id": job_id})
                replies.append(json.dumps(st.structured_content))
                if st.structured_content["status"] in ("COMPLETE", "ERROR", "CANCELED"):
                    break
                await asyncio.sleep(0.1)
            assert st.structured_content["status"] == "ERROR"
            for tool, args in [
                ("job_logs", {"job_id": job_id}),
                ("list_jobs", {}),
                ("job_logs", {"job_id": job_id, "grep": "env"}),
            ]:
                res = await client.call_tool(tool, args)
                replies.append(json.dumps(res.structured_content))
            return job_id

    job_id = asyncio.run(scenario())
    cli = subprocess.run(
        [sys.executable, "-m", "taoskills.surfaces.cli", "jobs", "status", job_id, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
    )
    cli_logs = subprocess.run(
        [sys.executable, "-m", "taoskills.surfaces.cli", "jobs", "logs", job_id], capture_output=True, text=True, timeout=120
    )
    assert cli.returncode == 0, cli.stderr
    log_text = (home / "jobs" / job_id / "log.txt").read_text()
    assert "engine env:" in log_text and "PATH" in log_text  # the fake engine did dump its environment
    secrets = [*CANARIES.values(), ARG_CANARY]
    scanned = {"mcp replies": "\n".join(replies), "cli": cli.stdout + cli.stderr + cli_logs.stdout + cli_logs.stderr}
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "run.sh" for p in files) and any(p.name == "spec.yaml" for p in files)
    assert any(p.name == "job.json" for p in files) and any(p.name == "results.json" for p in files)
    for p in files:
        scanned[str(p.relative_to(home))] = p.read_bytes().decode("utf-8", "replace")
    hits = [(where, s[:12]) for where, text in scanned.items() for s in secrets if s in text]
    print(f"\nplanted canaries: {len(secrets)} secrets, {len(scanned)} sources scanned, {len(hits)} hits")
    assert hits == []


# ----------------------------------------------------------------------------- concurrency


def test_ping_stays_responsive_during_a_pathological_grep_and_a_huge_route(tmp_path):
    from taoskills.service import Service
    from taoskills.surfaces.mcp import build_server

    home = tmp_path / "home"
    svc = Service(home=home)
    wd = home / "jobs" / "job-biglog00001"
    wd.mkdir(parents=True)
    line = "x" * 1000 + "\n"
    (wd / "log.txt").write_text(line * 8000)  # 8 MB
    svc.store.create(
        JobRecord(job_id="job-biglog00001", skill=SKILL, action="train", status="COMPLETE", log_path=str(wd / "log.txt"))
    )

    async def timed_ping(client) -> float:
        t = time.perf_counter()
        res = await client.call_tool("ping", {})
        assert not res.is_error
        return time.perf_counter() - t

    async def scenario():
        async with Client(build_server(svc)) as client:
            await timed_ping(client)
            usual = sorted([await timed_ping(client) for _ in range(20)])[10]
            heavy = [
                asyncio.create_task(client.call_tool("job_logs", {"job_id": "job-biglog00001", "grep": "(.|.)*XYZ"})),
                asyncio.create_task(client.call_tool("job_logs", {"job_id": "job-biglog00001", "grep": "(x+x+)+y"})),
                asyncio.create_task(client.call_tool("route_request", {"text": "train nvdinov2 on my photos " * 40000})),
            ]
            during = []
            while not all(t.done() for t in heavy) or len(during) < 5:
                during.append(await timed_ping(client))
            results = [t.result() for t in heavy]
            return usual, during, results

    # A frozen server fails every attempt; up to 3 attempts absorb a scheduler stall of the
    # shared CI host (the one timing assertion issue 6 asks for).
    for _attempt in range(3):
        usual, during, results = asyncio.run(scenario())
        assert all(not r.is_error for r in results[:2])  # the greps answered (no match), no timeout
        assert results[2].is_error and "limit" in results[2].content[0].text  # 1 MB of text: refused by the size cap
        print(f"\nping usual {usual * 1000:.1f} ms, worst during heavy calls {max(during) * 1000:.1f} ms ({len(during)} pings)")
        if max(during) <= usual + 0.100:
            break
    assert max(during) <= usual + 0.100, f"ping took {max(during):.3f} s during heavy calls (usual {usual:.4f} s), 3 attempts"


# ----------------------------------------------------------------------------- protocol robustness


def _stdio_exchange(home: Path, lines: list[str], module: list[str]) -> list[dict]:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    msgs = [json.dumps(init), json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), *lines]
    msgs.append(json.dumps({"jsonrpc": "2.0", "id": 99, "method": "ping"}))
    proc = subprocess.Popen(
        [sys.executable, *module],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TAO_SKILLS_HOME": str(home)},
    )
    replies: list[dict] = []
    try:
        for m in msgs:
            proc.stdin.write(m.encode() + b"\n")
            proc.stdin.flush()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            raw = proc.stdout.readline()
            if not raw:
                break
            replies.append(json.loads(raw))
            if replies[-1].get("id") == 99:
                break
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()
    return replies


BAD_LINES = [
    "not json",
    '[{"jsonrpc": "2.0", "id": 2, "method": "ping"}]',
    '{"jsonrpc": "2.0", "id": 3}',
    "[" * 100000 + "]" * 100000,
    json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {
                "name": "ping",
                "arguments": {
                    "a": [
                        [
                            [
                                [
                                    [
                                        [
                                            [
                                                [
                                                    [
                                                        [
                                                            [
                                                                [
                                                                    [
                                                                        [
                                                                            [
                                                                                [
                                                                                    [
                                                                                        [
                                                                                            [
                                                                                                [
                                                                                                    [
                                                                                                        [
                                                                                                            [
                                                                                                                [
                                                                                                                    [
                                                                                                                        [
                                                                                                                            [
                                                                                                                                [
                                                                                                                                    [
                                                                                                                                        [
                                                                                                                                            [
                                                                                                                                                [
                                                                                                                                                    [
                                                                                                                                                        [
                                                                                                                                                            [
                                                                                                                                                                [
                                                                                                                                                                    [
                                                                                                                                                                        [
                                                                                                                                                                            [
                                                                                                                                                                                [
                                                                                                                                                                                    [
                                                                                                                                                                                        [
                                                                                                                                                                                            [
                                                                                                                                                                                                [
                                                                                                                                                                                                    [
                                                                                                                                                                                                        [
                                                                                                                                                                                                            [
                                                                                                                                                                                                                [
                                                                                                                                                                                                                    [
                                                                                                                                                                                                                        [
                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                                                                    []
                                                                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                ]
                                                                                                                                                                                                            ]
                                                                                                                                                                                                        ]
                                                                                                                                                                                                    ]
                                                                                                                                                                                                ]
                                                                                                                                                                                            ]
                                                                                                                                                                                        ]
                                                                                                                                                                                    ]
                                                                                                                                                                                ]
                                                                                                                                                                            ]
                                                                                                                                                                        ]
                                                                                                                                                                    ]
                                                                                                                                                                ]
                                                                                                                                                            ]
                                                                                                                                                        ]
                                                                                                                                                    ]
                                                                                                                                                ]
                                                                                                                                            ]
                                                                                                                                        ]
                                                                                                                                    ]
                                                                                                                                ]
                                                                                                                            ]
                                                                                                                        ]
                                                                                                                    ]
                                                                                                                ]
                                                                                                            ]
                                                                                                        ]
                                                                                                    ]
                                                                                                ]
                                                                                            ]
                                                                                        ]
                                                                                    ]
                                                                                ]
                                                                            ]
                                                                        ]
                                                                    ]
                                                                ]
                                                            ]
                                                        ]
                                                    ]
                                                ]
                                            ]
                                        ]
                                    ]
                                ]
                            ]
                        ]
                    ]
                },
            },
        }
    ),
    '"just a string"',
]


def test_malformed_json_rpc_over_stdio_gets_json_rpc_errors(tmp_path):
    replies = _stdio_exchange(tmp_path / "home", BAD_LINES, ["-m", "taoskills.surfaces.mcp"])
    errors = [r for r in replies if "error" in r]
    codes = [r["error"]["code"] for r in errors]
    assert codes == [-32700, -32600, -32600, -32600, -32600, -32600], replies
    assert [r["id"] for r in errors] == [None, None, 3, None, 4, None]
    assert replies[-1] == {"jsonrpc": "2.0", "id": 99, "result": {}}  # still serving


_SDK_STDIO = """
import sys
from taoskills.service import Service
from taoskills.surfaces.mcp import build_server
build_server(Service()).run("stdio")  # the SDK's own stdio transport, no screening
"""


def test_the_sdk_stdio_transport_drops_malformed_lines_silently(tmp_path):
    """Why :mod:`taoskills.security.transport` exists: mcp 2.3.0's stdio transport answers none
    of the bad lines (the cause is inside the SDK; we work around it at the transport edge).
    When this test fails the SDK has been fixed and the workaround may go."""
    replies = _stdio_exchange(tmp_path / "home", BAD_LINES, ["-c", _SDK_STDIO])
    assert [r for r in replies if "error" in r] == []
    assert replies[-1]["id"] == 99


def test_screen_line_passes_good_messages_and_ignores_bad_notifications():
    msg, err = screen_line('{"jsonrpc": "2.0", "id": 7, "method": "ping"}')
    assert err is None and msg is not None
    assert screen_line('{"jsonrpc": "2.0", "method": 5}') == (None, None)  # a notification gets no reply
    assert screen_line("   ") == (None, None)


# ----------------------------------------------------------------------------- HTTP guard


def _asgi_call(app, method="POST", headers=(), client="10.0.0.1"):
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/mcp", "headers": list(headers), "client": (client, 1234)}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], sent[0].get("headers", []), b"".join(m.get("body", b"") for m in sent[1:])


def _fake_mcp_app():
    counter = iter(range(10**6))

    async def app(scope, receive, send):
        headers = [(b"content-type", b"application/json")]
        if not any(k == b"mcp-session-id" for k, _ in scope["headers"]):
            headers.append((b"mcp-session-id", f"s{next(counter)}".encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def test_http_bearer_auth_is_constant_time_and_required():
    app = HttpGuard(_fake_mcp_app(), token="tok-123456")
    status, headers, body = _asgi_call(app)
    assert status == 401 and json.loads(body)["error"]["message"].startswith("unauthorized")
    assert _asgi_call(app, headers=[(b"authorization", b"Bearer wrong")])[0] == 401
    assert _asgi_call(app, headers=[(b"authorization", b"Bearer tok-123456")])[0] == 200


def test_http_sessions_are_capped_per_client_with_idle_expiry():
    app = HttpGuard(_fake_mcp_app(), max_sessions_per_client=3, idle_s=0.3)
    assert [_asgi_call(app)[0] for _ in range(3)] == [200, 200, 200]
    status, _h, body = _asgi_call(app)
    assert status == 429 and "too many open MCP sessions" in json.loads(body)["error"]["message"]
    assert _asgi_call(app, client="10.0.0.2")[0] == 200  # another client is not locked out
    assert _asgi_call(app, headers=[(b"mcp-session-id", b"s0")])[0] == 200  # existing sessions still work
    _asgi_call(app, method="DELETE", headers=[(b"mcp-session-id", b"s1")])
    assert _asgi_call(app)[0] == 200  # a closed session frees a slot
    time.sleep(0.35)
    assert [_asgi_call(app)[0] for _ in range(3)] == [200, 200, 200]  # idle ones expired


def test_http_refuses_a_named_but_unset_token_variable(monkeypatch):
    from taoskills.surfaces.mcp import run

    monkeypatch.delenv("TS_NO_SUCH_TOKEN", raising=False)
    with pytest.raises(ValueError, match="TS_NO_SUCH_TOKEN"):
        run("streamable-http", auth_token_env="TS_NO_SUCH_TOKEN")


def test_tool_calls_run_concurrently_and_have_a_time_limit(tmp_path, monkeypatch):
    import taoskills.surfaces.mcp as mcp_mod
    from taoskills.service import Service

    class Slow(Service):
        def list_skills(self):
            time.sleep(0.6)
            return super().list_skills()

        def get_skill(self, name):
            time.sleep(3.0)
            return super().get_skill(name)

    monkeypatch.setattr(mcp_mod, "TOOL_TIMEOUT_S", 1.0)
    svc = Slow(home=tmp_path / "home")

    async def scenario():
        async with Client(mcp_mod.build_server(svc)) as client:
            t = time.perf_counter()
            res = await asyncio.gather(*[client.call_tool("list_skills", {}) for _ in range(4)])
            together = time.perf_counter() - t
            assert all(not r.is_error for r in res)
            t = time.perf_counter()
            slow = await client.call_tool("get_skill", {"name": SKILL})
            waited = time.perf_counter() - t
            return together, slow, waited

    together, slow, waited = asyncio.run(scenario())
    assert together < 4 * 0.6  # four 0.6 s calls overlapped instead of queueing on one worker
    payload = json.loads(slow.content[0].text)
    assert slow.is_error and payload["error"] == "timeout" and payload["fix"]
    assert waited < 2.5


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_post(port: int, body: str, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    import urllib.error
    import urllib.request

    h = {"content-type": "application/json", "accept": "application/json, text/event-stream", **headers}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=body.encode(), headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_http_server_requires_the_bearer_token_and_answers_malformed_json_rpc(tmp_path):
    """The real server over HTTP: bearer auth from a named env var, then malformed JSON,
    a batch and deep nesting each get a JSON-RPC error (the SDK's HTTP transport does this
    itself; only its stdio transport needed the workaround)."""
    port = _free_port()
    env = {**os.environ, "TAO_SKILLS_HOME": str(tmp_path / "home"), "TS_HTTP_TOKEN": "tok-abcdef123456"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "taoskills.surfaces.mcp", "--transport", "streamable-http", "--port", str(port)]
        + ["--auth-token-env", "TS_HTTP_TOKEN", "--max-sessions-per-client", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    init = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        }
    )
    auth = {"authorization": "Bearer tok-abcdef123456"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _h, _b = _http_post(port, init, {})
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.3)
        assert status == 401
        status, headers, _b = _http_post(port, init, auth)
        assert status == 200
        sid = {k.lower(): v for k, v in headers.items()}["mcp-session-id"]
        for body in ["not json", '[{"jsonrpc": "2.0", "id": 2, "method": "ping"}]', "[" * 100000 + "]" * 100000]:
            status, _h, raw = _http_post(port, body, {**auth, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"})
            assert status == 400 and json.loads(raw)["error"]["code"] in (-32700, -32600, -32602)
        assert _http_post(port, init, auth)[0] == 200  # second session of this client
        status, _h, raw = _http_post(port, init, auth)  # third: over the per-client cap
        assert status == 429 and "too many open MCP sessions" in json.loads(raw)["error"]["message"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_store_damaged_while_in_use_answers_a_clear_error(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    store.create(JobRecord(job_id="job-a", skill=SKILL, action="train"))

    class Broken:
        def execute(self, *a, **k):
            raise sqlite3.DatabaseError("database disk image is malformed")

    store._conn = Broken()  # what a connection does when pages go bad under it
    for op in (lambda: store.get("job-a"), lambda: store.list(), lambda: store.update_status("job-a", "RUNNING")):
        with pytest.raises(JobError) as err:
            op()
        assert "may be damaged" in err.value.message and "rebuilt" in err.value.fix
    store._conn = None
