"""Gymnasium's MuJoCo locomotion / manipulation ids as state-based tasks: ``gym/Hopper-v5``, ...

Each id registers in ``vla_engine.registry.TASKS`` under the ``gym/`` prefix with the same meta as the
tabletop tasks (``action_dim``, ``state_dim``, ``fps``, ``max_episode_steps``, ...) plus ``family: gym``,
``state_based: True`` and ``has_expert: False``: there is no scripted expert, these tasks are for RL.
Registering is light (the numbers below are written out; MuJoCo loads when an env is built).

``make_env("gym/Hopper-v5")`` builds a :class:`GymTaskEnv`: the gymnasium env with the workbench's
observation layout (``{"agent_pos": state, "pixels": frame}``), the attributes the evaluator and the
Rollouts tab read (``action_dim``, ``fps``, ``instruction``, ``task_name``) and ``info["is_success"]``
when an episode's return reaches the id's ``reward_threshold`` (the bar gymnasium itself names as solved).
Frames are rendered only when read (``obs["pixels"]``), with shadows off: an RL rollout that never looks at
pixels pays nothing for them. The RL trainers step the raw gymnasium env (vector observations) instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator

import gymnasium
import numpy as np

from vla_engine.registry import TASKS

PREFIX = "gym/"


@dataclass(frozen=True)
class GymTask:
    """A gymnasium id as a workbench task; calling it builds its env (``make_env`` keywords)."""

    env_id: str
    state_dim: int
    action_dim: int
    max_episode_steps: int
    dt: float  # seconds per control step (the env's frame skip x timestep)
    reward_threshold: float | None  # episode return counted as success (gymnasium's "solved" bar)
    instruction: str
    description: str

    @property
    def name(self) -> str:
        return PREFIX + self.env_id

    def meta(self) -> dict[str, Any]:
        return {
            "action_dim": self.action_dim,
            "state_dim": self.state_dim,
            "fps": max(1, round(1.0 / self.dt)),
            "max_episode_steps": self.max_episode_steps,
            "description": self.description,
            "gym_id": self.env_id,
            "camera_names": ["front"],
            "state_names": [f"obs_{i}" for i in range(self.state_dim)],
            "action_names": [f"a_{i}" for i in range(self.action_dim)],
            "example_instruction": self.instruction,
            "family": "gym",
            "state_based": True,
            "has_expert": False,
            "reward_threshold": self.reward_threshold,
        }

    def __call__(self, **kwargs: Any) -> "GymTaskEnv":
        return GymTaskEnv(self, **kwargs)


GYM_TASKS = (
    GymTask("Hopper-v5", 11, 3, 1000, 0.008, 3800.0, "hop forward", "Hopper: a one-legged robot hops forward"),
    GymTask("HalfCheetah-v5", 17, 6, 1000, 0.05, 4800.0, "run forward",
            "HalfCheetah: a planar two-legged cheetah runs forward"),
    GymTask("Walker2d-v5", 17, 6, 1000, 0.008, 3000.0, "walk forward",
            "Walker2d: a planar biped walks forward"),
    GymTask("Ant-v5", 105, 8, 1000, 0.05, 6000.0, "walk forward", "Ant: a four-legged robot walks forward"),
    GymTask("InvertedPendulum-v5", 4, 1, 1000, 0.04, 950.0, "balance the pole",
            "InvertedPendulum: keep a pole upright on a cart"),
    GymTask("Reacher-v5", 10, 2, 50, 0.02, -3.75, "reach the target",
            "Reacher: a two-joint arm reaches a random target"),
    GymTask("Pusher-v5", 23, 7, 100, 0.05, -30.0, "push the object to the goal",
            "Pusher: a seven-joint arm pushes an object to a goal"),
    GymTask("Pendulum-v1", 3, 1, 200, 0.05, -200.0, "swing the pendulum up",
            "Pendulum (classic control): swing a pendulum up and hold it"),
)
# Walker2d has no reward_threshold in gymnasium; 3000 is the usual "walks well" bar. Pusher's and Pendulum's
# are likewise chosen here (a pushed object ends near the goal; the pendulum is held upright).

for _task in GYM_TASKS:
    if _task.name not in TASKS:
        TASKS.register(_task.name, _task, **_task.meta())


def gym_env_id(task: str) -> str:
    """The gymnasium id of a task name (``gym/Hopper-v5`` -> ``Hopper-v5``); other ids pass through."""
    return task[len(PREFIX):] if task.startswith(PREFIX) else task


def _shadows_off(env: gymnasium.Env) -> None:
    """Small renders without MuJoCo's 4096 shadow map: about 2 ms a 96x96 frame instead of 50."""
    model = getattr(env.unwrapped, "model", None)
    if model is not None:
        model.vis.quality.shadowsize = 0


class _LazyObs(Mapping):
    """An observation dict whose ``pixels`` entry renders on first read."""

    def __init__(self, state: np.ndarray, render):
        self._state, self._render, self._pixels = state, render, None

    def __getitem__(self, key: str) -> Any:
        if key == "agent_pos":
            return self._state
        if key == "pixels":
            if self._pixels is None:
                self._pixels = self._render()
            return self._pixels
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("agent_pos", "pixels"))

    def __len__(self) -> int:
        return 2


class GymTaskEnv(gymnasium.Env):
    """A gymnasium id with the workbench's observation layout and success flag (not a Wrapper, so
    ``env.unwrapped`` is this object and carries ``action_dim`` / ``instruction`` / ``fps``)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, task: GymTask, image_size: int = 96, render_mode: str | None = "rgb_array",
                 max_episode_steps: int | None = None, render_images: bool = True, **kw: Any):
        self.task = task
        self.render_mode = render_mode
        self.image_size = image_size
        self.render_images = render_images and render_mode == "rgb_array"
        limit = max_episode_steps or task.max_episode_steps
        extra = {"width": image_size, "height": image_size} if self.render_images and task.env_id != "Pendulum-v1" \
            else {}
        self.env = gymnasium.make(task.env_id, render_mode=render_mode if self.render_images else None,
                                  max_episode_steps=limit, **extra, **kw)
        if self.render_images:
            _shadows_off(self.env)
        self.action_space = self.env.action_space
        self.observation_space = gymnasium.spaces.Dict({
            "agent_pos": self.env.observation_space,
            "pixels": gymnasium.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
        })
        self.action_dim, self.state_dim = task.action_dim, task.state_dim
        self.fps = max(1, round(1.0 / task.dt))
        self.max_episode_steps = limit
        self.task_name = task.name
        self.instruction = task.instruction
        self._return = 0.0

    def _obs(self, state: np.ndarray) -> _LazyObs:
        return _LazyObs(np.asarray(state, dtype=np.float32), self._frame)

    def _frame(self) -> np.ndarray:
        if not self.render_images:
            return np.zeros((self.image_size, self.image_size, 3), np.uint8)
        frame = np.asarray(self.env.render(), dtype=np.uint8)
        if frame.shape[:2] != (self.image_size, self.image_size):  # classic-control renders its own size
            from PIL import Image

            frame = np.asarray(Image.fromarray(frame).resize((self.image_size, self.image_size)))
        return frame

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        state, info = self.env.reset(seed=seed, options=options)
        self._return = 0.0
        return self._obs(state), {**info, "instruction": self.instruction, "is_success": False}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float32), self.action_space.low, self.action_space.high)
        state, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        done = terminated or truncated
        threshold = self.task.reward_threshold
        info = {**info, "is_success": bool(done and threshold is not None and self._return >= threshold)}
        return self._obs(state), float(reward), terminated, truncated, info

    def render(self):
        return self._frame()

    def close(self) -> None:
        self.env.close()
