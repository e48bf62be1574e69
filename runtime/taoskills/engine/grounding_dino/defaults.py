"""TAO Core 7.3.0 grounding_dino ``ExperimentConfig`` defaults as a plain dict (torch-free).

The dataclass ``value``s (``OmegaConf.structured(ExperimentConfig)``) of
``nvidia_tao_core/config/grounding_dino/default_config.py``: what TAO's Hydra runner merges a
spec onto. The tests compare this copy with TAO Core.
"""

from __future__ import annotations

from typing import Any

from taoskills.engine.schema_defaults import schema_defaults

SOURCE = "TAO Core 7.3.0 grounding_dino ExperimentConfig"

#: TAO Core's sections the engine uses unchanged, read from the packaged schemas (taoskills.engine.schema_defaults).
_SHARED = schema_defaults(
    "tao-train-grounding-dino", "wandb", "dataset", "train", "evaluate", "inference", "export", "gen_trt_engine", "quantize"
)

DEFAULTS: dict[str, Any] = {
    "model_name": None,
    "encryption_key": None,
    "results_dir": "",
    "wandb": _SHARED["wandb"],
    "model": {
        "pretrained_backbone_path": None,
        "backbone": "swin_tiny_224_1k",
        "num_queries": 900,
        "num_feature_levels": 4,
        "set_cost_class": 1.0,
        "set_cost_bbox": 5.0,
        "set_cost_giou": 2.0,
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
        "dn_number": 0,
        "dn_box_noise_scale": 1.0,
        "dn_label_noise_ratio": 0.5,
        "focal_alpha": 0.25,
        "focal_gamma": 2.0,
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
        "precise_msda": False,
        "text_encoder_type": "bert-base-uncased",
        "max_text_len": 256,
        "class_embed_bias": False,
        "log_scale": None,
        "loss_types": ["labels", "boxes"],
        "backbone_names": ["backbone.0", "bert"],
        "linear_proj_names": ["reference_points", "sampling_offsets"],
    },
    "dataset": _SHARED["dataset"],
    "train": _SHARED["train"],
    "evaluate": _SHARED["evaluate"],
    "inference": _SHARED["inference"],
    "export": _SHARED["export"],
    "gen_trt_engine": _SHARED["gen_trt_engine"],
    "quantize": _SHARED["quantize"],
}
