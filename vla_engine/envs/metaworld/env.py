"""A Meta-World task with the workbench's observation layout, and its scripted expert.

``MetaWorldEnv("push-v3", image_size=96)`` is Meta-World's MT1 env of the task (goal observable, a new
object / goal position drawn from the seed at every ``reset(seed=...)``) seen through:

* ``obs = {"pixels": (H, W, 3) uint8 from the 'corner' camera, turned upright (the camera renders it upside
  down), "agent_pos": (4,) hand xyz + gripper opening}``; ``info["is_success"]`` from Meta-World's
  ``success``; the episode ends at success (as LeRobot's Meta-World env does) or after 500 steps;
* ``action_dim``, ``fps``, ``instruction``, ``task_name``, ``max_episode_steps``: what the evaluator,
  the data generator and the Rollouts tab read;
* ``make_expert()``: ``metaworld.policies``' hand-written policy of the task, which reads the full
  39-value state (object and goal positions) that the learner never sees.

MuJoCo versions: metaworld 3.1.1 declares ``mujoco==3.3.0``; this workbench runs MuJoCo 4.0 (the tabletop
tasks and the RL tasks were measured on it). The one incompatibility met is at reset: MuJoCo 4 gives a weld
equality 12 data values (the 11 of MuJoCo 3 plus one appended), and Meta-World writes 11 into the row.
:func:`_patch_mocap_welds` writes Meta-World's 11 into the first 11 (the layout MuJoCo 4 keeps) and leaves
the 12th at the model's value; every task's scripted expert is checked against it (docs/benchmarks.md).
Frames come from ``mujoco.Renderer`` as the tabletop tasks render (triton's LLVM loaded before Mesa's, see
``render.open_renderer``), with shadows and multisampling off.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from ..metaworld_tasks import FPS, INSTRUCTIONS, MAX_EPISODE_STEPS, PREFIX

_WELD = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0]  # Meta-World's weld: anchor, relpose, torquescale
_PATCHED = False


class MetaWorldUnavailable(RuntimeError):
    """The metaworld package is not installed (one-line message naming the fix)."""


def _import_metaworld():
    try:
        import metaworld
    except ImportError:
        raise MetaWorldUnavailable("Meta-World tasks need the metaworld package: pip install --no-deps "
                                   "metaworld==3.1.1 (see requirements-nodeps.txt)") from None
    _patch_mocap_welds()
    return metaworld


def _patch_mocap_welds() -> None:
    """Meta-World's ``reset_mocap_welds`` for MuJoCo 4's 12-value weld rows (a no-op change under MuJoCo 3)."""
    global _PATCHED
    if _PATCHED:
        return
    import mujoco
    from metaworld.sawyer_xyz_env import SawyerMocapBase

    def reset_mocap_welds(self) -> None:
        if self.model.nmocap > 0 and self.model.eq_data is not None:
            for i in range(self.model.eq_data.shape[0]):
                if self.model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD:
                    self.model.eq_data[i, :len(_WELD)] = _WELD

    SawyerMocapBase.reset_mocap_welds = reset_mocap_welds
    _PATCHED = True


class MetaWorldExpert:
    """``metaworld.policies``' scripted policy of the env's task, acting on the env's full state.

    Callable as ``expert(obs)`` (the workbench observation is ignored: the policy reads the privileged
    39-value state the env keeps) and as ``expert.act(env)`` (the data generator's form)."""

    def __init__(self, env: "MetaWorldEnv"):
        from metaworld.policies import ENV_POLICY_MAP

        self.env = env
        self.policy = ENV_POLICY_MAP[env.env_name]()

    def reset(self) -> None:
        """The scripted policies keep no state between steps."""

    def act(self, env: Any = None) -> np.ndarray:
        u = (env.unwrapped if env is not None else self.env)
        return np.clip(self.policy.get_action(u.raw_obs), -1.0, 1.0).astype(np.float32)

    def __call__(self, obs: Any = None) -> np.ndarray:
        return self.act(None)


class MetaWorldEnv(gymnasium.Env):
    """One Meta-World task (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": FPS}

    def __init__(self, env_name: str, image_size: int = 96, render_mode: str | None = "rgb_array",
                 max_episode_steps: int | None = None, render_images: bool = True, camera: str = "corner",
                 **kw: Any):
        if env_name.startswith(PREFIX):
            env_name = env_name[len(PREFIX):]
        if env_name not in INSTRUCTIONS:
            raise ValueError(f"unknown Meta-World task '{env_name}'; choose one of: {', '.join(INSTRUCTIONS)}")
        metaworld = _import_metaworld()
        self.env_name = env_name
        self.task_name = PREFIX + env_name
        self.instruction = INSTRUCTIONS[env_name]
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.render_images = render_images and render_mode == "rgb_array"
        self.camera = camera
        mt1 = metaworld.MT1(env_name, seed=0)
        env = mt1.train_classes[env_name](render_mode=None)  # frames come from our own mujoco.Renderer
        env.set_task(mt1.train_tasks[0])  # goal observable: the scripted policies read the goal
        env._freeze_rand_vec = False  # a new object / goal position at each reset ...
        env.seeded_rand_vec = True  # ... drawn from the env's seeded generator
        model = env.model
        model.vis.quality.shadowsize = 0  # before the first render: the renderer sizes its buffers then
        model.vis.quality.offsamples = 0
        self._env = env
        self._renderer = None  # mujoco.Renderer, made on the first frame (as the tabletop tasks render)
        limit = int(max_episode_steps or MAX_EPISODE_STEPS)
        self.max_episode_steps = min(limit, int(env.max_path_length))
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.observation_space = gymnasium.spaces.Dict({
            "pixels": gymnasium.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8),
            "agent_pos": gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32),
        })
        self.action_dim, self.state_dim, self.fps = 4, 4, FPS
        self.raw_obs: np.ndarray | None = None
        self._steps = 0

    # -- observations -----------------------------------------------------------------------------
    def _frame(self) -> np.ndarray:
        if not self.render_images:
            return np.zeros((self.image_size, self.image_size, 3), np.uint8)
        if self._renderer is None:
            from ..render import open_renderer

            self._renderer = open_renderer(self._env.model, self.image_size)
        self._renderer.update_scene(self._env.data, camera=self.camera)
        img = self._renderer.render()  # (H, W, 3) uint8
        if self.camera.startswith("corner"):
            img = img[::-1, ::-1]  # the corner cameras render upside down: turn it 180 degrees
        return np.ascontiguousarray(img)

    def _obs(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        self.raw_obs = np.asarray(raw, dtype=np.float64)
        return {"pixels": self._frame(), "agent_pos": self.raw_obs[:4].astype(np.float32)}

    # -- gymnasium ----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(int(seed))  # the object / goal positions of this episode come from the seed
        raw, info = self._env.reset()
        self._steps = 0
        return self._obs(raw), {**info, "instruction": self.instruction, "is_success": False}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float32).reshape(4), -1.0, 1.0)
        raw, reward, _, truncated, info = self._env.step(a)
        self._steps += 1
        success = bool(info.get("success", 0.0))
        truncated = bool(truncated) or self._steps >= self.max_episode_steps
        info = {**info, "is_success": success}
        return self._obs(raw), float(reward), success, truncated and not success, info

    def render(self):
        return self._frame()

    def make_expert(self) -> MetaWorldExpert:
        return MetaWorldExpert(self)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._env.close()
