"""DINO's entry in the engine registry (torch-free)."""

from taoskills.engine import tensorrt as trt_rules
from taoskills.engine.registry import EngineNetwork, HostInfo, standard_train_host_rule


def fp16_host_rule(action: str, spec: dict, host: HostInfo) -> list[dict[str, str]]:
    """TAO's DINO spells precision ``fp16|fp32`` (TAO Core 7.3.0 dino TrainConfig); fp16 needs CUDA."""
    if action != "train" or host.cuda:
        return []
    if str((spec.get("train") or {}).get("precision", "")).lower() == "fp16":
        return [
            {
                "field": "train.precision",
                "reason": "fp16 mixed precision needs a CUDA GPU and this host has none",
                "fix": "set train.precision=fp32 (or bf16), or run on a GPU host",
            }
        ]
    return []


DESCRIPTOR = EngineNetwork(
    network="dino",
    display_name="DINO",
    actions=("train", "evaluate", "inference", "export", "quantize", *trt_rules.TRT_ACTIONS),
    package="taoskills.engine.dino",
    host_rules=(standard_train_host_rule, fp16_host_rule, trt_rules.host_rule),
    action_requires=dict.fromkeys(trt_rules.TRT_ACTIONS, (("tensorrt",), trt_rules.FIX)),
)
