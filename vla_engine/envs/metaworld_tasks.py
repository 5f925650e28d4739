"""Meta-World's 50 Sawyer manipulation tasks as a task family: ``metaworld/reach-v3``, ... (each one is
Meta-World's MT1 of that task: a new object / goal position per seed) and the suites ``metaworld/mt10`` and
``metaworld/mt50``.

Registering is light (names, instructions and suites are written out here; ``metaworld`` and MuJoCo load
when an env is built). Each task registers in ``vla_engine.registry.TASKS`` with the tabletop tasks' meta
(``action_dim`` 4: end-effector xyz + gripper, ``state_dim`` 4: hand position + gripper opening, ``fps``,
``max_episode_steps`` 500, the instruction) plus ``family: metaworld``, ``has_expert: True`` and the suites
it belongs to. ``make_env("metaworld/push-v3")`` builds :class:`vla_engine.envs.metaworld.env.MetaWorldEnv`
(camera images from the ``corner`` camera, flipped upright; the scripted expert of ``metaworld.policies``).

Instructions are written from each task's name and goal, one imperative sentence per task, as LeRobot's
Meta-World integration gives one description per task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vla_engine.registry import TASKS, RegistryError

PREFIX = "metaworld/"
MAX_EPISODE_STEPS = 500  # Meta-World's max_path_length
FPS = 80  # 1 / (frame_skip 5 x timestep 0.0025 s)

# task -> instruction (what the gripper must do, in words)
INSTRUCTIONS: dict[str, str] = {
    "assembly-v3": "pick up the nut and place it onto the peg",
    "basketball-v3": "pick up the ball and dunk it into the basket",
    "bin-picking-v3": "grasp the puck in one bin and place it into the other bin",
    "box-close-v3": "grasp the lid and close the box with it",
    "button-press-topdown-v3": "press the button from the top",
    "button-press-topdown-wall-v3": "press the button behind the wall from the top",
    "button-press-v3": "press the button from the front",
    "button-press-wall-v3": "press the button behind the wall from the front",
    "coffee-button-v3": "push the button on the coffee machine",
    "coffee-pull-v3": "pull the mug away from the coffee machine",
    "coffee-push-v3": "push the mug under the coffee machine",
    "dial-turn-v3": "rotate the dial a full turn",
    "disassemble-v3": "pick the nut off the peg",
    "door-close-v3": "close the door by its handle",
    "door-lock-v3": "turn the lock of the door to lock it",
    "door-open-v3": "open the door by its handle",
    "door-unlock-v3": "turn the lock of the door to unlock it",
    "drawer-close-v3": "push the drawer closed",
    "drawer-open-v3": "pull the drawer open",
    "faucet-close-v3": "turn the faucet handle to close it",
    "faucet-open-v3": "turn the faucet handle to open it",
    "hammer-v3": "pick up the hammer and hammer the nail in",
    "hand-insert-v3": "insert the gripper into the hole",
    "handle-press-side-v3": "press the handle down from the side",
    "handle-press-v3": "press the handle down",
    "handle-pull-side-v3": "pull the handle up from the side",
    "handle-pull-v3": "pull the handle up",
    "lever-pull-v3": "pull the lever up",
    "peg-insert-side-v3": "pick up the peg and insert it into the hole from the side",
    "peg-unplug-side-v3": "pull the peg out of the hole from the side",
    "pick-out-of-hole-v3": "pick the puck out of the hole and lift it to the goal",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "pick-place-wall-v3": "pick up the puck, lift it over the wall and place it at the goal",
    "plate-slide-back-side-v3": "slide the plate sideways back out of the cabinet",
    "plate-slide-back-v3": "slide the plate back out of the cabinet",
    "plate-slide-side-v3": "slide the plate sideways into the cabinet",
    "plate-slide-v3": "slide the plate into the cabinet",
    "push-back-v3": "push the puck backwards to the goal",
    "push-v3": "push the puck to the goal",
    "push-wall-v3": "push the puck around the wall to the goal",
    "reach-v3": "reach the goal position with the gripper",
    "reach-wall-v3": "reach over the wall to the goal position",
    "shelf-place-v3": "pick up the puck and place it on the shelf",
    "soccer-v3": "kick the ball into the goal",
    "stick-pull-v3": "grasp the stick and pull the box with it",
    "stick-push-v3": "grasp the stick and push the box with it",
    "sweep-into-v3": "sweep the puck into the hole",
    "sweep-v3": "sweep the puck off the table",
    "window-close-v3": "push the window closed",
    "window-open-v3": "push the window open",
}

# Meta-World's MT10 (the tasks of metaworld.MT10) and MT50 (all 50)
MT10 = ("reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
        "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3")
MT50 = tuple(INSTRUCTIONS)
SUITES: dict[str, tuple[str, ...]] = {"mt10": MT10, "mt50": MT50}  # MT1 is any one task: metaworld/<name>


@dataclass(frozen=True)
class MetaWorldTask:
    """A Meta-World task as a workbench task; calling it builds its env (``make_env`` keywords)."""

    env_name: str  # Meta-World's name, e.g. "push-v3"

    @property
    def name(self) -> str:
        return PREFIX + self.env_name

    @property
    def instruction(self) -> str:
        return INSTRUCTIONS[self.env_name]

    def meta(self) -> dict[str, Any]:
        return {
            "action_dim": 4,
            "state_dim": 4,
            "fps": FPS,
            "max_episode_steps": MAX_EPISODE_STEPS,
            "description": f"Meta-World {self.env_name}: {self.instruction} (Sawyer arm, 'corner' camera)",
            "gym_id": f"Meta-World/{self.env_name}",
            "camera_names": ["front"],
            "state_names": ["hand_x", "hand_y", "hand_z", "gripper"],
            "action_names": ["dx", "dy", "dz", "grip"],
            "example_instruction": self.instruction,
            "family": "metaworld",
            "state_based": False,
            "has_expert": True,
            "suites": [PREFIX + s for s, tasks in SUITES.items() if self.env_name in tasks],
        }

    def __call__(self, **kwargs: Any):
        from .metaworld.env import MetaWorldEnv

        return MetaWorldEnv(self.env_name, **kwargs)


for _name in MT50:
    _task = MetaWorldTask(_name)
    if _task.name not in TASKS:
        TASKS.register(_task.name, _task, **_task.meta())


def is_suite(name: str) -> bool:
    """Whether ``name`` names a Meta-World suite (``metaworld/mt10``, ``mt50``) rather than one task."""
    key = name[len(PREFIX):] if name.startswith(PREFIX) else name
    return key.lower() in SUITES


def suite_tasks(suite: str) -> list[str]:
    """The task names of a suite: ``mt10`` / ``metaworld/mt10`` -> ``["metaworld/reach-v3", ...]``."""
    key = suite[len(PREFIX):] if suite.startswith(PREFIX) else suite
    if key.lower() not in SUITES:
        raise RegistryError(f"unknown Meta-World suite '{suite}'; choose one of: "
                       f"{', '.join(PREFIX + s for s in SUITES)}")
    return [PREFIX + t for t in SUITES[key.lower()]]


def is_suite(name: str) -> bool:
    key = name[len(PREFIX):] if name.startswith(PREFIX) else name
    return key.lower() in SUITES
