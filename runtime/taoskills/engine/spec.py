"""Load a TAO spec the way TAO's entrypoint does (torch-free).

``load_spec(path, overrides)`` reads the YAML with OmegaConf, applies Hydra-style dot
overrides (``train.num_epochs=5``, ``results_dir=/out``; a leading ``+``/``++`` is accepted),
and resolves interpolations such as ``${oc.env:NAME,default}`` (so ``encryption_key`` can
travel by env-var name). ``apply_defaults`` then fills the network's defaults and rejects
unknown keys and wrong types, as Hydra does with TAO's structured ExperimentConfig.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

from taoskills.errors import Issue, SpecError

MISSING = "???"


def load_spec(path: str | Path, overrides: list[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(resolved, raw)`` plain dicts of the spec at ``path`` with ``overrides`` applied.

    ``raw`` keeps interpolation strings (used to redact secrets). Mandatory values left as
    ``???`` stay ``"???"``. Raises SpecError naming the file or the key at fault.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    spec_path = Path(path).expanduser()
    if not spec_path.is_file():
        raise SpecError(
            f"Spec file {spec_path} does not exist.",
            field="experiment_spec_file",
            fix="pass -e with the path of an existing YAML spec file.",
        )
    try:
        cfg = OmegaConf.load(spec_path)
    except Exception as exc:  # yaml errors come in several types
        raise SpecError(
            f"Spec file {spec_path} is not valid YAML: {exc}",
            field="experiment_spec_file",
            fix="fix the YAML syntax (indentation, quoting) and run again.",
        ) from exc
    if cfg is None or not OmegaConf.is_dict(cfg):
        raise SpecError(
            f"Spec file {spec_path} must hold a YAML mapping.",
            field="experiment_spec_file",
            fix="write the spec as nested keys (model:, dataset:, train: ...).",
        )
    dotlist = []
    for item in overrides or []:
        if item.startswith("~"):
            raise SpecError(
                f"Deleting keys ({item!r}) is not supported by the built-in engine.",
                field=item[1:].split("=")[0],
                fix="set the key to a value instead (key=value).",
            )
        item = item.lstrip("+")
        if "=" not in item:
            raise SpecError(
                f"Override {item!r} is not of the form key=value.",
                field=item,
                fix="write overrides as dotted.key=value, e.g. train.num_epochs=5.",
            )
        dotlist.append(item)
    try:
        if dotlist:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
        raw = OmegaConf.to_container(cfg, resolve=False)
        _refuse_interpolations(raw)  # security: oc.env only where TAO reads a secret by name
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as exc:
        from taoskills.security.redact import redact_text

        key = getattr(exc, "full_key", None) or "spec"
        raise SpecError(
            redact_text(f"Could not resolve the spec: {exc}".split("\n")[0]),
            field=str(key),
            fix="check the override syntax; for ${oc.env:NAME} set the environment variable NAME or give a default.",
        ) from exc
    return resolved, raw


#: Keys whose value may be an ``${oc.env:NAME}`` interpolation (TAO reads them so by name).
INTERPOLATION_KEYS = ("encryption_key",)


def _refuse_interpolations(raw: Any, where: str = "") -> None:
    """Raise SpecError for an interpolation (``${...}``) anywhere except under
    :data:`INTERPOLATION_KEYS`, where only ``${oc.env:NAME[,tlt_encode]}`` of a secret
    variable is accepted. The message names the key, never a value."""
    import re

    from taoskills.security.redact import is_secret_env_name

    if isinstance(raw, dict):
        for k, v in raw.items():
            _refuse_interpolations(v, f"{where}.{k}" if where else str(k))
        return
    if isinstance(raw, list):
        for i, v in enumerate(raw):
            _refuse_interpolations(v, f"{where}[{i}]")
        return
    if not (isinstance(raw, str) and "${" in raw):
        return
    last = where.rsplit(".", 1)[-1]
    m = re.fullmatch(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)(,[^}]*)?\}", raw.strip())
    if last in INTERPOLATION_KEYS and m and is_secret_env_name(m.group(1)):
        return
    raise SpecError(
        f"{where} holds an interpolation (${{...}}); the engine resolves ${{oc.env:NAME}} only for "
        f"{', '.join(INTERPOLATION_KEYS)}.",
        field=where,
        fix=f"give {where} a plain value; pass secrets by environment-variable name in encryption_key only.",
    )


def _type_ok(value: Any, default: Any) -> bool:
    if default is None or default == MISSING or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, list):
        return isinstance(value, list)
    return True


def _shown(value: Any) -> str:
    """``repr(value)`` with secret environment values scrubbed (never echo a secret)."""
    from taoskills.security.redact import redact_text

    return redact_text(repr(value))


def apply_defaults(user: dict[str, Any], defaults: dict[str, Any], *, source: str) -> dict[str, Any]:
    """Merge ``user`` onto a deep copy of ``defaults``; unknown keys and wrong types raise.

    ``source`` names where the defaults come from (for messages), e.g. "TAO Core 7.3.0
    nvdinov2 ExperimentConfig". Keys whose default is ``None`` accept any value.
    Raises SpecError with one Issue per problem (dotted key, reason, fix).
    """
    issues: list[Issue] = []
    out = copy.deepcopy(defaults)

    def walk(u: dict[str, Any], d: dict[str, Any], o: dict[str, Any], prefix: str) -> None:
        for key, value in u.items():
            dotted = f"{prefix}{key}"
            if key not in d:
                close = difflib.get_close_matches(str(key), [str(k) for k in d], n=1)
                hint = f" Did you mean {prefix}{close[0]}?" if close else ""
                issues.append(
                    Issue(
                        dotted, f"is not a key of the {source}.{hint}", "remove the key or correct its spelling.", "unknown_key"
                    )
                )
                continue
            dv = d[key]
            if isinstance(dv, dict):
                if value is None:
                    continue
                if not isinstance(value, dict):
                    issues.append(
                        Issue(dotted, f"must be a mapping, got {type(value).__name__}.", "write it as nested keys.", "type")
                    )
                    continue
                walk(value, dv, o[key], dotted + ".")
                continue
            if not _type_ok(value, dv):
                issues.append(
                    Issue(
                        dotted,
                        f"must be of type {type(dv).__name__}, got {_shown(value)}.",
                        f"set {dotted} to a {type(dv).__name__} value (default {dv!r}).",
                        "type",
                    )
                )
                continue
            if isinstance(dv, float) and isinstance(value, int):
                value = float(value)
            o[key] = value

    walk(user, defaults, out, "")
    if issues:
        raise SpecError(f"The spec does not match the {source}.", issues=issues, fix="correct the listed keys.")
    return out
