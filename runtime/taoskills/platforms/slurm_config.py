"""Configuration of the SLURM platform (:class:`SlurmConfig`): factory options over the YAML
file named by ``TAO_SKILLS_SLURM_CONFIG``. Values that land in ``#SBATCH`` lines are single
tokens (what ``shlex.quote`` leaves unquoted), so a directive never needs shell quoting."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, field_validator

from taoskills.errors import JobError

CONFIG_ENV = "TAO_SKILLS_SLURM_CONFIG"

# One token of an #SBATCH value: what shlex.quote leaves unquoted (so the directive is verbatim).
SBATCH_TOKEN = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def _token(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    value = str(value)
    if not SBATCH_TOKEN.match(value):
        raise ValueError(f"{field} {value!r} may hold only letters, digits and _@%+=:,./- (no spaces or quotes)")
    return value


class SlurmConfig(BaseModel):
    """Where and how SLURM jobs run. ``None`` leaves the cluster's default.

    ``partition``/``account``/``qos``: ``--partition``/``--account``/``--qos``. ``time``: the
    wall-clock limit (``--time``, e.g. ``04:00:00``). ``cpus_per_task``: CPUs per node (one task
    per node). ``mem``: memory per node (``--mem``, e.g. ``64G``). ``nodes``/``gpus_per_node``:
    override the spec's ``num_nodes``/``num_gpus`` keys (skill_info ``multi_gpu.keys``).
    ``gpu_gres``: the GRES name (``--gres=<gpu_gres>:<n>``; 0 GPUs asks for none).
    ``container_image``/``container_mounts``: Pyxis ``--container-image``/``--container-mounts``
    (``src:dst`` items; the job's folder must be visible at the same path inside).
    ``max_requeues``: resubmissions after NODE_FAIL/PREEMPTED/BOOT_FAIL. ``master_port``: TAO's
    MASTER_PORT (29500). ``extra_sbatch``: more ``--option=value`` directives. ``env``:
    non-secret variables set in the batch script. ``retry_patterns``: ids of the skill's
    ``error_patterns`` that make a FAILED attempt an infrastructure failure (requeued like
    NODE_FAIL; default ``nccl_error``, interconnect faults as in TAO SDK's SLURM retry list).
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None
    cpus_per_task: int | None = Field(default=None, ge=1)
    mem: str | None = None
    nodes: int | None = Field(default=None, ge=1)
    gpus_per_node: int | None = Field(default=None, ge=0)
    gpu_gres: str = "gpu"
    container_image: str | None = None
    container_mounts: list[str] = Field(default_factory=list)
    max_requeues: int = Field(default=2, ge=0, le=20)
    master_port: int = Field(default=29500, ge=1, le=65535)
    extra_sbatch: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    retry_patterns: list[str] = Field(default_factory=lambda: ["nccl_error"])

    @field_validator("partition", "account", "qos", "time", "mem", "gpu_gres", "container_image")
    @classmethod
    def _tokens(cls, v: Any, info: Any) -> Any:
        return _token(v, info.field_name)

    @field_validator("container_mounts", "extra_sbatch")
    @classmethod
    def _token_lists(cls, v: list[str], info: Any) -> list[str]:
        for item in v:
            _token(item, info.field_name)
        if info.field_name == "extra_sbatch" and any(not i.startswith("--") for i in v):
            raise ValueError("extra_sbatch items are long options such as --constraint=a100")
        return v

    @classmethod
    def load(cls, **options: Any) -> SlurmConfig:
        """Options over the YAML file named by ``TAO_SKILLS_SLURM_CONFIG`` (if set).

        Errors: JobError (field ``TAO_SKILLS_SLURM_CONFIG``) for an unreadable file or bad values."""
        data: dict[str, Any] = {}
        path = os.environ.get(CONFIG_ENV)
        if path:
            try:
                loaded = yaml.safe_load(Path(path).read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise JobError(
                    f"cannot read the SLURM config {path}: {exc}", field=CONFIG_ENV, fix="point it at a YAML mapping"
                ) from exc
            if not isinstance(loaded, dict):
                raise JobError(f"the SLURM config {path} is not a mapping", field=CONFIG_ENV, fix="write key: value lines")
            data.update(loaded)
        data.update({k: v for k, v in options.items() if v is not None})
        try:
            return cls(**data)
        except ValueError as exc:
            raise JobError(f"bad SLURM platform configuration: {exc}", field=CONFIG_ENV, fix="fix the named key") from exc
