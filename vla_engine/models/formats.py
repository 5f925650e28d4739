"""Checkpoint folders written by other projects, and the loaders that read them.

``VLAModel.from_pretrained(folder)`` reads the folder's ``config.json`` and asks each registered format
whether it is one of its own (a light check of the parsed dict); a match is built by that format's loader
(``models/convert_openvla.py``, ``models/convert_smolvla.py``), anything else loads as a vla_engine
checkpoint. The loaders are named as "module:function" and imported when a folder of theirs is loaded:
they build the wrapper classes, which are VLAModels themselves.

A new format registers a ``CheckpointFormat`` here (or from its own module):

    CHECKPOINT_FORMATS.register("octo", CheckpointFormat(
        description="an Octo checkpoint", detect=lambda d: d.get("model_type") == "octo",
        loader="my_package.convert_octo:load_octo", how_to_load="OctoWrapper.from_octo(folder)"))
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from ..registry import Registry

__all__ = ["CHECKPOINT_FORMATS", "CheckpointFormat", "detect_format", "is_openvla_config", "is_smolvla_config"]


@dataclass(frozen=True)
class CheckpointFormat:
    """One foreign checkpoint format: how to recognise its ``config.json`` and which function loads it.

    ``loader(folder, cls=..., map_location=..., **options)`` returns the model; ``options`` names the keyword
    arguments of ``from_pretrained`` it takes besides those (e.g. ``unnorm_key``)."""

    description: str  # "a published OpenVLA checkpoint": for messages
    detect: Callable[[Any], bool]  # the parsed config.json -> whether the folder is of this format
    loader: str  # "module:function"
    how_to_load: str = ""  # the wrapper's own loading call, for messages
    options: tuple[str, ...] = ()

    def load(self, folder: Any, **kwargs: Any) -> Any:
        module, attr = self.loader.split(":")
        return getattr(importlib.import_module(module), attr)(folder, **kwargs)


def is_openvla_config(data: Any) -> bool:
    """Whether a parsed config.json is an OpenVLA (``OpenVLAForActionPrediction``) config."""
    return isinstance(data, dict) and (data.get("model_type") == "openvla"
                                       or "OpenVLAForActionPrediction" in (data.get("architectures") or []))


def is_smolvla_config(data: Any) -> bool:
    """Whether a parsed config.json is a LeRobot SmolVLA policy config."""
    return isinstance(data, dict) and data.get("type") == "smolvla"


CHECKPOINT_FORMATS = Registry("checkpoint format")
CHECKPOINT_FORMATS.register("openvla", CheckpointFormat(
    description="an OpenVLA checkpoint", detect=is_openvla_config,
    loader="vla_engine.models.convert_openvla:load_openvla", how_to_load="OpenVLAWrapper.from_openvla(folder)",
    options=("unnorm_key",)))
CHECKPOINT_FORMATS.register("smolvla", CheckpointFormat(
    description="a LeRobot SmolVLA policy", detect=is_smolvla_config,
    loader="vla_engine.models.convert_smolvla:load_smolvla", how_to_load="SmolVLAWrapper.from_lerobot(folder)"))

CHECKPOINT_FORMATS.register("rl_mlp", CheckpointFormat(
    description="an RL MLP policy (PPO / SAC on a state-based task)",
    detect=lambda d: isinstance(d, dict) and d.get("type") == "rl_mlp",
    loader="vla_engine.train.rl.policies:load_rl_policy", how_to_load="load_rl_policy(folder)"))

CHECKPOINT_FORMATS.register("multisensor", CheckpointFormat(
    description="a MultiSensorVLA checkpoint (camera VLM + lidar / radar / IMU encoders + fusion)",
    detect=lambda d: isinstance(d, dict) and bool(d.get("sensors")),
    loader="vla_engine.models.multisensor:load_multisensor", how_to_load="MultiSensorVLA.from_pretrained(folder)"))


def detect_format(data: Any) -> CheckpointFormat | None:
    """The registered format whose ``detect`` accepts the parsed config.json, or None (a vla_engine checkpoint)."""
    for name in CHECKPOINT_FORMATS:
        fmt = CHECKPOINT_FORMATS.get(name)
        if fmt.detect(data):
            return fmt
    return None
