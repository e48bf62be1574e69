"""TAO Core 7.3.0 dino ``ExperimentConfig`` defaults (``OmegaConf.structured`` values), torch-free.

Tests compare this dict with the installed TAO Core config.
"""

from __future__ import annotations

from typing import Any

from taoskills.engine.schema_defaults import schema_defaults

SOURCE = "TAO Core 7.3.0 dino ExperimentConfig"

#: TAO Core's sections the engine uses unchanged, read from the packaged schemas (taoskills.engine.schema_defaults).
_SHARED = schema_defaults(
    "tao-train-dino", "wandb", "dataset", "train", "evaluate", "inference", "export", "gen_trt_engine", "quantize"
)

DEFAULTS: dict[str, Any] = {
    "model_name": None,
    "encryption_key": None,
    "results_dir": "",
    "wandb": _SHARED["wandb"],
    "model": {
        "precise_msda": False,
        "pretrained_backbone_path": None,
        "backbone": "resnet_50",
        "num_queries": 300,
        "num_feature_levels": 4,
        "cls_loss_coef": 2.0,
        "bbox_loss_coef": 5.0,
        "giou_loss_coef": 2.0,
        "num_select": 300,
        "interm_loss_coef": 1.0,
        "no_interm_box_loss": False,
        "pre_norm": False,
        "two_stage_type": "standard",
        "decoder_sa_type": "sa",
        "embed_init_tgt": True,
        "fix_refpoints_hw": -1,
        "pe_temperatureH": 20,
        "pe_temperatureW": 20,
        "return_interm_indices": [1, 2, 3, 4],
        "use_dn": True,
        "dn_number": 100,
        "dn_box_noise_scale": 1.0,
        "dn_label_noise_ratio": 0.5,
        "focal_alpha": 0.25,
        "clip_max_norm": 0.1,
        "nheads": 8,
        "dropout_ratio": 0.0,
        "hidden_dim": 256,
        "enc_layers": 6,
        "dec_layers": 6,
        "dim_feedforward": 2048,
        "dec_n_points": 4,
        "enc_n_points": 4,
        "aux_loss": True,
        "dilation": False,
        "train_backbone": True,
        "loss_types": ["labels", "boxes"],
        "backbone_names": ["backbone.0"],
        "linear_proj_names": ["reference_points", "sampling_offsets"],
        "distillation_loss_coef": 1.0,
    },
    "dataset": _SHARED["dataset"],
    "train": _SHARED["train"],
    "evaluate": _SHARED["evaluate"],
    "inference": _SHARED["inference"],
    "export": _SHARED["export"],
    "gen_trt_engine": _SHARED["gen_trt_engine"],
    "distill": None,
    "quantize": _SHARED["quantize"],
}
