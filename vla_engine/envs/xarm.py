"""gym-xarm's lift task (the FOWM / TD-MPC xArm benchmark) as ``xarm/lift``: registered, and refused on this stack
with one line saying why.

gym-xarm 0.1.1 cannot run next to the workbench's MuJoCo 4.0 and gymnasium 1.x, for three reasons measured here:

* it pins ``mujoco>=2.3.7,<3``, and under MuJoCo 4.0 its helper library (gymnasium-robotics 1.4.2's
  ``mujoco_utils.set_joint_qpos``) fails its joint-type assertion while the env is still being built;
* it renders with ``MujocoRenderer.render(render_mode, camera_name="camera0")``, a signature gymnasium 1.x
  removed (the camera is chosen when the renderer is made);
* gymnasium-robotics imports pettingzoo, which neither declares for this use.

So ``make_env("xarm/lift")`` raises :class:`XArmUnavailable` naming the reasons that hold on the installed
versions and what to do (a separate environment with ``mujoco==2.3.7`` and ``gymnasium<1``, where LeRobot's
own xArm setup runs). The task's numbers (4-D action and state, 84 px camera, 25 fps, 25-step episodes)
stay registered so the xArm datasets (:class:`vla_engine.data.XArmDataset`) train models of the right shape.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Any

from vla_engine.registry import TASKS

PREFIX = "xarm/"
INSTRUCTION = "pick up the cube and lift it"


class XArmUnavailable(RuntimeError):
    """gym-xarm cannot run on the installed MuJoCo / gymnasium; the message is one line naming why."""


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _major(version: str | None) -> int:
    return int(version.split(".")[0]) if version else 0


def blockers() -> list[str]:
    """Why gym-xarm cannot run with the installed packages (empty when nothing here stops it)."""
    reasons = []
    if importlib.util.find_spec("gym_xarm") is None:
        reasons.append("gym-xarm is not installed")
    mujoco, gym = _version("mujoco"), _version("gymnasium")
    if _major(mujoco) >= 3:
        reasons.append(f"gym-xarm needs mujoco<3 (installed: {mujoco}; gymnasium-robotics' joint helpers fail on it)")
    if _major(gym) >= 1:
        reasons.append(f"gym-xarm calls MujocoRenderer.render(camera_name=...), which gymnasium {gym} removed")
    return reasons


class XArmTask:
    """``xarm/lift``: the numbers of gym-xarm's XarmLift-v0; building it raises :class:`XArmUnavailable`."""

    name = PREFIX + "lift"
    instruction = INSTRUCTION

    def meta(self) -> dict[str, Any]:
        return {
            "action_dim": 4,
            "state_dim": 4,
            "fps": 25,
            "max_episode_steps": 25,
            "description": "xArm lift (gym-xarm, FOWM): lift the cube above a height threshold; not runnable next "
                           "to MuJoCo 4 / gymnasium 1.x (see vla_engine/envs/xarm.py)",
            "gym_id": "gym_xarm/XarmLift-v0",
            "camera_names": ["front"],
            "state_names": ["eef_x", "eef_y", "eef_z", "gripper"],
            "action_names": ["dx", "dy", "dz", "grip"],
            "example_instruction": INSTRUCTION,
            "family": "xarm",
            "state_based": False,
            "has_expert": False,
            "dataset": "lerobot/xarm_lift_medium",
            "runnable": False,
        }

    def __call__(self, **kwargs: Any):
        reasons = blockers()
        raise XArmUnavailable(
            f"xarm/lift cannot run here: {'; '.join(reasons) or 'gym-xarm 0.1.1 targets mujoco<3 and gymnasium<1'}; "
            f"evaluate it in a separate environment with `pip install gym-xarm==0.1.1 'gymnasium<1' mujoco==2.3.7` "
            f"(LeRobot's xArm setup), and train here on XArmDataset")


if XArmTask.name not in TASKS:
    _task = XArmTask()
    TASKS.register(_task.name, _task, **_task.meta())
