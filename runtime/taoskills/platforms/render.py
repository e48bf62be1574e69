"""Runner scripts: a Jinja template -> a self-contained bash script for one job.

The script is what every platform runs and what a person can run by hand: it checks
that secret environment variables are set (by name; values never appear in it),
checks staged inputs exist, writes the spec from an embedded heredoc, runs the engine
command, writes ``<workdir>/exit_code`` on exit (the local platform's contract,
taoskills/platforms/local.py) and prints where the results are (TAO layout
``results_dir/<action>/``, docs/tao-contract.md §3.4).

Quoting rule, enforced mechanically: every ``{{ ... }}`` in a template must produce a
value that went through the ``q`` filter (``shlex.quote``) or ``qargs`` (an argv list,
each item quoted); a bare ``{{ value }}`` raises :class:`RenderError` at render time. The
spec text sits in a heredoc with a quoted delimiter (no expansion), and the delimiter is
chosen so no spec line can end the heredoc early. Templates never put values in ``#``
comments (a newline in a value would end the comment).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, Field, field_validator, model_validator

from taoskills.errors import TaoSkillsError

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RenderError(TaoSkillsError):
    """A runner template or context is unsafe or incomplete."""

    code = "render_error"


class _Safe(str):
    """Text that is safe to place in a shell script as-is (made only by this module)."""


def _q(value: Any) -> _Safe:
    if value is None:
        raise RenderError("a runner template quoted a None value", field="template", fix="pass a string value")
    if isinstance(value, _Safe):
        return value
    return _Safe(shlex.quote(str(value)))


def _qargs(values: Any) -> _Safe:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise RenderError("qargs needs a list of arguments", field="template", fix="pass argv as a list")
    return _Safe(" ".join(shlex.quote(str(v)) for v in values))


def _finalize(value: Any) -> Any:
    if isinstance(value, _Safe):
        return value
    raise RenderError(
        f"runner template interpolates a value without shell quoting: {str(value)[:60]!r}",
        field="template",
        fix="pipe every value through the q filter ({{ value|q }}) or qargs for argv lists",
    )


def template_env() -> Environment:
    """The Jinja environment for runner templates (autoescape off, StrictUndefined,
    ``q``/``qargs`` filters, unquoted interpolation refused)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=False,
        undefined=StrictUndefined,
        finalize=_finalize,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = _q
    env.filters["qargs"] = _qargs
    return env


def _no_nul(value: str, field: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{field} contains a NUL character")
    return value


class RunnerContext(BaseModel):
    """Everything a runner script needs.

    Paths (``workdir``, ``results_dir``, ``spec_path``) must be absolute. ``command`` is
    the argv run after the spec is written, e.g. ``["python", "-m", "taoskills.engine",
    "nvdinov2", "train", "-e", spec_path]`` or ``["nvdinov2", "train", "-e", spec_path]``.
    ``env`` holds NON-secret variables (a secret-looking name is refused: put it in
    ``secret_env_names``, whose values are never written - the script only checks they
    are set). ``staged_inputs``: ``(src, dest)`` pairs; the script stops if a ``dest`` is
    missing. ``checkpoint_dir`` defaults to ``results_dir/train`` for the train action.
    ``register_command``/``register_log``: set for scripts meant to be run by hand (see
    :mod:`taoskills.jobs.register`); None for scripts a platform launches.
    """

    job_id: str
    skill: str
    network_arch: str | None = None
    action: str
    engine: str = "builtin"  # runtime engine name (taoskills.platforms.engines)
    platform: str = "local"
    workdir: str
    results_dir: str
    spec_path: str
    spec_yaml: str
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    secret_env_names: list[str] = Field(default_factory=list)
    staged_inputs: list[tuple[str, str]] = Field(default_factory=list)
    checkpoint_dir: str | None = None
    #: hand-run scripts only: argv that registers the job with the job store
    #: (taoskills.jobs.register); the script runs on when it fails or the runtime is absent
    register_command: list[str] | None = None
    #: with register_command: the log file the script tees its output into once registered
    register_log: str | None = None

    @field_validator("workdir", "results_dir", "spec_path", "checkpoint_dir", "register_log", mode="before")
    @classmethod
    def _abs_path(cls, v: Any, info: Any) -> Any:
        if v is None:
            return v
        s = str(v) if isinstance(v, os.PathLike) else v
        if isinstance(s, str) and not os.path.isabs(s):
            raise ValueError(f"{info.field_name} must be an absolute path, got {s!r}")
        return s

    @field_validator("env", mode="before")
    @classmethod
    def _env_values(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {
                k: (str(x).lower() if isinstance(x, bool) else str(x) if isinstance(x, (int, float)) else x) for k, x in v.items()
            }
        return v

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [str(x) if isinstance(x, os.PathLike) else x for x in v]
        return v

    @model_validator(mode="after")
    def _checks(self) -> RunnerContext:
        from taoskills.jobs.store import is_secret_key

        for name in ("job_id", "skill", "action", "platform", "workdir", "results_dir", "spec_path", "spec_yaml"):
            _no_nul(getattr(self, name), name)
        for i, arg in enumerate(self.command):
            _no_nul(arg, f"command[{i}]")
        for key, value in self.env.items():
            if not _IDENT.match(key):
                raise ValueError(f"env name {key!r} is not a shell variable name (letters, digits, '_')")
            if is_secret_key(key):
                raise ValueError(
                    f"env name {key!r} looks like a secret: list it in secret_env_names (its value is never written)"
                )
            _no_nul(value, f"env.{key}")
        for name in self.secret_env_names:
            if not _IDENT.match(name):
                raise ValueError(f"secret_env_names entry {name!r} is not a shell variable name")
        for i, pair in enumerate(self.staged_inputs):
            for part in pair:
                _no_nul(part, f"staged_inputs[{i}]")
        return self

    def effective_checkpoint_dir(self) -> str | None:
        """``checkpoint_dir``, or ``results_dir/train`` for the train action, else None."""
        if self.checkpoint_dir:
            return self.checkpoint_dir
        return str(Path(self.results_dir) / "train") if self.action == "train" else None


def _heredoc_delimiter(body: str) -> str:
    lines = set(body.splitlines())
    base = "TAO_SKILLS_SPEC_EOF_" + hashlib.sha256(body.encode("utf-8")).hexdigest()[:8].upper()
    delim, n = base, 0
    while delim in lines:
        n += 1
        delim = f"{base}_{n}"
    return delim


def render_runner(ctx: RunnerContext, template: str = "runner.sh.j2") -> str:
    """The runner script text for ``ctx`` (``templates/<template>``).

    Errors: RenderError if the template interpolates a value unquoted or names an
    undefined variable.
    """
    body = ctx.spec_yaml[:-1] if ctx.spec_yaml.endswith("\n") else ctx.spec_yaml
    delim = _heredoc_delimiter(body)
    values = ctx.model_dump()
    values.update(
        spec_body=_Safe(body),  # inside a quoted heredoc: never expanded by the shell
        spec_delimiter=_Safe(delim),
        action_results_dir=str(Path(ctx.results_dir) / ctx.action),
        checkpoint_dir=ctx.effective_checkpoint_dir(),
        network_arch=ctx.network_arch or "",
    )
    try:
        return template_env().get_template(template).render(**values)
    except RenderError:
        raise
    except Exception as exc:  # jinja2 UndefinedError, TemplateNotFound, syntax errors
        raise RenderError(
            f"cannot render runner template {template}: {exc}",
            field="template",
            fix="check the template and the RunnerContext fields",
        ) from exc


def write_runner(ctx: RunnerContext, path: str | os.PathLike, template: str = "runner.sh.j2") -> Path:
    """Render ``ctx`` and write it to ``path`` (parents created, mode 0755). Returns the path."""
    text = render_runner(ctx, template)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)
    return out
