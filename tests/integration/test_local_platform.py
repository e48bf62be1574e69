"""Local platform with real processes: complete, error, cancel, SIGKILL, pid reuse, logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from taoskills.bank.skill_info import ErrorPattern
from taoskills.errors import JobError, NotFound
from taoskills.jobs.failure import analyze_failure
from taoskills.jobs.monitor import progress
from taoskills.jobs.store import JobRecord, JobStore
from taoskills.platforms import LocalPlatform, Platform, get_platform, read_log
from taoskills.platforms.render import RunnerContext, write_runner

TERMINAL = ("COMPLETE", "ERROR", "CANCELED")

FAKE_TRAIN = textwrap.dedent(
    """
    import json, os, sys, time
    results, code = sys.argv[1], int(sys.argv[2])
    os.makedirs(os.path.join(results, "train"), exist_ok=True)
    path = os.path.join(results, "train", "status.json")
    def line(**kw):
        kw.update(date="1/1/2025", time="0:0:1", verbosity="INFO")
        with open(path, "a") as fh:
            fh.write(json.dumps(kw) + "\\n")
    line(status="STARTED", message="Starting fake train.")
    for epoch in range(2):
        print(f"Epoch {epoch}/2 loss {1.0 / (epoch + 1)}", flush=True)
        line(status="RUNNING", epoch=epoch, max_epoch=2, eta="0:00:01", kpi={"val_mAP50": 0.2 * (epoch + 1)})
    if code:
        print("ValueError: category id 7 >= num_classes (5)", file=sys.stderr, flush=True)
        line(status="FAILURE", message="category id 7 >= num_classes (5)")
        print("Execution status: FAIL", flush=True)
        sys.exit(code)
    line(status="RUNNING", message="Train finished successfully.")
    print("Execution status: PASS", flush=True)
    """
)

PATTERNS = [
    ErrorPattern(
        id="num_classes_mismatch",
        regex=r"category id \d+ >= num_classes",
        cause="category id too large",
        fix="set dataset.num_classes to max(category_id) + 1",
        fault="program",
        actions=["train"],
    ),
]


@pytest.fixture()
def platform():
    return LocalPlatform(term_timeout=5.0)


def make_job(store: JobStore, tmp_path: Path, command: list[str], action: str = "train") -> JobRecord:
    record = JobRecord(
        skill="tao-train-dino", network_arch="dino", action=action, engine="builtin", spec={"train": {"num_epochs": 2}}
    )
    workdir = tmp_path / "jobs" / record.job_id
    ctx = RunnerContext(
        job_id=record.job_id,
        skill=record.skill,
        network_arch="dino",
        action=action,
        engine="builtin",
        workdir=str(workdir),
        results_dir=str(workdir / "results"),
        spec_path=str(workdir / "spec.yaml"),
        spec_yaml="train:\n  num_epochs: 2\n",
        command=command,
    )
    script = write_runner(ctx, workdir / "runner.sh")
    record = record.model_copy(
        update=dict(workdir=str(workdir), results_dir=ctx.results_dir, script_path=str(script), log_path=str(workdir / "job.log"))
    )
    return store.create(record)


def wait_for(fn, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def wait_terminal(platform, record, timeout: float = 30.0):
    return wait_for(lambda: (st := platform.poll(record)).state in TERMINAL and st, timeout)


def live_group_members(pgid: int) -> list[int]:
    """Non-zombie processes in process group ``pgid`` (independent of the platform code)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2 :].split()
        if int(rest[2]) == pgid and rest[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def submit(store, platform, record):
    backend_id = platform.submit(record)
    return store.update_status(record.job_id, "RUNNING", backend_id=backend_id)


def sync(store, platform, record):
    """What the service does: platform state -> store (monotonic), failure analysis on ERROR."""
    st = platform.poll(record)
    fields = {"exit_code": st.exit_code}
    if st.state == "ERROR":
        fields["failure"] = analyze_failure(
            Path(record.log_path).read_text(), PATTERNS, record.action, st.exit_code, lost=st.lost
        ).model_dump()
    return store.update_status(record.job_id, st.state, **fields)


def test_registry_and_protocol():
    p = get_platform("local")
    assert isinstance(p, LocalPlatform) and isinstance(p, Platform) and p.name == "local"
    from taoskills.platforms.registry import entries

    assert {"local", "docker", "slurm", "kubernetes"} <= set(entries())
    with pytest.raises(NotFound):
        get_platform("cloud9")


def test_complete_job_with_status_json(store, platform, tmp_path):
    rec = make_job(store, tmp_path, [sys.executable, "-c", FAKE_TRAIN, str(tmp_path / "fake_results"), "0"])
    rec = submit(store, platform, rec)
    assert rec.status == "RUNNING" and rec.backend_id.isdigit()
    st = wait_terminal(platform, rec)
    assert st.state == "COMPLETE" and st.exit_code == 0
    rec = sync(store, platform, rec)
    assert rec.status == "COMPLETE" and rec.exit_code == 0 and rec.ended_at
    summary = progress(tmp_path / "fake_results", "train")
    assert summary.finished and summary.epoch == 1 and summary.kpis == {"val_mAP50": pytest.approx(0.4)}
    log = platform.logs(rec)
    assert "Execution status: PASS" in log and "[tao-skills] job" in log and "exit code 0" in log
    # a finished job ignores cancel and stays COMPLETE
    platform.cancel(rec)
    assert platform.poll(rec).state == "COMPLETE"
    assert sync(store, platform, rec).status == "COMPLETE"


def test_error_job_exit_code_and_analysis(store, platform, tmp_path):
    rec = make_job(store, tmp_path, [sys.executable, "-c", FAKE_TRAIN, str(tmp_path / "res"), "3"])
    rec = submit(store, platform, rec)
    st = wait_terminal(platform, rec)
    assert st.state == "ERROR" and st.exit_code == 3 and not st.lost
    rec = sync(store, platform, rec)
    assert rec.status == "ERROR" and rec.exit_code == 3
    assert rec.failure["primary"]["id"] == "num_classes_mismatch"
    assert rec.failure["fault"] == "program"
    assert [m["id"] for m in rec.failure["matched"]] == ["num_classes_mismatch", "execution_failed"]
    assert progress(tmp_path / "res", "train").failure_message.startswith("category id 7")


def test_cancel_running_job_kills_the_group(store, platform, tmp_path):
    ready = tmp_path / "ready"
    code = f"import time; open({str(ready)!r}, 'w').close(); time.sleep(120)"
    rec = submit(store, platform, make_job(store, tmp_path, [sys.executable, "-c", code]))
    wait_for(ready.exists)
    st = platform.poll(rec)
    assert st.state == "RUNNING"
    pgid = int(rec.backend_id)
    assert len(live_group_members(pgid)) >= 2  # bash runner + python command
    platform.cancel(rec)
    st = platform.poll(rec)
    assert st.state == "CANCELED" and st.exit_code == 143
    assert live_group_members(pgid) == []
    rec = store.update_status(rec.job_id, st.state, exit_code=st.exit_code)
    assert rec.status == "CANCELED"
    # a late poll that saw it running cannot revive it
    assert store.update_status(rec.job_id, "RUNNING").status == "CANCELED"
    assert "exit code 143" in platform.logs(rec, tail=5)


def test_cancel_escalates_to_sigkill(store, tmp_path):
    platform = LocalPlatform(term_timeout=0.5)
    ready = tmp_path / "ready"
    code = (
        f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open({str(ready)!r}, 'w').close(); time.sleep(120)"
    )
    rec = submit(store, platform, make_job(store, tmp_path, [sys.executable, "-c", code]))
    wait_for(ready.exists)
    platform.cancel(rec)
    assert live_group_members(int(rec.backend_id)) == []
    st = platform.poll(rec)
    assert st.state == "CANCELED"


def test_sigkill_of_the_command_is_killed_error(store, platform, tmp_path):
    pidfile = tmp_path / "child.pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    rec = submit(store, platform, make_job(store, tmp_path, [sys.executable, "-c", code]))
    child = int(wait_for(lambda: pidfile.exists() and pidfile.read_text()))
    os.kill(child, signal.SIGKILL)
    st = wait_terminal(platform, rec)
    assert st.state == "ERROR" and st.exit_code == 137
    rec = sync(store, platform, rec)
    assert rec.failure["primary"]["id"] == "killed"
    assert rec.failure["fault"] == "infrastructure"
    assert "Killed" in rec.failure["primary"]["line"]


def test_sigkill_of_the_runner_is_lost_process(store, platform, tmp_path):
    pidfile = tmp_path / "child.pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    rec = submit(store, platform, make_job(store, tmp_path, [sys.executable, "-c", code]))
    child = int(wait_for(lambda: pidfile.exists() and pidfile.read_text()))
    os.kill(int(rec.backend_id), signal.SIGKILL)  # the bash runner: no exit code will be written
    # the command still runs in the job's process group: still RUNNING
    st = wait_for(lambda: (s := platform.poll(rec)).detail.startswith("runner shell") and s)
    assert st.state == "RUNNING"
    os.kill(child, signal.SIGKILL)
    st = wait_terminal(platform, rec)
    assert st.state == "ERROR" and st.exit_code is None and st.lost
    rec = sync(store, platform, rec)
    assert rec.failure["primary"]["id"] == "lost_process"


def test_poll_survives_pid_reuse(store, platform, tmp_path):
    rec = make_job(store, tmp_path, [sys.executable, "-c", "pass"])
    workdir = Path(rec.workdir)
    # a pid file naming a live process that is not ours (this test process, other start time)
    (workdir / "pid").write_text(json.dumps({"pid": os.getpid(), "pgid": os.getpid(), "start_ticks": 1, "boot_id": None}))
    rec = store.update_fields(rec.job_id, backend_id=str(os.getpid()))
    st = platform.poll(rec)
    assert st.state == "ERROR" and st.lost
    platform.cancel(rec)  # must not signal this test process (we would not survive it)
    assert platform.poll(rec).state == "ERROR"


def test_reused_pid_leading_another_group_is_not_ours(store, platform, tmp_path):
    rec = make_job(store, tmp_path, [sys.executable, "-c", "pass"])
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        (Path(rec.workdir) / "pid").write_text(
            json.dumps({"pid": other.pid, "pgid": other.pid, "start_ticks": 1, "boot_id": None})
        )
        rec = store.update_fields(rec.job_id, backend_id=str(other.pid))
        st = platform.poll(rec)
        assert st.state == "ERROR" and st.lost
        platform.cancel(rec)
        assert other.poll() is None  # the unrelated process was not signalled
    finally:
        other.kill()
        other.wait()


def test_launcher_process_may_exit(store, home, platform, tmp_path):
    """Submit from a short-lived process; a later process polls to completion without waitpid."""
    ready = tmp_path / "go"
    code = f"import os, time\nwhile not os.path.exists({str(ready)!r}): time.sleep(0.05)\nprint('done')"
    rec = make_job(store, tmp_path, [sys.executable, "-c", code])
    launcher = textwrap.dedent(
        f"""
        from taoskills.jobs.store import JobStore
        from taoskills.platforms import get_platform
        s = JobStore()
        r = s.get({rec.job_id!r})
        s.update_status(r.job_id, "RUNNING", backend_id=get_platform("local").submit(r))
        """
    )
    subprocess.run([sys.executable, "-c", launcher], check=True, env={**os.environ, "TAO_SKILLS_HOME": str(home)}, timeout=60)
    rec = store.get(rec.job_id)
    assert rec.status == "RUNNING" and platform.poll(rec).state == "RUNNING"
    ready.touch()
    st = wait_terminal(platform, rec)
    assert st.state == "COMPLETE"
    assert "done" in platform.logs(rec)


def test_submit_errors(store, platform, tmp_path):
    rec = store.create(JobRecord(skill="tao-train-dino", action="train"))
    with pytest.raises(JobError) as ei:
        platform.submit(rec)
    assert ei.value.field == "workdir"
    rec = rec.model_copy(
        update=dict(workdir=str(tmp_path / "w"), script_path=str(tmp_path / "missing.sh"), log_path=str(tmp_path / "w" / "log"))
    )
    with pytest.raises(JobError) as ei:
        platform.submit(rec)
    assert ei.value.field == "script_path"
    assert platform.poll(rec.model_copy(update=dict(workdir=str(tmp_path / "w")))).state == "PENDING"


def test_logs_tail_grep_and_bound(tmp_path, platform):
    log = tmp_path / "job.log"
    with log.open("w") as fh:
        for i in range(20000):
            fh.write(f"epoch {i} loss {1.0 / (i + 1):.6f} {'x' * 20}\n")
    rec = JobRecord(skill="s", action="train", log_path=str(log))
    text = platform.logs(rec, tail=5)
    lines = text.splitlines()
    assert lines[0].startswith("[... earlier log output not shown")
    assert lines[1:] == [f"epoch {i} loss {1.0 / (i + 1):.6f} {'x' * 20}" for i in range(19995, 20000)]
    grep = platform.logs(rec, tail=3, grep=r"^epoch 1234\d ")
    assert [ln.split()[1] for ln in grep.splitlines()[1:]] == ["12347", "12348", "12349"]
    small = platform.logs(rec, tail=10000, max_bytes=300)
    assert len(small.encode()) <= 300
    assert small.splitlines()[-1].startswith("epoch 19999 ")
    assert all(ln.startswith(("epoch ", "[...")) for ln in small.splitlines())  # whole lines only
    with pytest.raises(JobError) as ei:
        platform.logs(rec, grep="epoch[")
    assert ei.value.field == "grep" and "regular expression" in ei.value.message
    with pytest.raises(JobError):
        platform.logs(rec, tail=0)
    assert read_log(tmp_path / "absent.log") == ""
    short = tmp_path / "short.log"
    short.write_text("a\nb\n")
    assert read_log(short) == "a\nb"
