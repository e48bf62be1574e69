"""Test helpers that load specs the way a TAO container does (needs nvidia-tao-core 7.3.0).

A TAO PyTorch / Deploy entrypoint builds ``OmegaConf.structured(ExperimentConfig)`` from
``nvidia_tao_core.config.<network_arch>.default_config`` and merges the user's spec into it
(Hydra ``config_store`` + compose). That merge is strict: an unknown key raises
``ConfigKeyError`` and a value of the wrong type raises ``ValidationError``. Tests that call
these helpers must be marked ``@pytest.mark.taocore``; they are skipped when TAO Core or
omegaconf is not installed.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import Any

NETWORK_ARCHS = ("nvdinov2", "dino", "grounding_dino", "mae")


def require_taocore():
    """Import and return ``nvidia_tao_core`` (installed by ``scripts/setup.sh --dev`` and CI; never skipped)."""
    os.environ.setdefault("TAO_LOG_LEVEL", "WARNING")
    try:
        import requests  # noqa: F401  (TAO Core's converter imports it; unused by these helpers)
    except ImportError:
        sys.modules.setdefault("requests", types.ModuleType("requests"))
    import nvidia_tao_core
    import omegaconf  # noqa: F401  (TAO Core's structured configs need it)

    return nvidia_tao_core


def experiment_config_class(network_arch: str):
    """``ExperimentConfig`` dataclass of ``network_arch`` (TAO Core ``config/<net>/default_config``)."""
    require_taocore()
    module = importlib.import_module(f"nvidia_tao_core.config.{network_arch}.default_config")
    return module.ExperimentConfig


def load_into_experiment_config(network_arch: str, spec: dict[str, Any]):
    """Merge ``spec`` into ``OmegaConf.structured(ExperimentConfig)`` and return the config.

    Raises omegaconf's ``ConfigKeyError`` for an unknown key and ``ValidationError`` for a
    value that does not fit the field type, exactly as the TAO container would at start-up.
    Hydra MISSING values (``"???"``) stay missing; they are not an error here (TAO only fails
    when the action reads them).
    """
    require_taocore()
    from omegaconf import OmegaConf

    base = OmegaConf.structured(experiment_config_class(network_arch))
    return OmegaConf.merge(base, spec)
