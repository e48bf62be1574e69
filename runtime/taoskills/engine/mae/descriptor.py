"""MAE's entry in the engine registry (torch-free)."""

from taoskills.engine.registry import EngineNetwork, standard_train_host_rule

DESCRIPTOR = EngineNetwork(
    network="mae",
    display_name="MAE",
    actions=("train", "evaluate", "inference", "export"),
    package="taoskills.engine.mae",
    host_rules=(standard_train_host_rule,),
)
