"""Grounding DINO's entry in the engine registry (torch-free)."""

from taoskills.engine import tensorrt as trt_rules
from taoskills.engine.registry import EngineNetwork, standard_train_host_rule

DESCRIPTOR = EngineNetwork(
    network="grounding_dino",
    display_name="Grounding DINO",
    actions=("train", "evaluate", "inference", "export", "quantize", "gen_trt_engine", "deploy_gen_trt_engine"),
    package="taoskills.engine.grounding_dino",
    host_rules=(standard_train_host_rule, trt_rules.host_rule),
    action_requires=dict.fromkeys(("gen_trt_engine", "deploy_gen_trt_engine"), (("tensorrt",), trt_rules.FIX)),
)
