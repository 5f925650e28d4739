"""Configs: dataclasses that validate themselves, presets, YAML round trip."""

from .base import ConfigBase, ConfigError, apply_overrides
from .training_config import (FineTuningConfig, ILConfig, PretrainingConfig, RLConfig, TrainingConfig,
                              training_config_from_dict)

__all__ = ["ConfigBase", "ConfigError", "apply_overrides", "TrainingConfig", "ILConfig", "FineTuningConfig",
           "PretrainingConfig", "RLConfig", "training_config_from_dict", "ModelConfig", "DatasetConfig",
           "RunConfig", "EvalConfig", "get_training_config", "load_preset", "list_presets"]

_LAZY = {"ModelConfig": ".model_config", "DatasetConfig": ".dataset_config", "RunConfig": ".run_config",
         "EvalConfig": ".run_config", "get_training_config": ".presets", "load_preset": ".presets",
         "list_presets": ".presets"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'vla_engine.config' has no attribute {name!r}")
