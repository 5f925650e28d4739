"""The MuJoCo tabletop scene and the gymnasium environment over it.

Scene (built as MJCF text in :func:`build_scene_xml`): a table top, three free-jointed 5 cm
cubes (red, green, blue), two flat visual-only goal zones ("left" = yellow disc at -x, "right" =
white disc at +x) and a ball effector on slide joints x, y (and z in pick-place) driven by
position actuators. Pick-place adds a suction gripper: a weld equality per block, switched on
(``data.eq_active``) when the gripper command is > 0 while the effector touches a block and
switched off when the command is < 0.

Control runs at 10 Hz (``fps``); each control step runs ``substeps`` physics steps. An action in
[-1, 1]^d moves the actuators' target to the effector's current position plus
``action * 0.025`` m (clipped to the workspace): the action is relative to where the effector
is, with no hidden target that a policy would have to remember.

Rendering is headless with ``mujoco.Renderer`` from the fixed camera "front", with shadows,
reflections and the skybox off, so a 96 px frame costs about a millisecond on one CPU core.
If no display is set, ``MUJOCO_GL`` defaults to ``egl`` (``vla_engine.envs`` sets it; set it to
``osmesa`` where EGL is missing). ``render_images=False`` is an explicit option that skips rendering entirely and puts an
all-zero image in ``obs["pixels"]`` (for fast expert rollouts and tests).
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from .render import open_renderer
from .tasks import (
    ALL_TASKS,
    BLOCK_COLORS,
    BLOCK_HALF,
    EFFECTOR_RADIUS,
    MAX_STEP,
    TABLE_HALF,
    TOUCH_DIST,
    WORKSPACE_HIGH,
    WORKSPACE_LOW,
    ZONE_NAMES,
    ZONE_RADIUS,
    TabletopTask,
)

TIMESTEP = 0.005  # physics step (s)
BLOCK_RGBA = {
    "red": "0.85 0.1 0.1 1",
    "green": "0.1 0.7 0.15 1",
    "blue": "0.1 0.25 0.9 1",
}
ZONE_RGBA = {"left": "0.95 0.8 0.15 1", "right": "0.95 0.95 0.95 1"}
EFFECTOR_KP = 800.0  # position actuator gain (N/m)
EFFECTOR_MASS = 0.5  # kg
EFFECTOR_DAMPING = 2.0 * float(np.sqrt(EFFECTOR_KP * EFFECTOR_MASS))  # critical damping (N s/m)


class EnvError(ValueError):
    """Bad input to a tabletop environment (one-line message naming the problem and the fix)."""


def build_scene_xml(with_z: bool = False, image_size: int = 96) -> str:
    """MJCF text of the tabletop scene. ``with_z`` adds the z slide joint and the suction welds."""
    tx, ty = TABLE_HALF
    lo, hi = WORKSPACE_LOW, WORKSPACE_HIGH
    eff_z0 = 0.0 if with_z else BLOCK_HALF  # body origin height; the z joint adds to it
    blocks = "\n".join(
        f"""    <body name="block_{c}" pos="{0.1 * (i - 1):.3f} 0.3 {BLOCK_HALF}">
      <freejoint name="block_{c}"/>
      <geom name="block_{c}" type="box" size="{BLOCK_HALF} {BLOCK_HALF} {BLOCK_HALF}"
            mass="0.1" rgba="{BLOCK_RGBA[c]}"/>
    </body>"""
        for i, c in enumerate(BLOCK_COLORS)
    )
    zones = "\n".join(
        f"""    <body name="zone_{z}" pos="{-0.2 if z == 'left' else 0.2} 0 0.0005">
      <geom name="zone_{z}" type="cylinder" size="{ZONE_RADIUS} 0.0005" contype="0"
            conaffinity="0" rgba="{ZONE_RGBA[z]}"/>
    </body>"""
        for z in ZONE_NAMES
    )
    z_joint = (
        f"""      <joint name="eff_z" type="slide" axis="0 0 1" range="{lo[2]} {hi[2]}"
             damping="{EFFECTOR_DAMPING:.3f}"/>"""
        if with_z
        else ""
    )
    z_act = (
        f"""    <position name="act_z" joint="eff_z" kp="{EFFECTOR_KP}"
              ctrlrange="{lo[2]} {hi[2]}"/>"""
        if with_z
        else ""
    )
    welds = (
        "  <equality>\n"
        + "\n".join(
            f'    <weld name="grip_{c}" body1="effector" body2="block_{c}" active="false"/>'
            for c in BLOCK_COLORS
        )
        + "\n  </equality>"
        if with_z
        else ""
    )
    return f"""<mujoco model="vla_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP}" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual>
    <global offwidth="{max(image_size, 64)}" offheight="{max(image_size, 64)}"/>
    <quality shadowsize="0"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.45 0.45 0.45" specular="0 0 0"/>
    <map znear="0.01" zfar="5"/>
  </visual>
  <default>
    <geom friction="0.7 0.005 0.0001" solref="0.005 1"/>
  </default>
  <worldbody>
    <light name="top" pos="0 -0.3 1.5" dir="0 0.2 -1" directional="true" castshadow="false"
           diffuse="0.5 0.5 0.5" specular="0 0 0"/>
    <geom name="floor" type="plane" size="2 2 0.1" pos="0 0 -0.04" rgba="0.25 0.27 0.3 1"
          contype="0" conaffinity="0"/>
    <geom name="table" type="box" size="{tx} {ty} 0.02" pos="0 0 -0.02"
          rgba="0.55 0.42 0.3 1"/>
    <camera name="front" pos="0 -0.25 0.75" xyaxes="1 0 0 0 0.949 0.316" fovy="45"/>
{zones}
{blocks}
    <body name="effector" pos="0 0 {eff_z0}" gravcomp="1">
      <joint name="eff_x" type="slide" axis="1 0 0" range="{lo[0]} {hi[0]}"
             damping="{EFFECTOR_DAMPING:.3f}"/>
      <joint name="eff_y" type="slide" axis="0 1 0" range="{lo[1]} {hi[1]}"
             damping="{EFFECTOR_DAMPING:.3f}"/>
{z_joint}
      <geom name="effector" type="sphere" size="{EFFECTOR_RADIUS}" mass="{EFFECTOR_MASS}"
            rgba="0.15 0.15 0.15 1" friction="0.3 0.005 0.0001"/>
      <geom name="effector_rod" type="cylinder" size="0.007 0.035" pos="0 0 0.05"
            contype="0" conaffinity="0" mass="0" rgba="0.35 0.35 0.35 1"/>
    </body>
  </worldbody>
  <actuator>
    <position name="act_x" joint="eff_x" kp="{EFFECTOR_KP}" ctrlrange="{lo[0]} {hi[0]}"/>
    <position name="act_y" joint="eff_y" kp="{EFFECTOR_KP}" ctrlrange="{lo[1]} {hi[1]}"/>
{z_act}
  </actuator>
{welds}
</mujoco>
"""


def _task_object(task: str | TabletopTask) -> TabletopTask:
    if isinstance(task, TabletopTask):
        return task
    for t in ALL_TASKS:
        if t.name == task:
            return t
    raise EnvError(
        f"unknown task '{task}'; choose one of: {', '.join(t.name for t in ALL_TASKS)}"
    )


def _box_distance(p: np.ndarray, center: np.ndarray, rot: np.ndarray, half: float) -> float:
    """Distance from point ``p`` to the surface of a box (negative inside, approx.)."""
    local = rot.T @ (p - center)  # (3,) in the box frame
    clamped = np.clip(local, -half, half)
    outside = float(np.linalg.norm(local - clamped))
    if outside > 0.0:
        return outside
    return -float(np.min(half - np.abs(local)))


class TabletopEnv(gym.Env):
    """One tabletop task (``reach``, ``push`` or ``pick-place``) as a gymnasium environment.

    Observation: ``{"pixels": uint8 (image_size, image_size, 3), "agent_pos": float32
    (state_dim,)}``; ``agent_pos`` is the effector position (x, y) for reach/push and
    (x, y, z, holding) for pick-place, where ``holding`` is 1.0 while a block is welded to the
    suction gripper. ``info`` has ``is_success`` and ``instruction``; the instruction is also
    ``env.unwrapped.instruction``. ``reset(seed=s)`` fixes the layout, target, goal and phrasing.
    An episode terminates on success, or as a failure when a block falls off the table
    (``info["off_table"]`` names it); it is truncated at ``max_episode_steps``.

    Options of ``reset``: ``{"target": "red"|"green"|"blue", "goal": "left"|"right"}`` force the
    block / zone named by the instruction (the layout still comes from the reset seed).

    ``render_images=False`` skips rendering: ``obs["pixels"]`` is all zeros and ``render()``
    returns that zero image. Use it for fast expert rollouts and tests only.

    Multiprocessing: a GL context does not survive ``fork``. If the parent process has rendered
    already, start worker processes with ``spawn`` (e.g. ``gymnasium.make_vec(...,
    vectorization_mode="async", vector_kwargs={"context": "spawn"})``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    camera_names = ["front"]

    def __init__(
        self,
        task: str | TabletopTask = "reach",
        image_size: int = 96,
        render_mode: str | None = "rgb_array",
        max_episode_steps: int | None = None,
        render_images: bool = True,
        substeps: int | None = None,
    ) -> None:
        super().__init__()
        self.task = _task_object(task)
        if not isinstance(image_size, numbers.Integral) or isinstance(image_size, bool) or not (
            16 <= image_size <= 1024
        ):
            raise EnvError(f"image_size={image_size!r} is out of range; use an int in [16, 1024]")
        image_size = int(image_size)
        if render_mode not in (None, "rgb_array"):
            raise EnvError(
                f"render_mode={render_mode!r} is not supported; use 'rgb_array' (or None)"
            )
        if max_episode_steps is not None and (
            not isinstance(max_episode_steps, numbers.Integral)
            or isinstance(max_episode_steps, bool)
            or max_episode_steps < 1
        ):
            raise EnvError(f"max_episode_steps={max_episode_steps!r} must be a positive int")
        self.image_size = image_size
        self.render_mode = render_mode
        self.render_images = bool(render_images)
        self.task_name = self.task.name
        self.fps = self.task.fps
        self.max_episode_steps = int(max_episode_steps or self.task.max_episode_steps)
        self.action_dim = self.task.action_dim
        self.state_dim = self.task.state_dim
        if substeps is not None and (not isinstance(substeps, numbers.Integral) or substeps < 1):
            raise EnvError(f"substeps={substeps!r} must be a positive int (physics steps/action)")
        self.substeps = int(substeps or round(1.0 / (self.fps * TIMESTEP)))
        self.metadata = dict(self.metadata, render_fps=self.fps)

        self.model = mujoco.MjModel.from_xml_string(build_scene_xml(self.task.uses_z, image_size))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._eff_body = m.body("effector").id
        self._eff_qadr = [m.jnt_qposadr[m.joint(j).id] for j in self._eff_joints()]
        self._eff_vadr = [m.jnt_dofadr[m.joint(j).id] for j in self._eff_joints()]
        self._block_body = {c: m.body(f"block_{c}").id for c in BLOCK_COLORS}
        self._block_qadr = {c: m.jnt_qposadr[m.joint(f"block_{c}").id] for c in BLOCK_COLORS}
        self._block_vadr = {c: m.jnt_dofadr[m.joint(f"block_{c}").id] for c in BLOCK_COLORS}
        self._zone_body = {z: m.body(f"zone_{z}").id for z in ZONE_NAMES}
        self._weld = (
            {c: m.eq(f"grip_{c}").id for c in BLOCK_COLORS} if self.task.uses_z else {}
        )
        self._eq_data0 = m.eq_data.copy()
        self._zone_pos0 = m.body_pos.copy()

        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.action_dim,), dtype=np.float32)
        low = np.full(self.state_dim, -1.0, dtype=np.float32)
        high = np.full(self.state_dim, 1.0, dtype=np.float32)
        self.observation_space = spaces.Dict(
            {
                "pixels": spaces.Box(0, 255, (image_size, image_size, 3), dtype=np.uint8),
                "agent_pos": spaces.Box(low, high, (self.state_dim,), dtype=np.float32),
            }
        )
        self._renderer: Any = None
        self._scratch: Any = None  # MjData that plan_ahead simulates on
        self._frame: np.ndarray | None = None
        self._elapsed = 0
        self._success = False
        self._off_table: list[str] = []
        self.layout = self.task.sample_layout(np.random.default_rng(0))
        self.instruction = self.layout.instruction

    # ------------------------------------------------------------------ helpers
    def _eff_joints(self) -> list[str]:
        return ["eff_x", "eff_y", "eff_z"] if self.task.uses_z else ["eff_x", "eff_y"]

    def _effector_pos(self) -> np.ndarray:
        return self.data.xpos[self._eff_body].copy()  # (3,)

    def held_block(self) -> str | None:
        """Colour of the block welded to the suction gripper, or None."""
        for c, e in self._weld.items():
            if self.data.eq_active[e]:
                return c
        return None

    def _block_dists(self) -> dict[str, float]:
        """Effector-ball surface to block surface distance per colour (m)."""
        p = self._effector_pos()
        out = {}
        for c, b in self._block_body.items():
            rot = self.data.xmat[b].reshape(3, 3)
            out[c] = _box_distance(p, self.data.xpos[b], rot, BLOCK_HALF) - EFFECTOR_RADIUS
        return out

    def _agent_pos(self) -> np.ndarray:
        p = self._effector_pos()
        if self.task.uses_z:
            held = 1.0 if self.held_block() is not None else 0.0
            return np.array([p[0], p[1], p[2], held], dtype=np.float32)
        return p[:2].astype(np.float32)

    def _render_frame(self) -> np.ndarray:
        s = self.image_size
        if not self.render_images:
            return np.zeros((s, s, 3), dtype=np.uint8)
        if self._renderer is None:
            self._renderer = open_renderer(self.model, s)
        self._renderer.update_scene(self.data, camera="front")
        return self._renderer.render()  # (H, W, 3) uint8, a new array

    def _obs(self) -> dict[str, np.ndarray]:
        self._frame = self._render_frame()
        return {"pixels": self._frame.copy(), "agent_pos": self._agent_pos()}

    def _info(self) -> dict[str, Any]:
        return {
            "is_success": bool(self._success),
            "instruction": self.instruction,
            "target": self.layout.target,
            "goal": self.layout.goal,
            "step": self._elapsed,
            "off_table": list(self._off_table),  # colours of blocks that fell off the table
        }

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"target", "goal"}
        if unknown:
            raise EnvError(
                f"unknown reset option(s) {sorted(unknown)}; the options are 'target' and 'goal'"
            )
        self.layout = self.task.sample_layout(
            self.np_random, target=options.get("target"), goal=options.get("goal")
        )
        self.instruction = self.layout.instruction
        m, d = self.model, self.data
        m.eq_data[:] = self._eq_data0
        m.body_pos[:] = self._zone_pos0
        mujoco.mj_resetData(m, d)
        for z, xy in self.layout.zone_xy.items():
            m.body_pos[self._zone_body[z], :2] = xy
        for c in BLOCK_COLORS:
            a = self._block_qadr[c]
            x, y = self.layout.block_xy[c]
            yaw = self.layout.block_yaw[c]
            d.qpos[a : a + 3] = [x, y, BLOCK_HALF]
            d.qpos[a + 3 : a + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        start = self.layout.effector_start
        n = len(self._eff_qadr)
        body_z0 = 0.0 if self.task.uses_z else BLOCK_HALF
        q0 = np.array([start[0], start[1], start[2] - body_z0])[:n]
        for adr, q in zip(self._eff_qadr, q0):
            d.qpos[adr] = q
        d.ctrl[:n] = q0
        d.eq_active[:] = 0
        mujoco.mj_forward(m, d)
        self._elapsed = 0
        self._success = False
        self._off_table = []
        return self._obs(), self._info()

    def step(
        self, action: Any
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self.action_dim,):
            raise EnvError(
                f"action has shape {np.shape(action)}; task '{self.task_name}' takes "
                f"{self.action_dim} numbers ({', '.join(self.task.action_names)}) in [-1, 1]"
            )
        if not np.all(np.isfinite(a)):
            raise EnvError(f"action {a.tolist()} has NaN or inf; actions must be finite")
        reward, terminated, truncated = self._advance(np.clip(a, -1.0, 1.0))
        return self._obs(), reward, terminated, truncated, self._info()

    def _advance(self, a: np.ndarray) -> tuple[float, bool, bool]:
        """The physics of one control step for a valid action ``a`` (A,); nothing rendered."""
        m, d = self.model, self.data
        n = len(self._eff_qadr)
        pos = self._effector_pos()[:n]
        target = np.clip(pos + a[:n] * MAX_STEP, WORKSPACE_LOW[:n], WORKSPACE_HIGH[:n])
        if self.task.uses_z:
            self._gripper(float(a[3]))
        d.ctrl[:n] = target
        mujoco.mj_step(m, d, nstep=self.substeps)
        self._elapsed += 1
        state = self.get_privileged_state()
        reward, success = self.task.evaluate(state)
        self._success = success
        # a block pushed over the table's edge falls for good: the episode is over (a failure), rather
        # than 100 steps of rewards measured to a block metres below the table
        self._off_table = [c for c, pos in state["block_pos"].items() if pos[2] < 0.0]
        terminated = bool(success) or bool(self._off_table)
        truncated = (not terminated) and self._elapsed >= self.max_episode_steps
        return float(reward), terminated, bool(truncated)

    def plan_ahead(self, policy: Callable[["TabletopEnv"], np.ndarray], horizon: int) -> tuple[np.ndarray, int]:
        """What ``policy(env)`` would do over the next ``horizon`` steps from the current state, with no noise.

        Simulates ``policy`` forward (physics only, nothing rendered), then puts the simulator back
        exactly as it was, so the episode goes on as if this had not been called. Returns the actions
        (horizon, A) float32 and how many are valid: the look-ahead stops where the episode would end
        (success, a block off the table, the step limit), and the rows after that are zero.

        Used by datagen for noise-free action-chunk labels: with DART noise the recorded actions
        ``t+1 ... t+k`` answer noise that has not happened yet at step ``t``, which a chunk predicted from
        the observation at ``t`` cannot know; the expert's own plan from ``t`` is the chunk to imitate.
        """
        m, d = self.model, self.data
        if self._scratch is None:
            self._scratch = mujoco.MjData(m)
        mujoco.mj_copyData(self._scratch, m, d)  # the look-ahead runs on a copy; ``d`` is never touched
        saved_eq, saved_py = m.eq_data.copy(), (self._elapsed, self._success, list(self._off_table))
        plan = np.zeros((int(horizon), self.action_dim), dtype=np.float32)
        n_valid = 0
        self.data = self._scratch
        try:
            for k in range(int(horizon)):
                a = np.asarray(policy(self), dtype=np.float32).reshape(self.action_dim)
                plan[k] = a
                n_valid = k + 1
                _, terminated, truncated = self._advance(np.clip(a.astype(np.float64), -1.0, 1.0))
                if terminated or truncated:
                    break
        finally:
            self.data = d
            m.eq_data[:] = saved_eq  # the gripper's weld lives in the model
            self._elapsed, self._success, self._off_table = saved_py
        return plan, n_valid

    def _gripper(self, command: float) -> None:
        """Suction: weld the touched block when command > 0, release when command < 0."""
        held = self.held_block()
        if command < 0.0 and held is not None:
            self.data.eq_active[self._weld[held]] = 0
        elif command > 0.0 and held is None:
            dists = self._block_dists()
            color = min(dists, key=dists.get)
            if dists[color] < TOUCH_DIST:
                e = self._weld[color]
                b = self._block_body[color]
                m, d = self.model, self.data
                m.eq_data[e, 0:3] = 0.0
                m.eq_data[e, 3:6] = d.xpos[b] - d.xpos[self._eff_body]  # block in effector frame
                m.eq_data[e, 6:10] = d.xquat[b]  # the effector never rotates
                d.eq_active[e] = 1

    def render(self) -> np.ndarray | None:
        """The latest camera frame (the one in the last observation), uint8 (H, W, 3)."""
        if self.render_mode is None:
            return None
        if self._frame is None:
            self._frame = self._render_frame()
        return self._frame.copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------ experts
    def get_privileged_state(self) -> dict[str, Any]:
        """Full simulator state for scripted experts and rewards (numpy arrays, world frame)."""
        d = self.data
        eff = self._effector_pos()
        eff_vel = np.zeros(3)
        for i, adr in enumerate(self._eff_vadr):
            eff_vel[i] = d.qvel[adr]
        return {
            "task": self.task_name,
            "effector_pos": eff,  # (3,)
            "effector_vel": eff_vel,  # (3,)
            "block_pos": {c: d.xpos[b].copy() for c, b in self._block_body.items()},
            "block_quat": {c: d.xquat[b].copy() for c, b in self._block_body.items()},
            "block_vel": {
                c: d.qvel[a : a + 3].copy() for c, a in self._block_vadr.items()
            },
            "block_dist": self._block_dists(),
            "zone_pos": {z: self.model.body_pos[b, :2].copy() for z, b in self._zone_body.items()},
            "zone_radius": ZONE_RADIUS,
            "target": self.layout.target,
            "goal": self.layout.goal,
            "held": self.held_block(),
            "has_gripper": self.task.uses_z,
            "step": self._elapsed,
            "max_episode_steps": self.max_episode_steps,
        }


class ReachEnv(TabletopEnv):
    """``reach``: touch the named block. See :class:`TabletopEnv`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(task="reach", **kwargs)


class PushEnv(TabletopEnv):
    """``push``: push the named block into the named zone. See :class:`TabletopEnv`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(task="push", **kwargs)


class PickPlaceEnv(TabletopEnv):
    """``pick-place``: carry the named block into the named zone. See :class:`TabletopEnv`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(task="pick-place", **kwargs)
