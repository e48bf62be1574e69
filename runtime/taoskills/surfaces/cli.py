"""``tao-skills``: the command-line skin over :class:`taoskills.service.Service`.

No logic lives here: every command parses arguments, calls one service method and
prints the result (JSON with ``--json``, else a readable table). Errors print the
message, the field, the fix, and exit with code 2 (bad input) or 1 (job failed).
Sub-command groups live in their own modules: ``jobs`` in :mod:`taoskills.surfaces.cli_jobs`,
``automl`` in :mod:`taoskills.surfaces.cli_automl`; shared output helpers in
:mod:`taoskills.surfaces.cli_common`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.table import Table

from taoskills.errors import TaoSkillsError
from taoskills.security.redact import redact, redact_text
from taoskills.surfaces import cli_estimate, cli_render
from taoskills.surfaces.cli_automl import automl_app
from taoskills.surfaces.cli_common import JSON, err, out
from taoskills.surfaces.cli_common import emit as _emit
from taoskills.surfaces.cli_common import emit_status as _emit_status
from taoskills.surfaces.cli_common import service as _service
from taoskills.surfaces.cli_jobs import jobs_app
from taoskills.surfaces.follow import follow_job

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="TAO skill bank runtime: route, build specs, run and track TAO jobs."
)
skills_app = typer.Typer(no_args_is_help=True, help="List and show skills.")
spec_app = typer.Typer(no_args_is_help=True, help="Spec templates, building and validation.")
app.add_typer(skills_app, name="skills")
app.add_typer(spec_app, name="spec")
app.add_typer(jobs_app, name="jobs")
app.add_typer(automl_app, name="automl")
app.command("estimate")(cli_estimate.estimate)  # taoskills.surfaces.cli_estimate

# ----------------------------------------------------------------------------- --version


def _print_version(value: bool) -> None:
    if value:
        from taoskills import __version__
        from taoskills.paths import skills_dir

        typer.echo(f"tao-skills {__version__} (skills: {skills_dir()})")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version and the skill bank folder"
    ),
) -> None:
    """TAO skill bank runtime: route, build specs, run and track TAO jobs."""


def _parse_pairs(pairs: list[str] | None, what: str) -> dict[str, Any]:
    """``["a.b=3", "c=[1,2]"]`` -> ``{"a.b": 3, "c": [1, 2]}`` (values parsed as YAML scalars)."""
    result: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise TaoSkillsError(
                f"{what} {pair!r} is not KEY=VALUE", field=what, fix=f"write {what} as key=value, e.g. train.num_epochs=5"
            )
        key, _, raw = pair.partition("=")
        result[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return result


def _load_spec(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise TaoSkillsError(
            f"spec file {path} not found", field="spec", fix="pass the path of a YAML spec (tao-skills spec build -o FILE)"
        ) from None
    except yaml.YAMLError as exc:
        raise TaoSkillsError(f"spec file {path} is not valid YAML: {exc}", field="spec", fix="fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise TaoSkillsError(
            f"spec file {path} does not hold a mapping", field="spec", fix="a spec is a YAML mapping of sections"
        )
    return data


def _fail(exc: TaoSkillsError) -> None:
    """Print an error with its fix in CLI syntax (``fix_cli``, else ``fix`` rewritten: cli_render.to_cli)."""
    message, fix = redact_text(exc.message), redact_text(cli_render.cli_fix(exc) or "")  # security: no secret in errors
    err.print(f"[bold red]{cli_render.BAD} error[/] ({exc.code}): {message}", markup=True, highlight=False, soft_wrap=True)
    if exc.field:
        err.print(f"  field: {exc.field}", markup=False, highlight=False, soft_wrap=True)
    for issue in exc.issues:
        err.print(
            f"  - {issue.field}: {issue.reason} fix: {redact_text(cli_render.to_cli(issue.fix) or '')}",
            markup=False,
            highlight=False,
        )
    if fix:
        err.print(f"  fix: {fix}", markup=False, highlight=False, soft_wrap=True)


ENGINE = typer.Option("auto", help="runtime engine: auto (first that can run it here), builtin, tao")
SET = typer.Option(None, "--set", "-s", help="dotted override KEY=VALUE (repeatable)")
SHORT = typer.Option(None, "--shorthand", "-k", help="shorthand KEY=VALUE, e.g. num_epochs=5 (repeatable)")
DATA = typer.Option(None, "--data", "-d", help="data source ROLE=FOLDER, e.g. train_datasets=/data/train (repeatable)")
PARENT = typer.Option(None, "--parent", help="parent job id (train job for inference/export)")
PROFILE = typer.Option(None, "--profile", help="'smoke' applies the skill's small, representative overrides")
RESUME = typer.Option(None, "--resume", help="job id whose training to resume (train only; picks its model_epoch_* file)")
PTM = typer.Option(None, "--pretrained", help="pretrained model file for train (used only when not resuming)")
PTB = typer.Option(None, "--pretrained-backbone", help="backbone-only pretrained weights for train (DINO, Grounding DINO)")


def _build_kwargs(
    set_: list[str] | None,
    shorthand: list[str] | None,
    data: list[str] | None,
    parent: str | None,
    profile: str | None,
    resume: str | None = None,
    pretrained: str | None = None,
    pretrained_backbone: str | None = None,
) -> dict:
    return dict(
        overrides=_parse_pairs(set_, "--set"),
        shorthand=_parse_pairs(shorthand, "--shorthand"),
        data_sources={k: str(v) for k, v in _parse_pairs(data, "--data").items()},
        parent_job_id=parent,
        profile=profile,
        resume_job_id=resume,
        pretrained_model=pretrained,
        pretrained_backbone=pretrained_backbone,
    )


# ----------------------------------------------------------------------------- skills


@skills_app.command("list")
def skills_list(as_json: bool = JSON) -> None:
    """List the skills in the bank."""
    skills = _service().list_skills()
    if as_json:
        return _emit(skills, True)
    table = Table("skill", "network_arch", "actions", "TensorRT (deploy)", "AutoML", "engines")
    table.columns[0].no_wrap = True
    for s in skills:
        pyt = [a for a in s.actions if not a.startswith("deploy_")]
        deploy = [a.removeprefix("deploy_") for a in s.actions if a.startswith("deploy_")]
        table.add_row(
            s.name,
            s.network_arch or "-",
            " ".join(pyt) or "-",
            " ".join(deploy) or "-",
            "yes" if s.automl_enabled else ("(this is it)" if s.kind == "application" else "no"),
            "; ".join(f"{e}: {' '.join(a)}" for e, a in s.engine_actions.items() if a) or "-",
        )
    out.print(table)


@skills_app.command("show")
def skills_show(name: str, as_json: bool = JSON, body: bool = typer.Option(False, help="print the SKILL.md body")) -> None:
    """Show one skill (actions, shorthand keys, metrics, data sources)."""
    detail = _service().get_skill(name)
    if body:
        typer.echo(detail.body)
        return
    data = detail.model_dump(exclude={"body", "frontmatter"})
    _emit(data, as_json)


@app.command()
def route(text: str, action: str | None = None, automl_policy: str | None = None, as_json: bool = JSON) -> None:
    """Route a request ("train DINO on my COCO data") to a skill, action and automl_policy."""
    routed = _service().route_request(text, action=action, automl_policy=automl_policy)
    if as_json:
        return _emit(routed, True)
    cli_render.print_route(redact(routed))


# ----------------------------------------------------------------------------- specs


@spec_app.command("template")
def spec_template(skill: str, action: str, as_json: bool = JSON) -> None:
    """Print an action's packaged spec template (YAML)."""
    from taoskills.service import dump_yaml

    spec = _service().get_spec_template(skill, action)
    if as_json:
        return _emit(spec, True)
    typer.echo(dump_yaml(spec).rstrip())


@spec_app.command("build")
def spec_build(
    skill: str,
    action: str,
    set_: list[str] = SET,
    shorthand: list[str] = SHORT,
    data: list[str] = DATA,
    parent: str | None = PARENT,
    profile: str | None = PROFILE,
    resume: str | None = RESUME,
    pretrained: str | None = PTM,
    pretrained_backbone: str | None = PTB,
    output: Path | None = typer.Option(None, "-o", "--output", help="write the spec YAML here"),
    as_json: bool = JSON,
) -> None:
    """Build a spec from the template, shorthand, overrides, data sources and a parent job."""
    result = _service().build_spec(
        skill, action, **_build_kwargs(set_, shorthand, data, parent, profile, resume, pretrained, pretrained_backbone)
    )
    if output:
        output.write_text(result.spec_yaml)
        err.print(f"spec written to {output}")
    if as_json:
        return _emit(result, True)
    if not output:
        typer.echo(result.spec_yaml.rstrip())
    cli_render.print_build(redact(result), echo=lambda line: typer.echo(line, err=True))  # stdout stays the spec
    if not result.valid:
        raise typer.Exit(2)


@spec_app.command("validate")
def spec_validate(
    skill: str,
    action: str,
    spec: Path,
    complete: bool = typer.Option(False, help="also require every ??? value set"),
    as_json: bool = JSON,
) -> None:
    """Validate a spec file against the action's schema and TAO's constraints."""
    result = _service().validate_spec(skill, action, _load_spec(spec), require_complete=complete)
    _emit(result, as_json)
    if not result.valid:
        raise typer.Exit(2)


@app.command()
def preflight(skill: str, action: str, spec: Path, engine: str = ENGINE, platform: str = "local", as_json: bool = JSON) -> None:
    """Check data and host for a spec file before launch."""
    report = _service().preflight(skill, action, _load_spec(spec), engine=engine, platform=platform)
    if as_json:
        _emit(report, True)
    else:
        cli_render.print_preflight(redact(report))
    if not report.ok:
        raise typer.Exit(2)


@app.command()
def render(
    skill: str,
    action: str,
    spec: Path,
    engine: str = ENGINE,
    platform: str = "local",
    output: Path | None = typer.Option(None, "-o", "--output"),
    as_json: bool = JSON,
) -> None:
    """Render the runner script for a spec file (runs by hand with bash; it registers with the job store)."""
    result = _service().render_runner(skill, action, _load_spec(spec), engine=engine, platform=platform)
    if output:
        output.write_text(result.script)
        output.chmod(0o755)
        err.print(f"runner for job {result.job_id} written to {output}")
    if as_json:
        return _emit(result, True)
    if not output:
        typer.echo(result.script)


# ----------------------------------------------------------------------------- run + jobs


@app.command()
def run(
    skill: str,
    action: str,
    set_: list[str] = SET,
    shorthand: list[str] = SHORT,
    data: list[str] = DATA,
    parent: str | None = PARENT,
    profile: str | None = PROFILE,
    resume: str | None = RESUME,
    pretrained: str | None = PTM,
    pretrained_backbone: str | None = PTB,
    automl_policy: str | None = typer.Option(None, help="on | off | auto (train only; default on)"),
    request: str = typer.Option("", help="the user's request text (policy phrases such as 'plain training')"),
    engine: str = ENGINE,
    platform: str = "local",
    follow: bool = typer.Option(True, help="follow the job with a progress bar until it ends"),
    as_json: bool = JSON,
) -> None:
    """Launch a job (and follow it with a progress bar)."""
    svc = _service()
    handle = svc.launch_job(
        skill,
        action,
        automl_policy=automl_policy,
        request_text=request,
        engine=engine,
        platform=platform,
        **_build_kwargs(set_, shorthand, data, parent, profile, resume, pretrained, pretrained_backbone),
    )
    err.print(
        f"launched [bold]{handle.job_id}[/] ({handle.skill} {handle.action}, engine {handle.engine}); log: {handle.log_path}"
    )
    if not follow:
        return _emit(handle, as_json)
    status = follow_job(svc, handle.job_id)
    _emit_status(status, as_json)
    if status.status != "COMPLETE":
        raise typer.Exit(1)


@app.command()
def checkpoints(
    job_id: str,
    for_action: str = typer.Option("inference", "--for", help="consumer action, or 'resume'"),
    epoch: int | None = None,
    allow_latest: bool = False,
    as_json: bool = JSON,
) -> None:
    """Pick the checkpoint a downstream action should use from a job's results."""
    _emit(_service().resolve_checkpoint(job_id, for_action, epoch=epoch, allow_latest=allow_latest), as_json)


@app.command()
def serve(
    transport: str = typer.Option("stdio", help="stdio | streamable-http"),
    host: str = "127.0.0.1",
    port: int = 8765,
    allow_remote: bool = typer.Option(False, help="allow HTTP on a non-loopback host (use with --auth-token-env)"),
    auth_token_env: str | None = typer.Option(None, help="HTTP: NAME of the env var holding the bearer token to require"),
    max_sessions_per_client: int = typer.Option(16, help="HTTP: open sessions one client address may hold"),
    session_idle_s: float = typer.Option(600.0, help="HTTP: seconds after which an idle session expires"),
) -> None:
    """Run the MCP server (stdio by default; HTTP binds 127.0.0.1)."""
    from taoskills.surfaces import mcp as mcp_server

    if transport not in ("stdio", "streamable-http"):
        raise typer.BadParameter("use stdio or streamable-http", param_hint="--transport")
    try:
        mcp_server.run(
            transport=transport,  # type: ignore[arg-type]  # checked just above
            host=host,
            port=port,
            allow_remote=allow_remote,
            auth_token_env=auth_token_env,
            max_sessions_per_client=max_sessions_per_client,
            session_idle_s=session_idle_s,
        )
    except ValueError as exc:
        err.print(f"[bold red]error[/]: {exc}")
        raise typer.Exit(2) from exc


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("demo-output"), "--out", help="where sample data and results go"),
    epochs: int | None = typer.Option(None, help="training epochs (default: nvdinov2 10, mae 3 pretrain / 10 finetune, dino 10)"),
    network: str = typer.Option("nvdinov2", help="nvdinov2 (default) | mae | dino | grounding_dino"),
) -> None:
    """Run a whole workflow on sample data (built-in engine, local platform) and print where everything is.

    nvdinov2: train -> inference -> export; mae: pretrain -> finetune -> evaluate -> inference ->
    export; dino: train -> evaluate -> inference -> export.
    """
    from taoskills.surfaces import demo as demos

    runners = {"nvdinov2": lambda: demos.run_demo(out_dir, epochs=epochs or 10)}
    runners["mae"] = lambda: demos.run_mae_demo(out_dir, epochs=epochs)
    runners["dino"] = lambda: demos.run_dino_demo(out_dir, epochs=epochs)
    runners["grounding_dino"] = lambda: demos.run_gdino_demo(out_dir, epochs=epochs)
    if network not in runners:
        raise TaoSkillsError(f"no demo for network {network!r}", field="network", fix=f"use one of {', '.join(runners)}")
    raise typer.Exit(runners[network]())


def main() -> None:
    try:
        app()
    except TaoSkillsError as exc:
        _fail(exc)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
