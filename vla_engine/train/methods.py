"""The training methods: a registry of trainers, and the methods that later versions add.

A preset names its method; the method names the trainer class and the training-config type it
reads. Methods that are planned but not built yet still validate, so their presets load, and
running one says which capability is missing.
"""

from __future__ import annotations

from ..registry import TRAINERS

TRAINERS.register("bc", "vla_engine.train.il.bc:BehavioralCloning", config_type="il",
                  description="Behaviour cloning: supervised regression of demonstrated actions")
TRAINERS.register("sft", "vla_engine.train.finetune:VLAFineTuner", config_type="finetune",
                  description="Supervised fine-tuning of a VLA on demonstrations (freeze options)")

# method -> (training config type, what is missing)
PLANNED_METHODS: dict[str, tuple[str, str]] = {
    "dagger": ("il", "DAgger (interactive imitation with the scripted expert)"),
    "gail": ("il", "GAIL (adversarial imitation)"),
    "ppo": ("rl", "PPO reinforcement learning"),
    "sac": ("rl", "SAC reinforcement learning"),
    "grpo": ("rl", "GRPO reinforcement learning"),
    "align": ("pretrain", "VLM pretraining stage 1: vision-language alignment"),
    "instruct": ("pretrain", "VLM pretraining stage 2: visual instruction tuning"),
}


class CapabilityMissing(RuntimeError):
    """A preset or call asks for a method or option this version does not have yet."""


def all_methods() -> list[str]:
    return TRAINERS.names() + list(PLANNED_METHODS)


def method_config_type(method: str) -> str:
    if method in TRAINERS:
        return TRAINERS.meta(method)["config_type"]
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
