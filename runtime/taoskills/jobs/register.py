"""``python -m taoskills.jobs.register``: a runner script run by hand joins the job store.

The runner script that :meth:`taoskills.service.Service.render_runner` renders for the local
platform calls this after it has written its spec. When the job id is not in the store yet it
creates a RUNNING record (skill, action, engine, platform, spec read from the written spec
file, workdir, results_dir, script and log paths, ``labels.registered_by = "runner script"``)
and writes the workdir's ``pid`` identity file (:func:`taoskills.platforms.local.adopt_process`),
so ``tao-skills jobs status JOB`` follows it like a launched job: RUNNING while the shell lives,
then COMPLETE/ERROR from the ``exit_code`` file the script's EXIT trap writes. A job id already
in the store (a job the platform launched, or a second run of the same script) is left alone.

Exit codes: 0 registered or already known; 2 bad arguments or an unreadable spec. The script
treats any failure (or a missing runtime) as "not registered" and runs on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def register(
    *,
    job_id: str,
    skill: str,
    action: str,
    workdir: str,
    results_dir: str,
    spec_path: str,
    pid: int,
    network_arch: str | None = None,
    engine: str = "builtin",
    platform: str = "local",
    script_path: str | None = None,
    log_path: str | None = None,
    parent_job_id: str | None = None,
    home: str | None = None,
) -> bool:
    """Create the store record of a hand-run job; False when ``job_id`` is already there.

    ``home``: the runtime home whose store to use (default ``$TAO_SKILLS_HOME`` /
    ``~/.tao-skills``). Errors: JobError from the store (bad id, secret value in the spec).
    """
    from taoskills.errors import NotFound
    from taoskills.jobs.store import JobRecord, JobStore
    from taoskills.paths import home_dir
    from taoskills.platforms.local import adopt_process

    root = Path(home).expanduser() if home else home_dir()
    store = JobStore(root / "jobs.db")
    try:
        store.get(job_id)
        return False
    except NotFound:
        pass
    spec = yaml.safe_load(Path(spec_path).read_text()) or {}
    record = JobRecord(
        job_id=job_id,
        skill=skill,
        network_arch=network_arch or None,
        action=action,
        platform=platform,
        engine=engine,
        status="RUNNING",
        parent_job_id=parent_job_id or None,
        spec=spec,
        results_dir=results_dir,
        workdir=workdir,
        script_path=script_path,
        log_path=log_path,
        backend_id=str(pid),
        labels={"registered_by": "runner script"},
    )
    adopt_process(Path(workdir), pid)
    store.create(record)
    return True


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m taoskills.jobs.register", description=__doc__.splitlines()[0])
    for name in ("job-id", "skill", "action", "workdir", "results-dir", "spec"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--pid", type=int, required=True, help="the runner shell's pid ($$)")
    for name in ("network-arch", "engine", "platform", "script", "log", "parent", "home"):
        ap.add_argument(f"--{name}")
    a = ap.parse_args(argv)
    from taoskills.errors import TaoSkillsError

    try:
        created = register(
            job_id=a.job_id,
            skill=a.skill,
            action=a.action,
            workdir=a.workdir,
            results_dir=a.results_dir,
            spec_path=a.spec,
            pid=a.pid,
            network_arch=a.network_arch,
            engine=a.engine or "builtin",
            platform=a.platform or "local",
            script_path=a.script,
            log_path=a.log,
            parent_job_id=a.parent,
            home=a.home,
        )
    except (TaoSkillsError, OSError, yaml.YAMLError) as exc:
        print(f"tao-skills: job not registered: {exc}", file=sys.stderr)
        return 2
    print(f"tao-skills: job {a.job_id} {'registered' if created else 'already in the job store'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def register_argv(ctx_fields: dict, *, home: Path, python: str | None = None) -> list[str]:
    """The argv a hand-run runner script runs to register (``--pid``/``--script`` are added by
    the template). ``ctx_fields``: job_id, skill, action, network_arch, engine, platform,
    workdir, results_dir, spec_path (a :class:`taoskills.platforms.render.RunnerContext` dump).
    ``python``: the interpreter that has the runtime (default: this one, ``sys.executable``)."""
    argv = [python or sys.executable, "-m", "taoskills.jobs.register", "--home", str(home)]
    for flag, key in (
        ("--job-id", "job_id"),
        ("--skill", "skill"),
        ("--action", "action"),
        ("--network-arch", "network_arch"),
        ("--engine", "engine"),
        ("--platform", "platform"),
        ("--workdir", "workdir"),
        ("--results-dir", "results_dir"),
        ("--spec", "spec_path"),
    ):
        if ctx_fields.get(key):
            argv += [flag, str(ctx_fields[key])]
    return argv


def reroot(value, old: str, new: str):
    """``value`` (a spec: nested dicts/lists) with every string path under ``old`` moved under
    ``new`` (``old`` itself becomes ``new``). Used to give a preview spec, built with the shared
    preview results folder, a results folder of its own job."""
    if isinstance(value, dict):
        return {k: reroot(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [reroot(v, old, new) for v in value]
    if isinstance(value, str) and (value == old or value.startswith(old.rstrip("/") + "/")):
        return new + value[len(old.rstrip("/")) :]
    return value
