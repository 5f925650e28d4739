"""The training methods: a registry of trainers.

A preset names its method; the method names the trainer class and the training-config type it
reads. Every method of the design is registered here with the module that holds its trainer; a
method whose module is not in this version yet still validates (its presets load), and running it
says which capability is missing. Adding a trainer is its own file plus its line below.
"""

from __future__ import annotations

import importlib.util

from ..registry import TRAINERS

# method -> (trainer "module:Class", training config type, description)
METHODS: dict[str, tuple[str, str, str]] = {
    "bc": ("vla_engine.train.il.bc:BehavioralCloning", "il",
           "Behaviour cloning: supervised regression of demonstrated actions"),
    "sft": ("vla_engine.train.finetune:VLAFineTuner", "finetune",
            "Supervised fine-tuning of a VLA on demonstrations (freeze options)"),
    "dagger": ("vla_engine.train.il.dagger:DAgger", "il",
               "DAgger (interactive imitation with the scripted expert)"),
    "gail": ("vla_engine.train.il.gail:GAIL", "il", "GAIL (adversarial imitation)"),
    "offline-bc": ("vla_engine.train.il.offline_bc:OfflineBC", "il",
                   "Offline BC of a state MLP on a Minari dataset (plain, filtered or return/advantage-weighted)"),
    "ppo": ("vla_engine.train.rl.ppo:PPOTrainer", "rl", "PPO reinforcement learning"),
    "sac": ("vla_engine.train.rl.sac:SACTrainer", "rl", "SAC reinforcement learning"),
    "grpo": ("vla_engine.train.rl.grpo:GRPOTrainer", "rl", "GRPO reinforcement learning"),
    "align": ("vla_engine.train.pretrain.align:AlignmentTrainer", "pretrain",
              "VLM pretraining stage 1: vision-language alignment"),
    "instruct": ("vla_engine.train.pretrain.instruct:InstructionTrainer", "pretrain",
                 "VLM pretraining stage 2: visual instruction tuning"),
}


def _module_present(target: str) -> bool:
    module = target.split(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its package is not there either
        return False


# method -> (training config type, what is missing): the methods whose trainer is not in this version
PLANNED_METHODS: dict[str, tuple[str, str]] = {}
for _name, (_target, _ctype, _desc) in METHODS.items():
    if _module_present(_target):
        TRAINERS.register(_name, _target, config_type=_ctype, description=_desc)
    else:
        PLANNED_METHODS[_name] = (_ctype, _desc)


class CapabilityMissing(RuntimeError):
    """A preset or call asks for a method or option this version does not have yet."""


def all_methods() -> list[str]:
    return TRAINERS.names() + list(PLANNED_METHODS)


def method_config_type(method: str) -> str:
    if method in TRAINERS:
        return TRAINERS.meta(method, load=False)["config_type"]
    if method in PLANNED_METHODS:
        return PLANNED_METHODS[method][0]
    raise CapabilityMissing(f"unknown training method '{method}'; choose one of: {', '.join(all_methods())}")


def get_trainer(method: str):
    """The trainer class for ``method``, or a one-line CapabilityMissing saying what is not built."""
    if method in PLANNED_METHODS:
        raise CapabilityMissing(
            f"training method '{method}' ({PLANNED_METHODS[method][1]}) is not built in this version of "
            f"vla_engine yet; the preset is valid and will run once it lands. Methods available now: "
            f"{', '.join(TRAINERS.names())}"
        )
    return TRAINERS.get(method)
