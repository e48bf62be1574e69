"""NVDINOv2's entry in the engine registry (torch-free)."""

from taoskills.engine.registry import EngineNetwork, standard_train_host_rule

DESCRIPTOR = EngineNetwork(
    network="nvdinov2",
    display_name="NVDINOv2",
    actions=("train", "inference", "export"),
    package="taoskills.engine.nvdinov2",
    host_rules=(standard_train_host_rule,),
)
