"""The ALOHA sim tasks (gym-aloha) as a task family: ``aloha/insertion`` and ``aloha/transfer-cube``.

Registering is light; MuJoCo and gym-aloha's assets load when an env is built. gym-aloha 0.1.5 runs its
scenes through dm_control, and neither dm_control release that installs here runs on this stack's MuJoCo 4.0
(1.0.41 and 1.0.50 both stop at ``Physics.from_xml_path``: ``MjModel`` has no ``flex_bandwidth`` /
``flex_vertedge``), and gym-aloha pins ``mujoco<3.9``. So :class:`AlohaEnv` steps gym-aloha's own scene files
(``bimanual_viperx_{insertion,transfer_cube}.xml``, installed with ``pip install --no-deps gym-aloha``) with
the ``mujoco`` bindings directly and ports what the dm_control task classes do, line for line:

* action (14): six joint targets and a normalised gripper opening (0 closed, 1 open) per arm; the grippers are
  unnormalised to finger positions (two mirrored fingers each), written to ``data.ctrl``, and the physics
  steps 10 x 2 ms per control step (50 fps, dm_control's ``control_timestep`` 0.02);
* state (14): the arms' joint positions with the grippers normalised, as gym-aloha's ``agent_pos``;
* reset: MuJoCo's reset, the start arm pose into ``qpos`` and ``ctrl``, the cube (or peg and socket) at the
  pose gym-aloha's ``sample_box_pose`` / ``sample_insertion_pose`` draw from the seed;
* reward 0..4 from the contact pairs exactly as gym-aloha scores them; success (and the episode's end) at 4.

Rendering: gym-aloha renders three 640x480 cameras with MuJoCo's 4096 shadow map on every step (about 0.4
frames/s here). This env renders one camera (``top``, the one the hub datasets record) at ``image_size``
with shadows and multisampling off; ``obs["pixels"]`` is ``{"top": frame}`` so a batch key comes out as
``observation.images.top``, the key of ``lerobot/aloha_sim_*``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from vla_engine.registry import TASKS

PREFIX = "aloha/"
FPS = 50
SUBSTEPS = 10  # control step 0.02 s / MuJoCo timestep 0.002 s
MAX_EPISODE_STEPS = 400  # LeRobot's AlohaEnv episode_length
CAMERA = "top"
INSTALL_HINT = "pip install --no-deps gym-aloha==0.1.5 (its scene files; see requirements-nodeps.txt)"
# task name -> (gym-aloha scene, instruction, hub dataset)
TASK_INFO = {
    "insertion": ("bimanual_viperx_insertion.xml", "insert the peg into the socket",
                  "lerobot/aloha_sim_insertion_human"),
    "transfer-cube": ("bimanual_viperx_transfer_cube.xml",
                      "pick up the cube with the right arm and transfer it to the left arm",
                      "lerobot/aloha_sim_transfer_cube_human"),
}


# gym-aloha's JOINTS / ACTIONS: per arm six joints and the gripper
JOINT_NAMES = [f"{side}_arm_{j}" for side in ("left", "right") for j in
               ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")]
# the insertion scene's four socket walls (gym-aloha's reward checks each)
_SOCKETS = [f"socket-{i}" for i in range(1, 5)]


class AlohaUnavailable(RuntimeError):
    """gym-aloha's files are not installed; the message is one line naming the fix."""


class AlohaTask:
    """An ALOHA sim task as a workbench task; calling it builds its env (``make_env`` keywords)."""

    def __init__(self, task: str):
        self.task = task
        self.name = PREFIX + task
        self.instruction = TASK_INFO[task][1]

    def meta(self) -> dict[str, Any]:
        return {
            "action_dim": 14,
            "state_dim": 14,
            "fps": FPS,
            "max_episode_steps": MAX_EPISODE_STEPS,
            "description": f"ALOHA sim {self.task} (gym-aloha scene on MuJoCo): {self.instruction}; two ViperX "
                           f"arms under joint-position control, success at reward 4",
            "gym_id": f"gym_aloha/Aloha{self.task.title().replace('-', '')}-v0",
            "camera_names": [CAMERA],
            "state_names": list(JOINT_NAMES),
            "action_names": list(JOINT_NAMES),
            "example_instruction": self.instruction,
            "family": "aloha",
            "state_based": False,
            "has_expert": False,
            "dataset": TASK_INFO[self.task][2],
        }

    def __call__(self, **kwargs: Any) -> "AlohaEnv":
        return AlohaEnv(self.task, **kwargs)


def _aloha_files() -> Path:
    """gym-aloha's package folder, found without importing it (its env module imports dm_control)."""
    spec = importlib.util.find_spec("gym_aloha")
    if spec is None or not spec.submodule_search_locations:
        raise AlohaUnavailable(f"the ALOHA tasks need gym-aloha's scene files: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def _constants():
    _aloha_files()  # a missing package: the one-line error
    from gym_aloha import constants  # plain numbers and helpers, no dm_control

    return constants


def qpos_state(c: Any, qpos: np.ndarray) -> np.ndarray:
    """gym-aloha's ``get_qpos``: each arm's six joints and its normalised gripper (qpos 0..7 left, 8..15 right)."""
    left, right = qpos[:8], qpos[8:16]
    return np.concatenate([left[:6], [c.normalize_puppet_gripper_position(left[6])],
                           right[:6], [c.normalize_puppet_gripper_position(right[6])]])


def action_to_ctrl(c: Any, a: np.ndarray) -> np.ndarray:
    """gym-aloha's ``before_step``: a gripper opening 0..1 -> the two mirrored finger positions."""
    lg, rg = c.unnormalize_puppet_gripper_position(a[6]), c.unnormalize_puppet_gripper_position(a[13])
    return np.concatenate([a[:6], [lg, -lg], a[7:13], [rg, -rg]])


def object_pose(task: str, seed: int | None) -> np.ndarray:
    """The start pose of the cube (7 values) or of the peg and socket (14), drawn as gym-aloha draws them."""
    from gym_aloha.utils import sample_box_pose, sample_insertion_pose

    if task == "transfer-cube":
        return sample_box_pose(seed)
    return np.concatenate(sample_insertion_pose(seed))


def stage_reward(task: str, pairs: set[tuple[str, str]]) -> int:
    """gym-aloha's ``get_reward`` of the task from the contact pairs: 0..4, 4 = done."""
    if task == "transfer-cube":
        right = ("red_box", "vx300s_right/10_right_gripper_finger") in pairs
        left = ("red_box", "vx300s_left/10_left_gripper_finger") in pairs
        table = ("red_box", "table") in pairs
        r = 0
        if right:
            r = 1
        if right and not table:  # lifted
            r = 2
        if left:  # attempted transfer
            r = 3
        if left and not table:  # transferred
            r = 4
        return r
    right = ("red_peg", "vx300s_right/10_right_gripper_finger") in pairs
    left = any((s, "vx300s_left/10_left_gripper_finger") in pairs for s in _SOCKETS)
    peg_table = ("red_peg", "table") in pairs
    socket_table = any((s, "table") in pairs for s in _SOCKETS)
    peg_socket = any(("red_peg", s) in pairs for s in _SOCKETS)
    r = 0
    if left and right:  # both touched
        r = 1
    if left and right and not peg_table and not socket_table:  # both grasped
        r = 2
    if peg_socket and not peg_table and not socket_table:  # peg and socket touching
        r = 3
    if ("red_peg", "pin") in pairs:  # inserted
        r = 4
    return r


class AlohaEnv(gymnasium.Env):
    """One ALOHA sim task on the ``mujoco`` bindings (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": FPS}

    def __init__(self, task: str, image_size: int = 128, render_mode: str | None = "rgb_array",
                 max_episode_steps: int | None = None, render_images: bool = True, **kw: Any):
        if kw:
            raise TypeError(f"ALOHA takes no options {sorted(kw)}; it takes image_size, max_episode_steps, "
                            f"render_images")
        if task.startswith(PREFIX):
            task = task[len(PREFIX):]
        if task not in TASK_INFO:
            raise ValueError(f"unknown ALOHA task '{task}'; choose one of: {', '.join(TASK_INFO)}")
        import mujoco

        self._mj, self._c = mujoco, _constants()
        scene = _aloha_files() / "assets" / TASK_INFO[task][0]
        if not scene.is_file():
            raise AlohaUnavailable(f"gym-aloha's scene {scene} is missing: {INSTALL_HINT}")
        self.task = task
        self.task_name, self.instruction = PREFIX + task, TASK_INFO[task][1]
        self.model = mujoco.MjModel.from_xml_path(str(scene))
        self.model.vis.quality.shadowsize = 0  # before the first render: the renderer sizes its buffers then
        self.model.vis.quality.offsamples = 0
        self.data = mujoco.MjData(self.model)
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.render_images = render_images and render_mode == "rgb_array"
        self._renderer = None
        self.max_episode_steps = int(max_episode_steps or MAX_EPISODE_STEPS)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (14,), np.float32)  # gym-aloha's declared box
        self.observation_space = gymnasium.spaces.Dict({
            "pixels": gymnasium.spaces.Dict({CAMERA: gymnasium.spaces.Box(
                0, 255, (self.image_size, self.image_size, 3), np.uint8)}),
            "agent_pos": gymnasium.spaces.Box(-1000.0, 1000.0, (14,), np.float32),
        })
        self.action_dim, self.state_dim, self.fps = 14, 14, FPS
        self._steps = 0

    # -- observations ---------------------------------------------------------------------------------------
    def _frame(self) -> np.ndarray:
        if not self.render_images:
            return np.zeros((self.image_size, self.image_size, 3), np.uint8)
        if self._renderer is None:
            from .render import open_renderer

            self._renderer = open_renderer(self.model, self.image_size)
        self._renderer.update_scene(self.data, camera=CAMERA)
        return np.ascontiguousarray(self._renderer.render())

    def _obs(self) -> dict[str, Any]:
        return {"pixels": {CAMERA: self._frame()}, "agent_pos": qpos_state(self._c, self.data.qpos).astype(np.float32)}

    # -- gymnasium --------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        mj = self._mj
        mj.mj_resetData(self.model, self.data)
        self.data.qpos[:16] = self._c.START_ARM_POSE
        self.data.ctrl[:] = self._c.START_ARM_POSE
        objects = object_pose(self.task, seed)  # gym-aloha's seeded sampler (7 or 14 values)
        self.data.qpos[-len(objects):] = objects
        mj.mj_forward(self.model, self.data)
        self._steps = 0
        return self._obs(), {"instruction": self.instruction, "is_success": False, "reward_stage": 0}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(14)
        self.data.ctrl[:] = action_to_ctrl(self._c, a)
        self._mj.mj_step(self.model, self.data, nstep=SUBSTEPS)
        self._mj.mj_forward(self.model, self.data)  # positions and contacts up to date, as dm_control leaves them
        self._steps += 1
        stage = stage_reward(self.task, self._contact_pairs())
        success = stage == 4
        truncated = self._steps >= self.max_episode_steps and not success
        return self._obs(), float(stage), success, truncated, {"is_success": success, "reward_stage": stage}

    def _contact_pairs(self) -> set[tuple[str, str]]:
        """The (geom1, geom2) names of the active contacts, in MuJoCo's order, as gym-aloha lists them."""
        name = self._mj.mj_id2name
        geom = self._mj.mjtObj.mjOBJ_GEOM
        con = self.data.contact
        return {(name(self.model, geom, int(g1)), name(self.model, geom, int(g2)))
                for g1, g2 in zip(con.geom1[: self.data.ncon], con.geom2[: self.data.ncon])}

    def render(self):
        return self._frame()

    @staticmethod
    def video_frame(obs: dict[str, Any]) -> np.ndarray:
        """The frame the evaluator's videos show (the observation's pixels are a dict of cameras)."""
        return obs["pixels"][CAMERA]

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


for _name in TASK_INFO:
    if PREFIX + _name not in TASKS:
        _task = AlohaTask(_name)
        TASKS.register(_task.name, _task, **_task.meta())
