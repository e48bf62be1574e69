"""What the built-in engine can run (importable without torch).

The runtime asks :func:`supports` before it picks the built-in engine for a job; anything
not listed here must run on the TAO engine (container or installed TAO CLI).
"""

from __future__ import annotations

#: network_arch -> actions the built-in engine implements (TAO action names).
SUPPORTED: dict[str, tuple[str, ...]] = {"nvdinov2": ("train", "inference", "export")}


def supports(network: str, action: str) -> bool:
    """True when ``tao-skills-engine <network> <action>`` is implemented.

    Names are compared as TAO spells them (lower case, e.g. ``"nvdinov2"``, ``"train"``).
    """
    return action in SUPPORTED.get(network, ())


def describe() -> str:
    """One line naming every supported network and its actions, for error messages."""
    return "; ".join(f"{net}: {', '.join(acts)}" for net, acts in sorted(SUPPORTED.items()))


#: Lightning precisions that need a CUDA GPU (fp16); on a CPU-only host use 32-true or bf16-mixed.
CPU_BAD_PRECISIONS = ("16-mixed", "16", "16-true")


def host_issues(network: str, action: str, spec: dict, *, cuda: bool, gpus: int) -> list[dict[str, str]]:
    """Spec values the built-in engine cannot honour on this host, found before launch.

    Returns ``[{"field", "reason", "fix"}]`` (empty when the job can run). ``cuda``/``gpus``:
    whether CUDA is available and how many devices (preflight's ``host.gpu`` check). The engine
    re-checks the same rules when it starts (``engine/nvdinov2/train.py``), so this is an early
    copy of its refusal, not a second source of truth for anything else.
    """
    if network != "nvdinov2" or action != "train":
        return []
    train = spec.get("train") or {}
    issues = []
    precision = str(train.get("precision", ""))
    if not cuda and precision in CPU_BAD_PRECISIONS:
        issues.append(
            {
                "field": "train.precision",
                "reason": f"{precision} (fp16) needs a CUDA GPU and this host has none",
                "fix": "set train.precision to 32-true or bf16-mixed (or use --profile smoke), or run on a GPU host",
            }
        )
    n, nodes = train.get("num_gpus", 1), train.get("num_nodes", 1)
    if isinstance(n, int) and n > max(gpus, 1):
        issues.append(
            {
                "field": "train.num_gpus",
                "reason": f"num_gpus={n} but this host has {gpus} CUDA GPU(s)",
                "fix": f"set train.num_gpus to at most {max(gpus, 1)} (and gpu_ids to match) or run on a bigger host",
            }
        )
    if isinstance(nodes, int) and nodes > 1:
        issues.append(
            {
                "field": "train.num_nodes",
                "reason": f"num_nodes={nodes}: the local platform runs one node",
                "fix": "set train.num_nodes=1 on the local platform",
            }
        )
    return issues
