"""MAE's entry in the engine registry (torch-free)."""

from __future__ import annotations

from taoskills.engine.registry import EngineNetwork, HostInfo, standard_train_host_rule


def mae_host_rule(action: str, spec: dict, host: HostInfo) -> list[dict[str, str]]:
    """The shared train rule (GPUs, nodes) plus MAE's precision spelling: ``train.precision: fp16``
    needs CUDA (TAO Core 7.3.0 mae TrainConfig: fp16|bf16|fp32)."""
    train = dict(spec.get("train") or {})
    precision = train.pop("precision", None)
    issues = standard_train_host_rule(action, {**spec, "train": train}, host)
    if action == "train" and precision == "fp16" and not host.cuda:
        issues.insert(
            0,
            {
                "field": "train.precision",
                "reason": "fp16 needs a CUDA GPU and this host has none",
                "fix": "set train.precision to fp32 or bf16, or run on a GPU host",
            },
        )
    return issues


DESCRIPTOR = EngineNetwork(
    network="mae",
    display_name="MAE",
    actions=("train", "evaluate", "inference", "export"),
    package="taoskills.engine.mae",
    host_rules=(mae_host_rule,),
)
