"""Hostile-input suite: generated MCP calls over every tool (in-process MCP client).

Each tool gets a base argument set; every argument is then replaced, one at a time, by
each value of a hostile corpus (wrong types, huge strings, NUL/control/bidi characters,
path traversal, shell metacharacters, ``${oc.env:...}`` interpolations, NaN/Infinity,
deep nesting, unknown ids), and spec-valued arguments also get hostile spec dicts. A
second group mutates an otherwise launchable ``launch_job`` (real images) with one hostile
override each. Expected: 0 crashes (the call raises or the session dies), 0 internal
errors, every error reply JSON with message and fix, 0 launches from invalid input (job
folders and store records counted), 0 injected commands (a canary file that shell
metacharacters would create), 0 secret canaries in any reply. The counts are printed.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from mcp import Client

from engine_settings import TINY_TRAIN_OVERRIDES
from taoskills.jobs.store import JobRecord
from taoskills.service import Service
from taoskills.surfaces.mcp import build_server

SKILL = "tao-train-nvdinov2"
SECRET = "CANARYSECRET-hostile-7f3a9c"


def _corpus(canary: Path) -> list:
    deep_list: list = []
    cur = deep_list
    for _ in range(200):
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    deep_dict: dict = {}
    d = deep_dict
    for _ in range(200):
        d["k"] = {}
        d = d["k"]
    return [
        None,
        0,
        -1,
        2**63,
        1e308,
        True,
        [],
        {},
        [1, "a"],
        {"a": 1},
        "",
        " ",
        "A" * 1_000_000,
        "a\x00b",
        "\x1b[31mred\x07",
        "\u202etxt.exe",
        "😀" * 64,
        "../../../../etc/passwd",
        "/etc/passwd",
        "/dev/zero",
        "~root/.ssh/id_rsa",
        f"; touch {canary}",
        f"$(touch {canary})",
        f"`touch {canary}`",
        f"| touch {canary}",
        f"&& touch {canary} #",
        f'\'"; touch {canary}; echo "',
        "${oc.env:AWS_SECRET_ACCESS_KEY}",
        "${oc.env:HOSTILE_CANARY_TOKEN}",
        "${oc.decode:'1'}",
        f"s3://AKIAABCDEFGHIJKLMNOP:{SECRET}@bucket/data",
        f"https://user:{SECRET}@example.com/x",
        float("nan"),
        float("inf"),
        float("-inf"),
        deep_list,
        deep_dict,
        "job-000000000000",
        "job-../../x",
        "(.|.)*XYZ",
        "[",
        "(a)\\1",
    ]


def _spec_dicts(canary: Path) -> list[dict]:
    return [
        {"train.num_epochs": 1e30},
        {"train.num_epochs": float("nan")},
        {"train.num_epochs": -5},
        {"model.backbone.student_type": "${oc.env:AWS_SECRET_ACCESS_KEY}"},
        {"train.pretrained_model_path": "${oc.env:HOSTILE_CANARY_TOKEN}"},
        {"train.pretrained_model_path": "/etc/passwd"},
        {"encryption_key": SECRET},
        {"encryption_key": "${oc.env:HOME}"},
        {"results_dir": f"; touch {canary}"},
        {"results_dir": f"$(touch {canary})"},
        {"dataset.train_dataset.images_dir": f"s3://AKIAABCDEFGHIJKLMNOP:{SECRET}@bucket"},
        {"a\x00b": 1},
        {"train": {"num_epochs": {"x": [1, {"y": "${oc.env:PATH}"}]}}},
        {"k" * 300: 1},
        {"model.name": "x\x00y"},
        {"no.such.key": 1},
    ]


def _base_args(job_id: str, data: Path) -> dict[str, dict]:
    spec = {"results_dir": "/tmp/x", "train": {"num_epochs": 1}}
    return {
        "ping": {},
        "list_skills": {},
        "get_skill": {"name": SKILL},
        "route_request": {"text": "train NVDINOv2 on my photos", "action": "train", "automl_policy": "off"},
        "get_spec_template": {"skill": SKILL, "action": "train"},
        "build_spec": {"skill": SKILL, "action": "train", "data_sources": {"train_datasets": str(data)}, "stage": False},
        "validate_spec": {"skill": SKILL, "action": "train", "spec": spec},
        "preflight": {"skill": SKILL, "action": "train", "spec": spec},
        "render_runner": {"skill": SKILL, "action": "train", "spec": spec},
        # no images in the data source: every launch_job below must be refused
        "launch_job": {
            "skill": SKILL,
            "action": "train",
            "automl_policy": "off",
            "data_sources": {"train_datasets": str(data)},
            "profile": "smoke",
        },
        "job_status": {"job_id": job_id},
        "job_logs": {"job_id": job_id, "grep": "loss"},
        "cancel_job": {"job_id": job_id},
        "list_jobs": {"limit": 5},
        "resolve_checkpoint": {"job_id": job_id, "for_action": "inference"},
    }


EXTRA_PARAMS = {
    "get_skill": ["name"],
    "route_request": ["text", "action", "automl_policy"],
    "build_spec": ["parent_job_id", "resume_job_id", "pretrained_model", "profile", "overrides", "shorthand"],
    "launch_job": ["parent_job_id", "resume_job_id", "pretrained_model", "request_text", "engine", "platform"],
    "job_logs": ["tail", "max_bytes"],
    "list_jobs": ["status", "skill", "action"],
    "resolve_checkpoint": ["epoch", "allow_latest"],
    "preflight": ["engine", "platform"],
    "render_runner": ["engine", "platform"],
    "validate_spec": ["require_complete"],
}
SPEC_PARAMS = {"build_spec": ["overrides", "shorthand"], "launch_job": ["overrides", "shorthand"]}


def _cases(job_id: str, data: Path, canary: Path) -> list[tuple[str, dict]]:
    base = _base_args(job_id, data)
    corpus = _corpus(canary)
    cases: list[tuple[str, dict]] = []
    for tool, args in base.items():
        cases.append((tool, dict(args)))
        params = list(dict.fromkeys([*args, *EXTRA_PARAMS.get(tool, [])]))
        for p in params:
            for v in corpus:
                cases.append((tool, {**args, p: v}))
        for p in SPEC_PARAMS.get(tool, []):
            for sd in _spec_dicts(canary):
                cases.append((tool, {**args, p: sd}))
        cases.append((tool, {**args, "unknown_argument": "x"}))
        for p in args:  # each argument missing
            cases.append((tool, {k: v for k, v in args.items() if k != p}))
    cases.append(("no_such_tool", {}))
    return cases


def _job_dirs(home: Path) -> set[str]:
    jobs = home / "jobs"
    return {p.name for p in jobs.iterdir()} if jobs.is_dir() else set()


@pytest.fixture()
def seeded(tmp_path, monkeypatch):
    """A home with one finished job (log with a long line) and an empty data folder."""
    monkeypatch.setenv("HOSTILE_CANARY_TOKEN", SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET + "-aws")
    home = tmp_path / "home"
    svc = Service(home=home)
    wd = home / "jobs" / "job-seeded000001"
    wd.mkdir(parents=True)
    (wd / "log.txt").write_text("epoch 1 loss 0.5\n" + "a" * 200_000 + "\n" + "done\n")
    rec = JobRecord(
        job_id="job-seeded000001",
        skill=SKILL,
        network_arch="nvdinov2",
        action="train",
        status="COMPLETE",
        results_dir=str(wd / "results"),
        workdir=str(wd),
        log_path=str(wd / "log.txt"),
        script_path=str(wd / "run.sh"),
    )
    svc.store.create(rec)
    data = tmp_path / "empty-data"
    data.mkdir()
    return svc, home, data, tmp_path / "INJECTED"


def _reply_text(res) -> str:
    parts = [c.text for c in res.content or [] if getattr(c, "text", None)]
    if res.structured_content is not None:
        parts.append(json.dumps(res.structured_content, default=str))
    return "\n".join(parts)


def test_hostile_mcp_calls(seeded, capsys):
    svc, home, data, canary = seeded
    cases = _cases("job-seeded000001", data, canary)
    dirs_before, records_before = _job_dirs(home), len(svc.store.list(limit=None))
    counts = {"calls": 0, "crashes": 0, "internal_errors": 0, "errors": 0, "ok": 0, "bad_error_shape": 0, "canary_hits": 0}
    failures: list[str] = []

    async def scenario():
        async with Client(build_server(svc)) as client:
            for tool, args in cases:
                counts["calls"] += 1
                try:
                    res = await client.call_tool(tool, args)
                except Exception as exc:  # the client refused to send it (e.g. unserialisable) or the call crashed
                    counts["crashes"] += 1
                    failures.append(f"crash {tool} {type(exc).__name__}: {str(exc)[:200]}")
                    continue
                text = _reply_text(res)
                if SECRET in text or "AKIAABCDEFGHIJKLMNOP" in text:
                    counts["canary_hits"] += 1
                    failures.append(f"canary in reply of {tool}")
                if not res.is_error:
                    counts["ok"] += 1
                    continue
                counts["errors"] += 1
                try:
                    payload = json.loads(res.content[0].text)
                except (ValueError, IndexError):
                    counts["bad_error_shape"] += 1
                    failures.append(f"non-JSON error from {tool}")
                    continue
                if payload.get("error") == "internal":
                    counts["internal_errors"] += 1
                    failures.append(f"internal error from {tool} {str(args)[:200]}")
                if not (payload.get("message") and payload.get("fix")):
                    counts["bad_error_shape"] += 1
                    failures.append(f"error without message/fix from {tool}: {payload}")
            pong = await client.call_tool("ping", {})  # the server is still alive
            assert not pong.is_error

    asyncio.run(scenario())
    counts["launches"] = len(_job_dirs(home) - dirs_before) + len(svc.store.list(limit=None)) - records_before
    counts["injected_commands"] = int(canary.exists())
    with capsys.disabled():
        print("\nhostile MCP suite:", json.dumps(counts))
    assert counts["calls"] >= 1000
    assert not failures, "\n".join(failures[:20])
    assert counts["launches"] == 0 and counts["injected_commands"] == 0


@pytest.mark.torch  # places the job on the built-in engine, which needs the engine extra
def test_hostile_overrides_on_a_launchable_job_are_refused(tmp_path, monkeypatch, capsys):
    """Data that would launch, plus one hostile value each: every launch refused, nothing left behind."""
    from taoskills.data.sample_data import write_sample_images

    monkeypatch.setenv("HOSTILE_CANARY_TOKEN", SECRET)
    data = tmp_path / "data"
    write_sample_images(data / "images_train", n=4)
    home = tmp_path / "home"
    svc = Service(home=home)
    canary = tmp_path / "INJECTED"
    not_a_ckpt = tmp_path / "weights.pth"
    not_a_ckpt.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    base = {
        "skill": SKILL,
        "action": "train",
        "automl_policy": "off",
        "profile": "smoke",
        "data_sources": {"train_datasets": str(data)},
        "overrides": dict(TINY_TRAIN_OVERRIDES),
    }
    hostile = [{"overrides": {**TINY_TRAIN_OVERRIDES, **sd}} for sd in _spec_dicts(canary)] + [
        {"pretrained_model": "/etc/passwd"},
        {"pretrained_model": str(not_a_ckpt)},
        {"pretrained_model": str(tmp_path)},
        {"shorthand": {"num_epochs": 1e30}},
        {"overrides": {**TINY_TRAIN_OVERRIDES, "train.num_epochs": 10**7}},
        {"overrides": {**TINY_TRAIN_OVERRIDES, "model.backbone.teacher_type": "vit_l\x00"}},
        {"request_text": "plain training \x00"},
        {"request_text": "x" * 100_000},
    ]
    n_refused = 0

    async def scenario():
        nonlocal n_refused
        async with Client(build_server(svc)) as client:
            for extra in hostile:
                res = await client.call_tool("launch_job", {**base, **extra})
                assert res.is_error, f"launched with {str(extra)[:120]}"
                payload = json.loads(res.content[0].text)
                assert payload["error"] != "internal" and payload["fix"], payload
                assert SECRET not in res.content[0].text
                n_refused += 1

        assert not (home / "jobs").exists() or not any((home / "jobs").iterdir())  # refused: nothing left behind
        assert svc.store.list(limit=None) == []
        async with Client(build_server(svc)) as client:  # the base itself launches (then is canceled)
            res = await client.call_tool("launch_job", base)
            assert not res.is_error, res.content[0].text
            await client.call_tool("cancel_job", {"job_id": res.structured_content["job_id"]})

    asyncio.run(scenario())
    with capsys.disabled():
        print(f"\nlaunchable base, hostile values: {n_refused} launches refused")
    assert len(svc.store.list(limit=None)) == 1
    assert not canary.exists()
