"""The shape of a multi-node job: how many nodes and GPUs per node a spec asks for.

Read from the spec keys the skill names in ``multi_gpu.keys`` (skill_info.yaml: ``num_nodes``,
``num_gpus``; TAO's ``train.num_nodes`` / ``train.num_gpus`` when the skill names none). Only
``train`` runs on several GPUs or nodes; other actions are one node. Used by the cluster
platforms (SLURM, Kubernetes) for their resource requests; TAO's per-node environment itself
is :func:`taoskills.platforms.base.multi_gpu_env`.
"""

from __future__ import annotations

from typing import Any

DEFAULT_KEYS = {"num_gpus": "train.num_gpus", "num_nodes": "train.num_nodes"}


def skill_keys(skill: str) -> dict[str, str]:
    """The skill's ``multi_gpu.keys`` (role -> dotted spec key) over :data:`DEFAULT_KEYS`."""
    try:
        from taoskills.bank.catalog import Catalog

        mg = Catalog.load().get(skill).info.multi_gpu
    except Exception:  # noqa: BLE001 - a record of a skill no longer in the bank
        return dict(DEFAULT_KEYS)
    return {**DEFAULT_KEYS, **mg.keys} if mg else dict(DEFAULT_KEYS)


def positive(value: Any) -> int | None:
    """``value`` when it is an int > 0 (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def job_shape(
    skill: str, action: str, spec: dict[str, Any] | None, *, nodes: int | None = None, gpus_per_node: int | None = None
) -> tuple[int, int]:
    """(nodes, GPUs per node): the overrides when given (platform configuration), else the
    spec's keys for ``train``, else 1 node and 0 GPUs (a CPU job)."""
    from taoskills.specs.dotted import get_dotted

    keys = skill_keys(skill)
    spec = spec or {}
    train = action == "train"
    n = nodes or (positive(get_dotted(spec, keys["num_nodes"], default=None)) if train else None) or 1
    g = gpus_per_node
    if g is None:
        g = (positive(get_dotted(spec, keys["num_gpus"], default=None)) if train else None) or 0
    return n, g
