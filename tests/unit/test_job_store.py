"""JobStore: durable records, filters, monotonic status, secrets rule, many processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from taoskills.errors import JobError, NotFound
from taoskills.jobs.store import (
    JobRecord,
    JobStore,
    find_secret_values,
    is_env_reference,
    is_secret_key,
    new_job_id,
)


def rec(**kw) -> JobRecord:
    base = dict(skill="tao-train-dino", network_arch="dino", action="train", spec={"train": {"num_epochs": 2}})
    base.update(kw)
    return JobRecord(**base)


def test_default_path_wal_and_roundtrip(store, home, tmp_path):
    assert store.path == home.resolve() / "jobs.db"
    r = rec(results_dir=tmp_path / "res", labels={"who": "test"})
    assert r.job_id.startswith("job-") and len(r.job_id) == 16
    assert r.status == "PENDING"
    store.create(r)
    got = store.get(r.job_id)
    assert got == r
    assert got.results_dir == str(tmp_path / "res")  # Path stored as str
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode.lower() == "wal"


def test_get_unknown_names_fix(store):
    with pytest.raises(NotFound) as ei:
        store.get("job-doesnotexist")
    assert ei.value.field == "job_id"
    assert "list_jobs" in ei.value.fix


def test_duplicate_create_refused(store):
    r = store.create(rec())
    with pytest.raises(JobError) as ei:
        store.create(rec(job_id=r.job_id))
    assert ei.value.field == "job_id"


def test_list_filters_newest_first_and_limit(store):
    a = store.create(rec(action="train"))
    b = store.create(rec(action="evaluate", parent_job_id=a.job_id))
    c = store.create(rec(skill="tao-train-mae", network_arch="mae", action="train"))
    store.update_status(c.job_id, "RUNNING")
    assert [j.job_id for j in store.list()] == [c.job_id, b.job_id, a.job_id]
    assert [j.job_id for j in store.list(limit=2)] == [c.job_id, b.job_id]
    assert [j.job_id for j in store.list(action="train")] == [c.job_id, a.job_id]
    assert [j.job_id for j in store.list(skill="tao-train-dino")] == [b.job_id, a.job_id]
    assert [j.job_id for j in store.list(status="RUNNING")] == [c.job_id]
    assert [j.job_id for j in store.list(status=["PENDING"], action="evaluate")] == [b.job_id]
    assert [j.job_id for j in store.list(parent_job_id=a.job_id)] == [b.job_id]
    with pytest.raises(JobError) as ei:
        store.list(status="DONE")
    assert ei.value.field == "status"


def test_children_in_creation_order(store):
    parent = store.create(rec())
    kids = [store.create(rec(action=a, parent_job_id=parent.job_id)) for a in ("evaluate", "export", "inference")]
    store.create(rec(action="evaluate"))  # unrelated
    assert [k.job_id for k in store.children(parent.job_id)] == [k.job_id for k in kids]
    assert store.children(kids[0].job_id) == []


def test_status_is_monotonic(store):
    r = store.create(rec())
    running = store.update_status(r.job_id, "RUNNING", backend_id="123")
    assert running.status == "RUNNING" and running.started_at and running.backend_id == "123"
    assert running.ended_at is None
    done = store.update_status(r.job_id, "COMPLETE", exit_code=0)
    assert done.status == "COMPLETE" and done.ended_at and done.exit_code == 0
    # a stale poll must not revive it, and its fields are ignored too
    stale = store.update_status(r.job_id, "RUNNING", exit_code=99)
    assert stale.status == "COMPLETE" and stale.exit_code == 0
    assert store.get(r.job_id).status == "COMPLETE"
    for state in ("ERROR", "CANCELED", "PENDING", "UNKNOWN"):
        assert store.update_status(r.job_id, state).status == "COMPLETE"
    # the same terminal state may add fields (e.g. failure analysis after the fact)
    again = store.update_status(r.job_id, "COMPLETE", labels={"note": "checked"})
    assert again.labels == {"note": "checked"} and again.ended_at == done.ended_at


def test_unknown_moves_anywhere_and_bad_status(store):
    r = store.create(rec())
    assert store.update_status(r.job_id, "UNKNOWN").status == "UNKNOWN"
    assert store.update_status(r.job_id, "RUNNING").status == "RUNNING"
    assert store.update_status(r.job_id, "UNKNOWN").status == "UNKNOWN"
    assert store.update_status(r.job_id, "CANCELED").status == "CANCELED"
    with pytest.raises(JobError):
        store.update_status(r.job_id, "FINISHED")
    with pytest.raises(NotFound):
        store.update_status("job-000000000000", "RUNNING")


def test_update_fields(store):
    r = store.create(rec())
    store.update_status(r.job_id, "ERROR", exit_code=3)
    upd = store.update_fields(r.job_id, failure={"summary": "bad num_classes"}, log_path="/tmp/x.log")
    assert upd.status == "ERROR" and upd.failure == {"summary": "bad num_classes"} and upd.log_path == "/tmp/x.log"
    assert upd.updated_at >= r.updated_at
    with pytest.raises(JobError) as ei:
        store.update_fields(r.job_id, status="RUNNING")
    assert "update_status" in ei.value.fix
    with pytest.raises(JobError) as ei:
        store.update_fields(r.job_id, colour="blue")
    assert ei.value.field == "colour"
    with pytest.raises(JobError):
        store.update_fields(r.job_id, job_id="job-other")
    with pytest.raises(JobError) as ei:
        store.update_fields(r.job_id, exit_code="not a number")
    assert ei.value.field == "exit_code"


def test_secret_rule_helpers():
    for key in (
        "aws_secret_access_key",
        "password",
        "db_passwd",
        "ngc_key",
        "ngc_api_key",
        "api_key",
        "hf_token",
        "HF_TOKEN",
        "access_token",
        "token",
        "encryption_key",
        "client_secret",
        "wandb_api_key",
    ):
        assert is_secret_key(key), key
    for key in (
        "max_tokens",
        "num_tokens",
        "text_encoder_type",
        "tokenizer",
        "key_frames",
        "aws_access_key_id",
        "num_classes",
        "results_dir",
        "keypoints",
    ):
        assert not is_secret_key(key), key
    for ref in ("${oc.env:NGC_KEY}", "$HF_TOKEN", "${AWS_SECRET_ACCESS_KEY}", "${oc.env:TAO_ENCRYPTION_KEY,tlt_encode}"):
        assert is_env_reference(ref)
    for lit in ("abc123", "${oc.env:NGC_KEY,default}", "$(cat key)", "prefix$HF_TOKEN"):
        assert not is_env_reference(lit)
    spec = {"a": [{"hf_token": "hf_live"}], "b": {"password": None, "encryption_key": "${oc.env:KEY}", "use_auth_token": True}}
    assert find_secret_values(spec, "spec") == ["spec.a[0].hf_token"]


def test_store_refuses_secret_values(store):
    with pytest.raises(JobError) as ei:
        store.create(rec(spec={"aws": {"aws_secret_access_key": "AKIAsupersecretvalue"}}))
    err = ei.value
    assert err.field == "spec.aws.aws_secret_access_key"
    assert "supersecretvalue" not in str(err) and "supersecretvalue" not in json.dumps(err.as_dict())
    assert "oc.env" in err.fix
    assert store.list() == []  # nothing written
    with pytest.raises(JobError):
        store.create(rec(labels={"ngc_key": "nvapi-xyz"}))
    ok = store.create(rec(spec={"encryption_key": "${oc.env:TAO_KEY}", "hf_token": "$HF_TOKEN", "model": {"max_tokens": 256}}))
    assert store.get(ok.job_id).spec["encryption_key"] == "${oc.env:TAO_KEY}"
    with pytest.raises(JobError):
        store.update_fields(ok.job_id, spec={"password": "hunter2"})
    with pytest.raises(JobError):
        store.update_status(ok.job_id, "ERROR", failure={"token": "abc"})
    assert store.get(ok.job_id).status == "PENDING"  # refused update left no trace


def test_non_finite_numbers_refused(store):
    with pytest.raises(JobError) as ei:
        store.create(rec(spec={"train": {"lr": float("nan")}}))
    assert ei.value.field == "spec.train.lr"


def test_record_survives_process_exit(home):
    """A process writes the record and exits; a later process reads it (the CLI pattern)."""
    code = textwrap.dedent(
        """
        from taoskills.jobs.store import JobRecord, JobStore
        s = JobStore()
        r = s.create(JobRecord(skill="tao-train-mae", action="train"))
        s.update_status(r.job_id, "RUNNING", backend_id="42")
        print(r.job_id)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "TAO_SKILLS_HOME": str(home)}
    )
    job_id = out.stdout.strip()
    got = JobStore().get(job_id)
    assert got.status == "RUNNING" and got.backend_id == "42" and got.skill == "tao-train-mae"


def test_concurrent_writers_from_two_processes(store, home):
    shared = store.create(rec(job_id="job-shared00001"))
    store.update_status(shared.job_id, "COMPLETE", exit_code=0)
    code = textwrap.dedent(
        """
        import sys
        from taoskills.jobs.store import JobRecord, JobStore
        tag = sys.argv[1]
        s = JobStore()
        for i in range(60):
            r = s.create(JobRecord(skill="tao-train-dino", action="train", labels={"writer": tag, "i": i}))
            s.update_status(r.job_id, "RUNNING")
            s.update_status(r.job_id, "COMPLETE" if i % 2 else "ERROR", exit_code=i % 2)
            s.update_status("job-shared00001", "RUNNING")  # stale poll racing the other writer
            s.update_fields("job-shared00001", labels={"last": tag})
        print("ok")
        """
    )
    env = {**os.environ, "TAO_SKILLS_HOME": str(home)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, tag], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for tag in ("a", "b")
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "ok"
    jobs = store.list(limit=0)
    assert len(jobs) == 121
    for tag in ("a", "b"):
        mine = [j for j in jobs if j.labels.get("writer") == tag]
        assert sorted(j.labels["i"] for j in mine) == list(range(60))
        assert all(j.status == ("COMPLETE" if j.labels["i"] % 2 else "ERROR") for j in mine)
    final = store.get("job-shared00001")
    assert final.status == "COMPLETE" and final.exit_code == 0
    assert final.labels["last"] in ("a", "b")


def test_new_job_ids_unique():
    ids = {new_job_id() for _ in range(2000)}
    assert len(ids) == 2000


def test_store_at_explicit_path(tmp_path):
    path = tmp_path / "sub" / "custom.db"
    with JobStore(path) as s:
        r = s.create(rec())
    assert Path(path).is_file()
    assert JobStore(path).get(r.job_id).job_id == r.job_id
