"""Scripted experts for the tabletop tasks.

An expert reads the privileged state of an environment (``get_privileged_state()``: effector,
block and zone positions, which block is held) and returns an action in [-1, 1]^d (float32).
It keeps no phase counter: the phase (approach, go around, push, descend, grasp, carry, place)
is derived from the current state alone, so the expert can take over from ANY state, e.g. the
states a learner reached in DAgger. Actions are proportional control towards a waypoint,
saturated at the action bound, so they are smooth enough for a small network to imitate.

    >>> expert = make_expert(env)
    >>> action = expert(obs)          # reads the env the expert was built with
    >>> action = expert.act(other_env)  # or any other env of the same task
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .tasks import (
    BLOCK_HALF,
    EFFECTOR_RADIUS,
    MAX_STEP,
    TOUCH_DIST,
    WORKSPACE_HIGH,
    WORKSPACE_LOW,
    ZONE_RADIUS,
)

CONTACT = BLOCK_HALF + EFFECTOR_RADIUS  # effector centre to block centre when touching a face
MARGIN = 0.006  # planned distance kept between the effector and a block surface


class ExpertError(ValueError):
    """An expert was asked to act on an environment it cannot read."""


def _to_action(delta: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Displacement wanted this step (m) -> normalised action, saturated at +-1."""
    return np.clip(gain * np.asarray(delta, dtype=np.float64) / MAX_STEP, -1.0, 1.0)


class ScriptedExpert(ABC):
    """Base of the experts: binds an env, reads its privileged state, returns float32 actions."""

    task_name: str = ""

    def __init__(self, env: Any) -> None:
        self.env = self._tabletop(env)

    @staticmethod
    def _tabletop(env: Any) -> Any:
        u = getattr(env, "unwrapped", env)
        if not hasattr(u, "get_privileged_state"):
            raise ExpertError(
                f"{type(u).__name__} has no get_privileged_state(); scripted experts need a "
                "vla_engine tabletop env (vla_engine.envs.make_env)"
            )
        return u

    def reset(self) -> None:
        """Nothing to reset: the expert is a function of the current state."""

    def act(self, env: Any = None) -> np.ndarray:
        """Action for the current state of ``env`` (default: the env the expert was built with)."""
        u = self.env if env is None else self._tabletop(env)
        if u.task_name != self.task_name:
            raise ExpertError(
                f"the {self.task_name} expert cannot act in task '{u.task_name}'; "
                f"build one with make_expert(env)"
            )
        return self.policy(u.get_privileged_state()).astype(np.float32)

    def __call__(self, obs: Any = None) -> np.ndarray:
        """``expert(obs)``: acts on the env it was built with (``obs`` is not needed)."""
        return self.act(None)

    @abstractmethod
    def policy(self, s: dict[str, Any]) -> np.ndarray:
        """Action from the privileged state ``s``."""


# ---------------------------------------------------------------------- path planning
# A 1 cm grid over the effector workspace. Blocks are oriented boxes grown by the effector
# radius; cells inside are passable at a high cost, so the cost-to-go field is defined
# everywhere (an effector already touching a block is led out of it). The field depends only
# on the goal and the blocks, never on where the effector is, so the path an expert follows is
# the same whichever state it takes over from.
GRID_RES = 0.01
_XS = np.arange(WORKSPACE_LOW[0], WORKSPACE_HIGH[0] + 1e-9, GRID_RES)  # (W,)
_YS = np.arange(WORKSPACE_LOW[1], WORKSPACE_HIGH[1] + 1e-9, GRID_RES)  # (H,)
_CELLS = np.stack(np.meshgrid(_XS, _YS, indexing="ij"), axis=-1)  # (W, H, 2)
_NEIGHBOURS = [(dx, dy, math.hypot(dx, dy)) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy]
_BLOCKED_COST = 25.0


def _yaw(quat: np.ndarray) -> float:
    w, x, y, z = (float(v) for v in quat)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _blocked(points: np.ndarray, boxes: list[tuple[np.ndarray, float, float]]) -> np.ndarray:
    """(...,) bool: points (..., 2) where the effector centre is within ``grow`` of a block."""
    out = np.zeros(points.shape[:-1], dtype=bool)
    for centre, yaw, grow in boxes:
        c, sn = math.cos(yaw), math.sin(yaw)
        rel = points - centre  # (..., 2)
        local = np.stack(
            [c * rel[..., 0] + sn * rel[..., 1], -sn * rel[..., 0] + c * rel[..., 1]], -1
        )  # (..., 2) in the block frame
        outside = np.linalg.norm(local - np.clip(local, -BLOCK_HALF, BLOCK_HALF), axis=-1)
        out |= outside < grow
    return out


def _segment_free(a: np.ndarray, b: np.ndarray, boxes: list) -> bool:
    """The effector can move in a straight line from a to b (sampled every 5 mm)."""
    n = max(2, int(np.linalg.norm(b - a) / 0.005) + 1)
    pts = a[None] + np.linspace(0.0, 1.0, n)[:, None] * (b - a)[None]  # (n, 2)
    return not bool(_blocked(pts, boxes).any())


def _cell(p: np.ndarray) -> tuple[int, int]:
    i = round((float(p[0]) - WORKSPACE_LOW[0]) / GRID_RES)
    j = round((float(p[1]) - WORKSPACE_LOW[1]) / GRID_RES)
    return min(max(i, 0), len(_XS) - 1), min(max(j, 0), len(_YS) - 1)


def _line_free(a: np.ndarray, b: np.ndarray, occ: np.ndarray) -> bool:
    """No occupied cell on the segment a-b (sampled every half cell)."""
    n = max(2, int(np.linalg.norm(b - a) / (GRID_RES * 0.5)) + 1)
    pts = a[None] + np.linspace(0.0, 1.0, n)[:, None] * (b - a)[None]  # (n, 2)
    idx = np.rint((pts - WORKSPACE_LOW[:2]) / GRID_RES).astype(int)
    i = np.clip(idx[:, 0], 0, occ.shape[0] - 1)
    j = np.clip(idx[:, 1], 0, occ.shape[1] - 1)
    return not bool(occ[i, j].any())


def _cost_to_go(goal: np.ndarray, occ: np.ndarray) -> np.ndarray:
    """(W, H) cost-to-go to ``goal`` over the 8-connected grid (vectorised relaxation)."""
    cost = np.where(occ, _BLOCKED_COST, 1.0)
    W, H = occ.shape
    big = 1e9
    dist = np.full((W + 2, H + 2), big)
    cpad = np.full((W + 2, H + 2), big)
    cpad[1:-1, 1:-1] = cost
    gi, gj = _cell(goal)
    dist[gi + 1, gj + 1] = 0.0
    inner = (slice(1, -1), slice(1, -1))
    for _ in range(4 * (W + H)):
        best = dist[inner].copy()
        for dx, dy, length in _NEIGHBOURS:
            nb = (slice(1 + dx, W + 1 + dx), slice(1 + dy, H + 1 + dy))
            cand = dist[nb] + length * 0.5 * (cpad[inner] + cpad[nb])
            np.minimum(best, cand, out=best)
        if np.array_equal(best, dist[inner]):
            break
        dist[inner] = best
    return dist[inner]


def _next_waypoint(start: np.ndarray, goal: np.ndarray, boxes: list) -> np.ndarray:
    """Point to steer at: ``goal`` when in sight, else the farthest visible cell of the path."""
    start_blocked = bool(_blocked(start, boxes))
    if not start_blocked and _segment_free(start, goal, boxes):
        return goal
    occ = _blocked(_CELLS, boxes)  # (W, H)
    field = _cost_to_go(goal, occ)
    W, H = occ.shape
    i, j = _cell(start)
    gcell = _cell(goal)
    path = []
    for _ in range(12):  # walk down the field
        best, nxt = field[i, j], None
        for dx, dy, _len in _NEIGHBOURS:
            a, b = i + dx, j + dy
            if 0 <= a < W and 0 <= b < H and field[a, b] < best - 1e-9:
                best, nxt = field[a, b], (a, b)
        if nxt is None:
            break
        i, j = nxt
        path.append((i, j))
        if (i, j) == gcell:
            break
    if not path:
        return goal
    if path[-1] == gcell and _line_free(start, goal, occ):
        return goal
    if start_blocked:  # in contact with a block: follow the field closely
        a, b = path[min(1, len(path) - 1)]
        return _CELLS[a, b]
    for a, b in reversed(path):
        if _line_free(start, _CELLS[a, b], occ):
            return _CELLS[a, b]
    a, b = path[0]
    return _CELLS[a, b]


def _block_boxes(s: dict[str, Any], colors: list[str], grow: float) -> list[tuple]:
    return [(s["block_pos"][c][:2], _yaw(s["block_quat"][c]), grow) for c in colors]


class ReachExpert(ScriptedExpert):
    """Move to the target block: straight when clear, else along a grid path around blocks."""

    task_name = "reach"

    def policy(self, s: dict[str, Any]) -> np.ndarray:
        e = s["effector_pos"][:2]
        t = s["block_pos"][s["target"]][:2]
        others = [c for c in s["block_pos"] if c != s["target"]]
        boxes = _block_boxes(s, others, EFFECTOR_RADIUS + MARGIN)
        return _to_action(_next_waypoint(e, t, boxes) - e)


class PushExpert(ScriptedExpert):
    """Go around to the side of the block away from the goal, then push it along the line."""

    task_name = "push"
    behind = CONTACT + 0.02  # pre-push distance behind the block centre

    def policy(self, s: dict[str, Any]) -> np.ndarray:
        e = s["effector_pos"][:2]
        b = s["block_pos"][s["target"]][:2]
        g = s["zone_pos"][s["goal"]]
        to_goal = g - b
        dist = float(np.linalg.norm(to_goal))
        if dist < 1e-6:
            return np.zeros(2)
        d = to_goal / dist  # push direction
        n = np.array([-d[1], d[0]])
        rel = e - b
        along, lat = float(rel @ d), float(rel @ n)
        # 1) in pushing position: behind the block and on the line -> push, keep on the line
        if -(self.behind + 0.03) < along < -(CONTACT - 0.012) and abs(lat) < 0.018:
            speed = min(MAX_STEP, max(0.012, dist))
            return _to_action(d * speed - n * lat)

        # 2) otherwise go (around the target and the other blocks) to the pre-push point
        boxes = _block_boxes(s, list(s["block_pos"]), EFFECTOR_RADIUS + MARGIN)
        pre = np.clip(b - d * self.behind, WORKSPACE_LOW[:2], WORKSPACE_HIGH[:2])
        return _to_action(_next_waypoint(e, pre, boxes) - e)


class PickPlaceExpert(ScriptedExpert):
    """Hover over the block, descend, grasp, lift, carry over the zone, lower and release."""

    task_name = "pick-place"
    carry_z = 0.145  # effector height while carrying (held block clears the others)
    hover_z = 0.12  # effector height while moving over to a block

    def policy(self, s: dict[str, Any]) -> np.ndarray:
        e = s["effector_pos"]
        target = s["target"]
        b = s["block_pos"][target]
        g = s["zone_pos"][s["goal"]]
        held = s["held"]
        act = np.zeros(4)

        if held == target:  # carry to the zone, lower, release
            xy_err = g - b[:2]
            bottom = b[2] - BLOCK_HALF  # height of the block's lowest face above the table
            tol = 0.012 if bottom > 0.03 else 0.03  # once low, stay on the way down
            if float(np.linalg.norm(xy_err)) > tol:
                dz = self.carry_z - e[2]
                xy_scale = 1.0 if e[2] > self.carry_z - 0.03 else 0.25  # lift first
                act[:2] = _to_action(xy_err) * xy_scale
                act[2] = _to_action(np.array([dz]))[0]
                act[3] = 1.0
            else:
                act[:2] = _to_action(xy_err)
                act[2] = _to_action(np.array([0.002 - bottom]), gain=0.8)[0]
                act[3] = -1.0 if bottom < 0.006 else 1.0
            return act

        if held is not None:  # holding the wrong block: let it go and rise
            act[2] = 1.0
            act[3] = -1.0
            return act

        act[3] = -1.0
        in_zone = float(np.linalg.norm(b[:2] - g)) < ZONE_RADIUS - 0.01
        if in_zone and b[2] < BLOCK_HALF + 0.01:  # placed: back off upwards
            act[2] = _to_action(np.array([self.hover_z - e[2]]))[0]
            return act

        xy_err = b[:2] - e[:2]
        top = b[2] + BLOCK_HALF + EFFECTOR_RADIUS  # effector height touching the block's top
        tol = 0.01 if e[2] > top + 0.03 else 0.025  # once low, stay on the way down
        if float(np.linalg.norm(xy_err)) > tol:  # move over the block at hover height
            z_goal = max(self.hover_z, top + 0.04)
            xy_scale = 1.0 if (e[2] > z_goal - 0.03 or np.linalg.norm(xy_err) < 0.03) else 0.25
            act[:2] = _to_action(xy_err) * xy_scale
            act[2] = _to_action(np.array([z_goal - e[2]]))[0]
            return act
        act[:2] = _to_action(xy_err)  # aligned: descend onto the top face and grasp
        act[2] = _to_action(np.array([top - 0.004 - e[2]]))[0]
        if s["block_dist"][target] < TOUCH_DIST - 0.001:
            act[3] = 1.0
        return act


_EXPERTS: dict[str, type[ScriptedExpert]] = {
    "reach": ReachExpert,
    "push": PushExpert,
    "pick-place": PickPlaceExpert,
}


def make_expert(env: Any) -> ScriptedExpert:
    """The scripted expert for ``env``'s task (``env`` may be wrapped). An env of another task family
    that brings its own expert (a ``make_expert()`` method, as the driving world) builds it itself."""
    own = getattr(getattr(env, "unwrapped", env), "make_expert", None)
    if callable(own):
        return own()
    u = ScriptedExpert._tabletop(env)
    name = getattr(u, "task_name", None)
    if name not in _EXPERTS:
        raise ExpertError(
            f"no scripted expert for task '{name}'; experts exist for: {', '.join(_EXPERTS)}"
        )
    return _EXPERTS[name](u)
