"""Grounding DINO's entry in the engine registry (torch-free)."""

from taoskills.engine.registry import EngineNetwork, standard_train_host_rule

DESCRIPTOR = EngineNetwork(
    network="grounding_dino",
    display_name="Grounding DINO",
    actions=("train", "evaluate", "inference", "export", "quantize"),
    package="taoskills.engine.grounding_dino",
    host_rules=(standard_train_host_rule,),
)
