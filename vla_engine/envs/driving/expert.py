"""The scripted driving expert: route following by pure pursuit, speed by the intelligent driver model (IDM)
with every car on the route ahead as a possible leader, a curve speed limit, and a stop where the task says.

It is a function of the env's current state (no memory), so it acts from any state, which DAgger needs:

    expert = DrivingExpert(env)        # or vla_engine.envs.make_expert(env)
    action = expert.act()              # (steer, throttle, brake) float32
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .env import MAX_ACCEL, MAX_BRAKE, MAX_STEER, WHEELBASE, DrivingEnv, gap_ahead, idm_accel
from .roads import SPEED_LIMIT
from .world import CAR_LENGTH

MAX_LATERAL_ACCEL = 2.5  # m/s^2 in curves


class DrivingExpert:
    """Pure pursuit on the route + IDM speed control; ``act(env)`` gives the action for ``env``'s state."""

    task_name = "driving"

    def __init__(self, env: Any):
        self.env = self._unwrap(env)

    @staticmethod
    def _unwrap(env: Any) -> DrivingEnv:
        u = getattr(env, "unwrapped", env)
        if not isinstance(u, DrivingEnv):
            raise TypeError(f"DrivingExpert drives a DrivingEnv (make_env('driving/...')); got {type(u).__name__}")
        return u

    def reset(self) -> None:
        """Nothing to reset: the expert is a function of the current state."""

    def __call__(self, obs: Any = None) -> np.ndarray:
        return self.act()

    def act(self, env: Any = None) -> np.ndarray:
        u = self.env if env is None else self._unwrap(env)
        return np.array([self.steer(u), *self.pedals(u)], dtype=np.float32)

    # -- lateral: pure pursuit ----------------------------------------------------------------------
    @staticmethod
    def steer(u: DrivingEnv) -> float:
        route, ego, v = u.route, u.ego, u.speed
        look = float(np.clip(3.0 + 0.6 * v, 4.0, 10.0))
        target = route.at(u.progress_s + look)
        if u.progress_s + look > route.length:  # past the route's end: keep its last heading
            h = route.heading[-1]
            target = route.points[-1] + np.array([np.cos(h), np.sin(h)]) * (u.progress_s + look - route.length)
        d = target - ego[:2]
        c, s = np.cos(-ego[2]), np.sin(-ego[2])
        lx, ly = c * d[0] - s * d[1], s * d[0] + c * d[1]
        alpha = np.arctan2(ly, lx)
        ld = max(np.hypot(lx, ly), 1e-3)
        delta = np.arctan(2.0 * WHEELBASE * np.sin(alpha) / ld)
        return float(np.clip(delta / MAX_STEER, -1.0, 1.0))

    # -- longitudinal: IDM with leaders, curves and the task's stop --------------------------------
    @staticmethod
    def target_speed(u: DrivingEnv) -> float:
        route = u.route
        ahead = (route.s >= u.progress_s) & (route.s <= u.progress_s + 4.0 + 1.5 * u.speed)
        k = float(route.curvature[ahead].max()) if ahead.any() else 0.0
        return float(min(SPEED_LIMIT, np.sqrt(MAX_LATERAL_ACCEL / max(k, 1e-3))))

    def pedals(self, u: DrivingEnv) -> tuple[float, float]:
        v0 = self.target_speed(u)
        others = [w.pose[:2] for w in u.vehicles]
        gap, k = gap_ahead(u.route, u.progress_s, others, horizon=40.0)
        dv = u.speed - (u.vehicles[k].v if k >= 0 else 0.0)
        sc = u.scenario
        if sc.target is not None and sc.stop_gap is None and k < 0:  # follow: stop where the lead parked
            t = u.vehicles[sc.target]
            gap = min(gap, float(t.path.length - u.progress_s - CAR_LENGTH))
        acc = idm_accel(u.speed, v0, gap, dv, a=2.0, b=3.0, t_head=1.0, s0=3.0)
        if gap < 1.0 or (gap < 3.0 and u.speed < 0.3):  # standing close: hold the brake
            return 0.0, 1.0
        if acc >= 0:
            return float(np.clip(acc / MAX_ACCEL, 0.0, 1.0)), 0.0
        return 0.0, float(np.clip(-acc / MAX_BRAKE, 0.0, 1.0))
