"""Task definitions of the built-in tabletop suite: layouts, instructions, rewards, success.

Pure numpy: nothing here imports MuJoCo, so ``import vla_engine.envs`` (which reads these
definitions for the task registry) stays light. The simulation lives in ``tabletop.py``; a task
only decides *what* to do in the scene:

* ``sample_layout(rng)`` draws block positions, goal-zone positions, the effector start, the
  target block and goal zone, and the instruction phrasing, all from one seeded generator;
* ``evaluate(state)`` turns the privileged state of the scene (see
  ``TabletopEnv.get_privileged_state``) into ``(reward, success)``.

Scene geometry shared with the simulator and the experts (metres, table top at z = 0): blocks
are 5 cm cubes, the effector is a 2 cm-radius ball, goal zones are flat 6.5 cm-radius discs,
"left" is -x and "right" is +x as seen from the front camera.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BLOCK_COLORS: tuple[str, ...] = ("red", "green", "blue")
ZONE_NAMES: tuple[str, ...] = ("left", "right")

BLOCK_HALF = 0.025  # half edge of a block (m)
EFFECTOR_RADIUS = 0.02  # radius of the effector ball (m)
ZONE_RADIUS = 0.065  # radius of a goal zone (m)
TOUCH_DIST = 0.006  # effector surface within this of a block surface counts as touching (m)
REACH_DIST = 0.01  # reach succeeds when the effector surface is this close to the target (m)

# Effector workspace (the position actuators' target is clipped to it).
WORKSPACE_LOW = np.array([-0.27, -0.19, EFFECTOR_RADIUS], dtype=np.float64)
WORKSPACE_HIGH = np.array([0.27, 0.19, 0.16], dtype=np.float64)
TABLE_HALF = (0.33, 0.25)  # half extents of the table top (x, y)
MAX_STEP = 0.025  # metres moved per control step at |action| = 1
HOVER_Z = 0.12  # effector start height in pick-place


@dataclass
class Layout:
    """Everything a reset decides; the episode is a function of this and the actions."""

    block_xy: dict[str, np.ndarray]  # colour -> (2,)
    block_yaw: dict[str, float]  # colour -> rotation about z (rad)
    zone_xy: dict[str, np.ndarray]  # zone name -> (2,)
    effector_start: np.ndarray  # (3,)
    target: str  # block colour the instruction names
    goal: str | None  # zone name the instruction names (None for reach)
    instruction: str


def _sample_points(
    rng: np.random.Generator,
    n: int,
    low: np.ndarray,
    high: np.ndarray,
    min_sep: float,
    avoid: list[tuple[np.ndarray, float]],
) -> list[np.ndarray]:
    """Rejection-sample ``n`` points in a box, >= ``min_sep`` apart and away from ``avoid``."""
    for _ in range(1000):
        pts: list[np.ndarray] = []
        for _ in range(200):
            p = rng.uniform(low, high)
            if all(np.linalg.norm(p - q) >= min_sep for q in pts) and all(
                np.linalg.norm(p - c) >= r for c, r in avoid
            ):
                pts.append(p)
                if len(pts) == n:
                    return pts
    raise RuntimeError("could not sample a tabletop layout; the sampling region is too small")


@dataclass
class TabletopTask(ABC):
    """A task of the suite. Calling the object builds its environment (``make_env`` kwargs)."""

    name: str
    description: str
    action_dim: int
    state_dim: int
    max_episode_steps: int
    templates: tuple[str, ...]
    uses_z: bool = False  # effector has a z joint and a suction gripper
    uses_zone: bool = False
    fps: int = 10
    gym_id: str = ""
    state_names: tuple[str, ...] = field(default=())
    action_names: tuple[str, ...] = field(default=())

    # ----------------------------------------------------------------- metadata
    def meta(self) -> dict[str, Any]:
        return {
            "action_dim": self.action_dim,
            "state_dim": self.state_dim,
            "fps": self.fps,
            "max_episode_steps": self.max_episode_steps,
            "description": self.description,
            "gym_id": self.gym_id,
            "camera_names": ["front"],
            "state_names": list(self.state_names),
            "action_names": list(self.action_names),
            "example_instruction": self.templates[0].format(color="red", zone="left"),
        }

    def __call__(self, **kwargs: Any) -> Any:
        from vla_engine.envs import make_env

        return make_env(self.name, **kwargs)

    # ----------------------------------------------------------------- layouts
    def instruction(self, rng: np.random.Generator, target: str, goal: str | None) -> str:
        template = self.templates[int(rng.integers(len(self.templates)))]
        return template.format(color=target, zone=goal or "")

    def sample_layout(
        self, rng: np.random.Generator, target: str | None = None, goal: str | None = None
    ) -> Layout:
        """Draw a layout from ``rng``; ``target``/``goal`` override the drawn choice.

        The generator is consumed the same way with or without overrides.
        """
        zone_xy = {
            "left": np.array([rng.uniform(-0.23, -0.17), rng.uniform(-0.10, 0.10)]),
            "right": np.array([rng.uniform(0.17, 0.23), rng.uniform(-0.10, 0.10)]),
        }
        avoid = [(c, ZONE_RADIUS + BLOCK_HALF + 0.01) for c in zone_xy.values()]
        pts = _sample_points(
            rng, 3, np.array([-0.11, -0.13]), np.array([0.11, 0.13]), 0.09, avoid
        )
        block_xy = dict(zip(BLOCK_COLORS, pts))
        block_yaw = {c: float(rng.uniform(-np.pi / 4, np.pi / 4)) for c in BLOCK_COLORS}
        eff_avoid = [(p, BLOCK_HALF * 1.5 + EFFECTOR_RADIUS + 0.02) for p in pts]
        (eff_xy,) = _sample_points(
            rng, 1, WORKSPACE_LOW[:2] + 0.03, WORKSPACE_HIGH[:2] - 0.03, 0.0, eff_avoid
        )
        eff_z = HOVER_Z if self.uses_z else BLOCK_HALF
        drawn_target = BLOCK_COLORS[int(rng.integers(len(BLOCK_COLORS)))]
        drawn_goal = ZONE_NAMES[int(rng.integers(len(ZONE_NAMES)))] if self.uses_zone else None
        target = target or drawn_target
        goal = (goal or drawn_goal) if self.uses_zone else None
        if target not in BLOCK_COLORS:
            raise ValueError(
                f"unknown target block '{target}'; choose one of: {', '.join(BLOCK_COLORS)}"
            )
        if self.uses_zone and goal not in ZONE_NAMES:
            raise ValueError(f"unknown goal zone '{goal}'; choose one of: {', '.join(ZONE_NAMES)}")
        text = self.instruction(rng, target, goal)
        return Layout(
            block_xy=block_xy,
            block_yaw=block_yaw,
            zone_xy=zone_xy,
            effector_start=np.array([eff_xy[0], eff_xy[1], eff_z]),
            target=target,
            goal=goal,
            instruction=text,
        )

    # ----------------------------------------------------------------- reward
    @abstractmethod
    def evaluate(self, s: dict[str, Any]) -> tuple[float, bool]:
        """Dense reward and success from the privileged state ``s``."""


@dataclass
class ReachTask(TabletopTask):
    def evaluate(self, s: dict[str, Any]) -> tuple[float, bool]:
        d = float(s["block_dist"][s["target"]])  # effector surface to block surface (m)
        success = d < REACH_DIST
        return -max(d, 0.0) + (1.0 if success else 0.0), success


@dataclass
class PushTask(TabletopTask):
    def evaluate(self, s: dict[str, Any]) -> tuple[float, bool]:
        b = s["block_pos"][s["target"]][:2]
        g = s["zone_pos"][s["goal"]]
        d_goal = float(np.linalg.norm(b - g))
        d_eff = max(float(s["block_dist"][s["target"]]), 0.0)
        success = d_goal < ZONE_RADIUS
        return -d_goal - 0.5 * d_eff + (1.0 if success else 0.0), success


@dataclass
class PickPlaceTask(TabletopTask):
    def evaluate(self, s: dict[str, Any]) -> tuple[float, bool]:
        target = s["target"]
        b = s["block_pos"][target]
        g = s["zone_pos"][s["goal"]]
        d_goal = float(np.linalg.norm(b[:2] - g))
        held = s["held"] == target
        d_eff = 0.0 if held else max(float(s["block_dist"][target]), 0.0)
        resting = b[2] < BLOCK_HALF + 0.008 and float(np.linalg.norm(s["block_vel"][target])) < 0.05
        success = (s["held"] is None) and d_goal < ZONE_RADIUS and resting
        reward = -d_goal - 0.5 * d_eff + (0.25 if held else 0.0) + (1.0 if success else 0.0)
        return reward, bool(success)


REACH = ReachTask(
    name="reach",
    description="Touch the named block (red, green or blue) with the effector. "
    "2-D action (dx, dy).",
    action_dim=2,
    state_dim=2,
    max_episode_steps=50,
    gym_id="vla_engine/Reach-v0",
    state_names=("effector_x", "effector_y"),
    action_names=("dx", "dy"),
    templates=(
        "touch the {color} block",
        "move to the {color} cube",
        "go touch the {color} one",
        "reach the {color} block",
        "put the effector on the {color} cube",
        "tap the {color} block",
        "move over to the {color} block and touch it",
    ),
)

PUSH = PushTask(
    name="push",
    description="Push the named block into the named goal zone (left or right). "
    "2-D action (dx, dy).",
    action_dim=2,
    state_dim=2,
    max_episode_steps=100,
    uses_zone=True,
    gym_id="vla_engine/Push-v0",
    state_names=("effector_x", "effector_y"),
    action_names=("dx", "dy"),
    templates=(
        "push the {color} block into the {zone} zone",
        "slide the {color} cube to the {zone} zone",
        "push the {color} one into the {zone} area",
        "move the {color} block into the {zone} zone by pushing it",
        "shove the {color} cube onto the {zone} pad",
        "get the {color} block into the {zone} zone",
    ),
)

PICK_PLACE = PickPlaceTask(
    name="pick-place",
    description=(
        "Pick the named block up with the suction gripper and put it in the named goal zone. "
        "4-D action (dx, dy, dz, gripper: > 0 grasps, < 0 releases)."
    ),
    action_dim=4,
    state_dim=4,
    max_episode_steps=120,
    uses_z=True,
    uses_zone=True,
    gym_id="vla_engine/PickPlace-v0",
    state_names=("effector_x", "effector_y", "effector_z", "gripper_holding"),
    action_names=("dx", "dy", "dz", "gripper"),
    templates=(
        "put the {color} block in the {zone} zone",
        "pick up the {color} cube and place it in the {zone} zone",
        "move the {color} block to the {zone} area",
        "place the {color} cube on the {zone} pad",
        "lift the {color} block and drop it in the {zone} zone",
        "carry the {color} one over to the {zone} zone",
    ),
)

ALL_TASKS: tuple[TabletopTask, ...] = (REACH, PUSH, PICK_PLACE)
