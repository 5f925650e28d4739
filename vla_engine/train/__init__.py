"""Trainers over one shared loop. Heavy modules load when a trainer is first used."""

from .methods import PLANNED_METHODS, CapabilityMissing, all_methods, get_trainer

__all__ = ["TrainLoop", "TrainResult", "TrainingError", "BehavioralCloning", "VLAFineTuner",
           "get_trainer", "all_methods", "CapabilityMissing", "PLANNED_METHODS"]

_LAZY = {
    "TrainLoop": ".loop", "TrainResult": ".loop", "TrainingError": ".loop", "CheckpointError": ".loop",
    "BehavioralCloning": ".il.bc", "VLAFineTuner": ".finetune",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'vla_engine.train' has no attribute {name!r}")
