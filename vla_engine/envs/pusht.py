"""PushT (gym-pusht, the Diffusion Policy / LeRobot benchmark) as a task family: ``pusht/push-t``.

Registering is light (the numbers are written out here); ``gym_pusht`` (pymunk, pygame) loads when an env is
built. ``make_env("pusht/push-t", image_size=96)`` builds :class:`PushTTaskEnv`: gym-pusht's ``PushTEnv`` with
``obs_type="pixels_agent_pos"`` seen through the workbench's layout:

* ``obs = {"pixels": (H, W, 3) uint8 top-down view, "agent_pos": (2,) float32}`` (pixel coordinates 0..512, as
  in the hub dataset ``lerobot/pusht``); the action is the agent's target position, 2 values in 0..512;
* ``info["coverage"]``: the fraction of the goal region the T block covers now; ``info["max_coverage"]``: the
  most it has covered this episode; ``info["is_success"]``: ``max_coverage >= 0.95``. The episode ends at
  success (as gym-pusht does) or after 300 steps (LeRobot's ``episode_length``);
* ``episode_metrics`` / ``summarize_metrics`` put the coverage into the evaluator's rows and summary
  (``eval/coverage``: the mean over episodes of each episode's max coverage), so an evaluation reports both
  figures Diffusion Policy and LeRobot report: coverage and success rate.

:func:`coverage` is the same measure computed from poses alone (shapely polygons of the T), so a recorded
episode (``info["block_pose"]``) can be scored without pymunk.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable

import gymnasium
import numpy as np

from vla_engine.registry import TASKS

PREFIX = "pusht/"
TASK = "push-t"
INSTRUCTION = "push the T-shaped block onto the target"
FPS = 10
MAX_EPISODE_STEPS = 300  # LeRobot's PushtEnv episode_length
SUCCESS_COVERAGE = 0.95  # Diffusion Policy's success_threshold
GOAL_POSE = (256.0, 256.0, math.pi / 4)  # gym-pusht's fixed goal: x, y, angle
T_SCALE, T_LENGTH = 30.0, 4.0  # gym-pusht's add_tee(scale=30, length=4): a 120x30 bar on a 30x90 stem
INSTALL_HINT = ("pip install 'vla-engine[pusht]' && pip install --no-deps gym-pusht==0.1.8 "
                "(see requirements-nodeps.txt)")


class PushTUnavailable(RuntimeError):
    """gym-pusht (or pymunk / pygame) is not installed; the message is one line naming the fix."""


# -- coverage ----------------------------------------------------------------------------------------------
def t_polygon(pose: Iterable[float]):
    """The T block at ``pose`` (x, y, angle) as a shapely polygon, built as gym-pusht builds it: the two
    rectangles in body coordinates, rotated by the angle about the body origin, then moved to (x, y)."""
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    x, y, angle = (float(v) for v in pose)
    s, half = T_SCALE, T_LENGTH * T_SCALE / 2
    bar = [(-half, s), (half, s), (half, 0.0), (-half, 0.0)]
    stem = [(-s / 2, s), (-s / 2, T_LENGTH * s), (s / 2, T_LENGTH * s), (s / 2, s)]
    c, si = math.cos(angle), math.sin(angle)

    def world(pts):
        return Polygon([(x + c * px - si * py, y + si * px + c * py) for px, py in pts])

    return unary_union([world(bar), world(stem)])


def coverage(block_pose: Iterable[float], goal_pose: Iterable[float] = GOAL_POSE) -> float:
    """Area of the T at ``block_pose`` inside the T at ``goal_pose``, as a fraction of the T's area (0..1)."""
    block, goal = t_polygon(block_pose), t_polygon(goal_pose)
    return float(goal.intersection(block).area / goal.area)


def max_coverage(block_poses: Iterable[Iterable[float]], goal_pose: Iterable[float] = GOAL_POSE) -> float:
    """The most an episode's block poses covered the goal (the episode's PushT score)."""
    return max((coverage(p, goal_pose) for p in block_poses), default=0.0)


# -- the task ----------------------------------------------------------------------------------------------
class PushTTask:
    """PushT as a workbench task; calling it builds its env (``make_env`` keywords)."""

    name = PREFIX + TASK
    instruction = INSTRUCTION

    def meta(self) -> dict[str, Any]:
        return {
            "action_dim": 2,
            "state_dim": 2,
            "fps": FPS,
            "max_episode_steps": MAX_EPISODE_STEPS,
            "description": "PushT (gym-pusht): push a T-shaped block onto a fixed T-shaped target with a round "
                           "agent; success when the block covers >= 95% of the target",
            "gym_id": "gym_pusht/PushT-v0",
            "camera_names": ["front"],
            "state_names": ["agent_x", "agent_y"],
            "action_names": ["target_x", "target_y"],
            "example_instruction": INSTRUCTION,
            "family": "pusht",
            "state_based": False,
            "has_expert": False,
            "dataset": "lerobot/pusht",
        }

    def __call__(self, **kwargs: Any) -> "PushTTaskEnv":
        return PushTTaskEnv(**kwargs)


def _import_pusht():
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame prints a banner on import otherwise
    try:
        from gym_pusht.envs.pusht import PushTEnv
    except ImportError as e:
        raise PushTUnavailable(f"the PushT task needs gym-pusht ({e.name or e} is missing): {INSTALL_HINT}") from None
    return PushTEnv


class PushTTaskEnv(gymnasium.Env):
    """gym-pusht's PushT with the workbench's observation layout and coverage bookkeeping (module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": FPS}

    def __init__(self, image_size: int = 96, render_mode: str | None = "rgb_array",
                 max_episode_steps: int | None = None, render_images: bool = True, **kw: Any):
        if kw:
            raise TypeError(f"PushT takes no options {sorted(kw)}; it takes image_size, max_episode_steps, "
                            f"render_images")
        PushTEnv = _import_pusht()
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.render_images = bool(render_images)
        obs_type = "pixels_agent_pos" if self.render_images else "state"
        self._env = PushTEnv(obs_type=obs_type, render_mode="rgb_array", observation_width=self.image_size,
                             observation_height=self.image_size, visualization_width=self.image_size,
                             visualization_height=self.image_size)
        self.max_episode_steps = int(max_episode_steps or MAX_EPISODE_STEPS)
        self.action_space = gymnasium.spaces.Box(0.0, 512.0, (2,), np.float32)
        self.observation_space = gymnasium.spaces.Dict({
            "pixels": gymnasium.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8),
            "agent_pos": gymnasium.spaces.Box(0.0, 512.0, (2,), np.float32),
        })
        self.action_dim, self.state_dim, self.fps = 2, 2, FPS
        self.instruction, self.task_name = INSTRUCTION, PREFIX + TASK
        self._steps, self._max_cov = 0, 0.0

    def _obs(self, raw: Any) -> dict[str, np.ndarray]:
        if self.render_images:
            return {"pixels": np.ascontiguousarray(raw["pixels"]), "agent_pos": np.asarray(raw["agent_pos"], np.float32)}
        return {"pixels": np.zeros((self.image_size, self.image_size, 3), np.uint8),
                "agent_pos": np.asarray(raw[:2], np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        raw, info = self._env.reset(seed=seed, options=options)
        self._steps = 0
        self._max_cov = float(self._env._get_coverage())
        info = {**info, "instruction": INSTRUCTION, "coverage": self._max_cov, "max_coverage": self._max_cov,
                "is_success": self._max_cov >= SUCCESS_COVERAGE}
        return self._obs(raw), info

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), 0.0, 512.0)
        raw, reward, _, _, info = self._env.step(a)
        self._steps += 1
        cov = float(info["coverage"])
        self._max_cov = max(self._max_cov, cov)
        success = self._max_cov >= SUCCESS_COVERAGE
        info = {**info, "coverage": cov, "max_coverage": self._max_cov, "is_success": success}
        truncated = self._steps >= self.max_episode_steps and not success
        return self._obs(raw), float(reward), success, truncated, info

    def render(self):
        return self._env._render(visualize=False) if self.render_images else None

    # -- what the evaluator adds to its rows and summary --------------------------------------------------
    @staticmethod
    def episode_metrics(info: dict[str, Any]) -> dict[str, float]:
        return {"coverage": float(info.get("max_coverage", 0.0))}

    @staticmethod
    def summarize_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
        covs = [float(r["coverage"]) for r in rows if "coverage" in r]
        return {"eval/coverage": float(np.mean(covs)) if covs else 0.0}

    def close(self) -> None:
        self._env.close()


if PREFIX + TASK not in TASKS:
    _task = PushTTask()
    TASKS.register(_task.name, _task, **_task.meta())
