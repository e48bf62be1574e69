"""Runner renderer: quoting cannot be broken, the script is valid bash and runs by hand."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from taoskills.platforms.render import RenderError, RunnerContext, render_runner, template_env, write_runner

EVIL = [
    "a b",
    "it's",
    'say "hi"',
    "$(touch {canary})",
    "`touch {canary}`",
    "x; touch {canary}",
    "line1\ntouch {canary}\n",
    "'; touch {canary}; echo '",
    "${{IFS}}touch${{IFS}}{canary}",
    "\\\n$(touch {canary})",
]


def make_ctx(root: Path, **kw) -> RunnerContext:
    workdir = root / "work"
    base = dict(
        job_id="job-0123456789ab",
        skill="tao-train-dino",
        network_arch="dino",
        action="train",
        engine="builtin",
        platform="local",
        workdir=str(workdir),
        results_dir=str(root / "results"),
        spec_path=str(workdir / "spec.yaml"),
        spec_yaml="train:\n  num_epochs: 1\n",
        command=[sys.executable, "-c", "print('engine ran')"],
    )
    base.update(kw)
    return RunnerContext(**base)


def run_script(path: Path, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(path)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_script_runs_by_hand(tmp_path):
    ctx = make_ctx(tmp_path, env={"OMP_NUM_THREADS": 1, "MY_FLAG": True})
    script = write_runner(ctx, tmp_path / "work" / "run.sh")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    out = run_script(script, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "engine ran" in out.stdout
    assert "job-0123456789ab" in out.stdout and "tao-train-dino" in out.stdout and "builtin" in out.stdout
    assert f"results: {tmp_path / 'results' / 'train'}" in out.stdout
    assert f"checkpoints: {tmp_path / 'results' / 'train'}" in out.stdout
    assert (tmp_path / "work" / "spec.yaml").read_text() == "train:\n  num_epochs: 1\n"
    assert (tmp_path / "work" / "exit_code").read_text().strip() == "0"
    assert (tmp_path / "results").is_dir()
    text = script.read_text()
    assert "export OMP_NUM_THREADS=1" in text and "export MY_FLAG=true" in text


def test_failure_exit_code_recorded_and_no_results_line(tmp_path):
    ctx = make_ctx(tmp_path, action="evaluate", command=[sys.executable, "-c", "import sys; print('bad'); sys.exit(7)"])
    script = write_runner(ctx, tmp_path / "run.sh")
    out = run_script(script, tmp_path)
    assert out.returncode == 7
    assert (tmp_path / "work" / "exit_code").read_text().strip() == "7"
    assert "results:" not in out.stdout and "checkpoints:" not in out.stdout
    assert "exit code 7" in out.stdout


def test_injection_through_every_field_is_inert(tmp_path):
    # a relative canary: an executed `touch CANARY` lands in the script's cwd (tmp_path or
    # the workdir under it), and the name fits in a directory name (no '/')
    canary = "CANARY"
    evil = [e.format(canary=canary) for e in EVIL]
    odd_dir = tmp_path / f"w o'r\"k $(touch {canary}) `touch {canary}`\nnl"
    argv_out = tmp_path / "argv.json"
    spec = f"name: '$(touch {canary})'\nnote: `touch {canary}`\nTAO_SKILLS_SPEC_EOF\n"
    staged = tmp_path / f"staged $(touch {canary})"
    staged.mkdir()
    ctx = RunnerContext(
        job_id=evil[3],
        skill=evil[6],
        network_arch=evil[4],
        action=evil[5],
        platform=evil[7],
        workdir=str(odd_dir),
        results_dir=str(tmp_path / evil[8].replace("/", "_")),
        spec_path=str(odd_dir / "spec $(x).yaml"),
        spec_yaml=spec,
        command=[sys.executable, "-c", "import json, sys; json.dump(sys.argv[2:], open(sys.argv[1], 'w'))", str(argv_out), *evil],
        env={"EVIL_" + str(i): v for i, v in enumerate(evil)},
        staged_inputs=[(evil[9], str(staged))],
        checkpoint_dir=str(tmp_path / evil[1]),
    )
    script = write_runner(ctx, tmp_path / "run.sh")
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    out = run_script(script, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert not list(tmp_path.rglob("CANARY*")), "a rendered value was executed by the shell"
    # every argv item arrived byte for byte
    assert json.loads(argv_out.read_text()) == evil
    # the spec was written verbatim, including a line that looks like a heredoc end
    assert (odd_dir / "spec $(x).yaml").read_text() == spec
    assert (odd_dir / "exit_code").read_text().strip() == "0"


def test_env_values_reach_the_command_verbatim(tmp_path):
    canary = tmp_path / "CANARY"
    value = f"a 'b' \"c\" $(touch {canary}) `touch {canary}`\nnext"
    out_file = tmp_path / "env.txt"
    ctx = make_ctx(
        tmp_path,
        env={"TAO_SKILLS_TEST_VALUE": value},
        command=[
            sys.executable,
            "-c",
            "import os, sys; open(sys.argv[1], 'w').write(os.environ['TAO_SKILLS_TEST_VALUE'])",
            str(out_file),
        ],
    )
    res = run_script(write_runner(ctx, tmp_path / "run.sh"), tmp_path)
    assert res.returncode == 0, res.stderr
    assert out_file.read_text() == value
    assert not canary.exists()


def test_secret_env_names_checked_never_written(tmp_path):
    ctx = make_ctx(
        tmp_path,
        secret_env_names=["TAO_SKILLS_TEST_SECRET"],
        command=[sys.executable, "-c", "import os; print('len', len(os.environ['TAO_SKILLS_TEST_SECRET']))"],
    )
    script = write_runner(ctx, tmp_path / "run.sh")
    env = {k: v for k, v in os.environ.items() if k != "TAO_SKILLS_TEST_SECRET"}
    missing = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert missing.returncode == 2
    assert "TAO_SKILLS_TEST_SECRET is not set" in missing.stderr
    assert "engine" not in missing.stdout.split("[tao-skills] running:")[-1] or "running:" not in missing.stdout
    ok = run_script(script, tmp_path, env={"TAO_SKILLS_TEST_SECRET": "s3cr3t-value"})
    assert ok.returncode == 0 and "len 12" in ok.stdout
    assert "s3cr3t-value" not in script.read_text() and "s3cr3t-value" not in ok.stdout


def test_missing_staged_input_stops_before_the_command(tmp_path):
    marker = tmp_path / "ran"
    ctx = make_ctx(
        tmp_path,
        staged_inputs=[("/data/images.tar.gz", str(tmp_path / "staged" / "images"))],
        command=[sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
    )
    res = run_script(write_runner(ctx, tmp_path / "run.sh"), tmp_path)
    assert res.returncode == 3
    assert "staged input is missing" in res.stderr and "images.tar.gz" in res.stderr
    assert not marker.exists()
    assert (tmp_path / "work" / "exit_code").read_text().strip() == "3"


def test_context_validation():
    root = Path("/tmp/x")
    with pytest.raises(ValidationError, match="absolute"):
        make_ctx(root, workdir="relative/dir")
    with pytest.raises(ValidationError, match="secret"):
        make_ctx(root, env={"HF_TOKEN": "hf_abc"})
    with pytest.raises(ValidationError, match="shell variable"):
        make_ctx(root, env={"BAD-NAME": "1"})
    with pytest.raises(ValidationError, match="shell variable"):
        make_ctx(root, secret_env_names=["NGC KEY"])
    with pytest.raises(ValidationError, match="NUL"):
        make_ctx(root, command=["python", "a\x00b"])
    with pytest.raises(ValidationError):
        make_ctx(root, command=[])


def test_unquoted_interpolation_is_refused():
    env = template_env()
    with pytest.raises(RenderError, match="without shell quoting"):
        env.from_string("echo {{ value }}").render(value="$(id)")
    assert env.from_string("echo {{ value|q }}").render(value="$(id)") == "echo '$(id)'"
    assert env.from_string("{{ argv|qargs }}").render(argv=["a b", "c"]) == "'a b' c"


def test_template_undefined_variable_is_an_error(tmp_path, monkeypatch):
    import taoskills.platforms.render as render

    (tmp_path / "bad.j2").write_text("echo {{ nope|q }}\n")
    monkeypatch.setattr(render, "TEMPLATES_DIR", tmp_path)
    with pytest.raises(RenderError, match="nope"):
        render_runner(make_ctx(Path("/tmp/x")), template="bad.j2")
