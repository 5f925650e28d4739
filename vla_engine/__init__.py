"""vla_engine: build, train, evaluate and benchmark Vision-Language-Action robot policies.

Public names are imported lazily (PEP 562) so ``import vla_engine`` stays fast and light:

    from vla_engine import create_vla_model, BehavioralCloning, LeRobotVLADataset, get_training_config
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # configs
    "ConfigError": "vla_engine.config.base",
    "ModelConfig": "vla_engine.config.model_config",
    "DatasetConfig": "vla_engine.config.dataset_config",
    "TrainingConfig": "vla_engine.config.training_config",
    "PretrainingConfig": "vla_engine.config.training_config",
    "FineTuningConfig": "vla_engine.config.training_config",
    "RLConfig": "vla_engine.config.training_config",
    "ILConfig": "vla_engine.config.training_config",
    "RunConfig": "vla_engine.config.run_config",
    "EvalConfig": "vla_engine.config.run_config",
    "get_training_config": "vla_engine.config.presets",
    "load_preset": "vla_engine.config.presets",
    "list_presets": "vla_engine.config.presets",
    # models
    "VLAModel": "vla_engine.models",
    "create_vla_model": "vla_engine.models",
    "MLPActionHead": "vla_engine.models",
    "PointNetEncoder": "vla_engine.models",
    "PointTransformerEncoder": "vla_engine.models",
    "RadarEncoder": "vla_engine.models",
    "IMUEncoder": "vla_engine.models",
    "SensorFusion": "vla_engine.models",
    "CrossModalFusion": "vla_engine.models",
    "HierarchicalFusion": "vla_engine.models",
    "GatedFusion": "vla_engine.models",
    "MultiSensorVLA": "vla_engine.models",
    "NuScenesDataset": "vla_engine.data",
    "KittiRawDataset": "vla_engine.data",
    "create_driving_dataloader": "vla_engine.data",
    # data
    "LeRobotVLADataset": "vla_engine.data",
    "PushTDataset": "vla_engine.data",
    "AlohaDataset": "vla_engine.data",
    "XArmDataset": "vla_engine.data",
    "create_lerobot_dataloader": "vla_engine.data",
    "generate_dataset": "vla_engine.data",
    "DatasetError": "vla_engine.data",
    "BCDataset": "vla_engine.data",
    "FilteredBCDataset": "vla_engine.data",
    "WeightedBCDataset": "vla_engine.data",
    "create_bc_dataloader": "vla_engine.data",
    # envs
    "make_env": "vla_engine.envs",
    "make_expert": "vla_engine.envs.experts",
    # training
    "TrainLoop": "vla_engine.train.loop",
    "TrainingError": "vla_engine.train.loop",
    "BehavioralCloning": "vla_engine.train.il.bc",
    "DAgger": "vla_engine.train.il.dagger",
    "GAIL": "vla_engine.train.il.gail",
    "VLAFineTuner": "vla_engine.train.finetune",
    "PPOTrainer": "vla_engine.train.rl",
    "SACTrainer": "vla_engine.train.rl",
    "GRPOTrainer": "vla_engine.train.rl",
    "ReplayBuffer": "vla_engine.train.rl.buffers",
    # evaluation and runs
    "evaluate_policy": "vla_engine.eval.evaluator",
    "wilson_interval": "vla_engine.eval.metrics",
    "paired_comparison": "vla_engine.eval.metrics",
    "JobRunner": "vla_engine.runs.runner",
    "RunDir": "vla_engine.runs.run_dir",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vla_engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
