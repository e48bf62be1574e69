"""The minimal environment a job runs with.

A job never inherits the server's whole environment (that would hand every credential
the server holds to an engine that reads ``${oc.env:...}``). It gets:

* the variables in :data:`ALLOW` and those matching :data:`ALLOW_PREFIXES` (locale, paths,
  the Python environment, GPU selection, thread counts), minus any whose name looks like a
  secret (:func:`taoskills.security.redact.is_secret_env_name`);
* the secrets its contract names, passed by name: :func:`secret_names_in` finds the
  ``${oc.env:NAME}`` references in the job's spec (e.g. ``encryption_key``), plus
  :data:`CONTRACT_SECRETS` (the encryption-key variable every TAO action may read);
* the platform's own extra (non-secret) variables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from taoskills.security.redact import is_secret_env_name

ALLOW: frozenset[str] = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "TEMP",
        "TMP",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "CONDA_DEFAULT_ENV",
        "LD_LIBRARY_PATH",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_HOME",
        "CUDA_PATH",
        "CUDA_DEVICE_ORDER",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "TORCH_HOME",
        "HF_HOME",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "TAO_SKILLS_HOME",
        "MASTER_ADDR",
        "MASTER_PORT",
        "COVERAGE_PROCESS_START",
    }
)
ALLOW_PREFIXES: tuple[str, ...] = ("LC_", "NVIDIA_", "NCCL_", "CUDA_", "TAO_SKILLS_")
#: Secrets any job's contract may read by name (TAO's model encryption key).
CONTRACT_SECRETS: tuple[str, ...] = ("TAO_ENCRYPTION_KEY",)

_REF = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)")


def secret_names_in(spec: Any) -> list[str]:
    """Secret env-var names that ``spec`` references as ``${oc.env:NAME...}`` (any depth), plus
    :data:`CONTRACT_SECRETS`; sorted, no duplicates. Non-secret names are not returned."""
    found: set[str] = set(CONTRACT_SECRETS)
    stack = [spec]
    while stack:
        v = stack.pop()
        if isinstance(v, str) and "${" in v:
            found.update(n for n in _REF.findall(v) if is_secret_env_name(n))
        elif isinstance(v, Mapping):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return sorted(found)


def allowed(name: str) -> bool:
    """True when ``name`` passes the allowlist (and is not a secret)."""
    if is_secret_env_name(name):
        return False
    return name in ALLOW or name.startswith(ALLOW_PREFIXES)


def job_env(
    secret_names: Iterable[str] = CONTRACT_SECRETS,
    *,
    environ: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for a job: allowlisted variables of ``environ`` (default ``os.environ``),
    the named secrets that are set there, then ``extra`` (which may not smuggle secrets:
    secret-looking names in ``extra`` are dropped unless also in ``secret_names``).
    ``TAO_SKILLS_KEEP_CHECKPOINTS`` defaults to :data:`DEFAULT_KEEP_CHECKPOINTS` (keep the newest save)."""
    env = os.environ if environ is None else environ
    names = set(secret_names)
    out = {k: v for k, v in env.items() if allowed(k)}
    out.update({k: env[k] for k in names if k in env})
    for k, v in (extra or {}).items():
        if not is_secret_env_name(k) or k in names:
            out[k] = v
    out.setdefault("TAO_SKILLS_KEEP_CHECKPOINTS", DEFAULT_KEEP_CHECKPOINTS)
    return out


#: Checkpoint saves the built-in engine keeps per run when the user sets no
#: ``TAO_SKILLS_KEEP_CHECKPOINTS`` (``0`` keeps all; see taoskills.engine.lightning).
DEFAULT_KEEP_CHECKPOINTS = "1"


__all__ = ["ALLOW", "ALLOW_PREFIXES", "CONTRACT_SECRETS", "job_env", "secret_names_in", "allowed"]
