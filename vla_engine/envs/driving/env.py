"""``DrivingEnv``: a gymnasium env of the driving town with camera, lidar, radar and IMU on the ego.

Control at ``fps`` (10 Hz): action = (steer in [-1, 1], throttle in [0, 1], brake in [0, 1]). The ego is a
kinematic bicycle (wheelbase ``WHEELBASE``, steering up to ``MAX_STEER``) integrated in ``IMU_RATE`` sub-steps
per control step (one IMU sample each). Other cars follow their lane paths with the intelligent driver model
(IDM), braking for any car (the ego included) on their path ahead; parked cars stand still.

Observation (a dict):

    pixels      (S, S, 3) uint8   front camera
    agent_pos   (2,) float32      speed (m/s), yaw rate (rad/s). The previous action is not in it: a cloned
                                  policy that sees it learns to repeat it (the copycat problem of driving
                                  BC; measured here, docs/benchmarks.md); it is in ``info["last_action"]``
    lidar       (R, 4) float32    ray-ring points (x, y, z, intensity) in the ego frame, zeros where no hit
    lidar_mask  (R,) int8         1 = a hit
    radar       (16, 4) float32   targets (range, azimuth, radial velocity, rcs), nearest first
    radar_mask  (16,) int8
    imu         (IMU_RATE, 6)     accelerometer + gyro samples of the last control step
    pose        (3,) float32      the ego's world pose (x, y, yaw), as a dataset's ego pose (nuScenes
                                  ego_pose, KITTI oxts); datasets derive waypoint labels from it

Reward: 0.1 per metre of route progress, +1 on success, -1 on a collision or leaving the road (both end the
episode). ``info``: ``instruction``, ``is_success``, ``collision``, ``off_road``, ``route_completion`` (0-1),
``distance`` (m driven), ``collisions`` (count), ``ego_pose`` (x, y, yaw).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from .roads import SPEED_LIMIT, Path, RoadNetwork
from .sensors import IMU_RATE, LIDAR_SHAPE, RADAR_MAX_TARGETS, imu_sample, radar_targets
from .tasks import DrivingTask, Scenario
from .world import CAR_COLORS, CAR_LENGTH, CAR_WIDTH, World

WHEELBASE = 2.7
MAX_STEER = 0.6  # rad
MAX_ACCEL, MAX_BRAKE = 3.0, 7.0  # m/s^2 at full throttle / brake
N_SLOTS = 6  # vehicle slots in the scene
GRID, BLOCK = 3, 50.0
HARD_BRAKE = 6.0  # m/s^2: a lead car's emergency stop (the convoy tasks)


def _cones(net: RoadNetwork) -> list[tuple[float, float]]:
    """Static obstacles: traffic cones at the outer corners of every junction, off the carriageway."""
    from .roads import JUNCTION_HALF

    out = []
    for p in net.nodes.values():
        for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            out.append((float(p[0] + sx * (JUNCTION_HALF + 1.0)), float(p[1] + sy * (JUNCTION_HALF + 1.0))))
    return out


def obb_overlap(a: np.ndarray, b: np.ndarray, size_a=(CAR_LENGTH, CAR_WIDTH), size_b=(CAR_LENGTH, CAR_WIDTH)) -> bool:
    """Whether two oriented rectangles (x, y, yaw) of (length, width) overlap (separating axis test)."""
    def corners(p, size):
        c, s = np.cos(p[2]), np.sin(p[2])
        hx, hy = size[0] / 2, size[1] / 2
        local = np.array([[hx, hy], [hx, -hy], [-hx, -hy], [-hx, hy]])
        return p[:2] + local @ np.array([[c, s], [-s, c]])

    ca, cb = corners(a, size_a), corners(b, size_b)
    for yaw in (a[2], a[2] + np.pi / 2, b[2], b[2] + np.pi / 2):
        axis = np.array([np.cos(yaw), np.sin(yaw)])
        pa, pb = ca @ axis, cb @ axis
        if pa.max() < pb.min() or pb.max() < pa.min():
            return False
    return True


def gap_ahead(path: Path, s: float, others: list[np.ndarray], horizon: float = 35.0, lateral: float = 2.2
              ) -> tuple[float, int]:
    """Bumper gap (m) to the nearest of ``others`` (positions (2,)) lying on ``path`` within ``horizon`` metres
    ahead of arc length ``s``, and its index (inf, -1 when none)."""
    if not others:
        return float("inf"), -1
    ahead = s + np.arange(1.0, horizon, 1.0)
    ahead = ahead[ahead <= path.length + 1.0]
    if len(ahead) == 0:
        return float("inf"), -1
    pts = path.at(ahead)  # (K, 2)
    best, idx = float("inf"), -1
    for i, q in enumerate(others):
        d = np.linalg.norm(pts - q, axis=1)
        k = int(np.argmin(d))
        if d[k] < lateral:
            gap = float(ahead[k] - s - CAR_LENGTH)
            if gap < best:
                best, idx = gap, i
    return best, idx


def idm_accel(v: float, v0: float, gap: float, dv: float, a: float = 2.0, b: float = 3.0, t_head: float = 1.2,
              s0: float = 3.0) -> float:
    """Intelligent driver model: acceleration for speed ``v``, desired ``v0``, ``gap`` and closing speed ``dv``."""
    free = 1.0 - (v / max(v0, 0.1)) ** 4
    if not np.isfinite(gap):
        return a * free
    s_star = s0 + max(0.0, v * t_head + v * dv / (2 * np.sqrt(a * b)))
    return a * (free - (s_star / max(gap, 0.1)) ** 2)


class Vehicle:
    def __init__(self, path: Path, s: float, cruise: float, color: str, stops=()):
        self.path, self.s, self.cruise, self.color = path, float(s), float(cruise), color
        self.v = cruise
        self.stops = list(stops)  # emergency stops still ahead: (arc length, steps standing)
        self.waited = 0

    def emergency_stop(self, dt: float) -> bool:
        """Past the next stop's point: brake at ``HARD_BRAKE``, stand for its steps, then drive on (IDM)."""
        if not self.stops or self.s < self.stops[0][0]:
            return False
        if self.v > 0.0:
            self.v = max(0.0, self.v - HARD_BRAKE * dt)
            self.s = min(self.s + self.v * dt, self.path.length)
            return True
        self.waited += 1
        if self.waited >= self.stops[0][1]:
            self.stops.pop(0)
            self.waited = 0
        return True

    @property
    def pose(self) -> np.ndarray:
        xy = self.path.at(self.s)
        return np.array([xy[0], xy[1], self.path.heading_at(self.s)])

    @property
    def velocity(self) -> np.ndarray:
        h = self.path.heading_at(self.s)
        return np.array([np.cos(h), np.sin(h)]) * self.v


class DrivingEnv(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, task: DrivingTask, image_size: int = 96, render_mode: str | None = "rgb_array",
                 max_episode_steps: int | None = None, render_images: bool = True, lidar: bool = True,
                 lidar_shape: tuple[int, int] = LIDAR_SHAPE, **kw: Any):
        if kw:
            raise TypeError(f"DrivingEnv got unknown options {', '.join(kw)}; it takes image_size, render_mode, "
                            f"max_episode_steps, render_images, lidar, lidar_shape")
        self.task = task
        self.task_name = task.name
        self.image_size, self.render_mode = int(image_size), render_mode
        self.max_episode_steps = int(max_episode_steps or task.max_episode_steps)
        self.render_images, self.use_lidar = bool(render_images), bool(lidar)
        self.dt = 1.0 / task.fps
        self.net = RoadNetwork(GRID, BLOCK)
        self.cones = _cones(self.net)
        self.world = World(self.net, N_SLOTS, self.cones, self.image_size, tuple(lidar_shape),
                           visibility=task.visibility)
        r = len(self.world.lidar_dirs)
        s = self.image_size
        self.observation_space = spaces.Dict({
            "pixels": spaces.Box(0, 255, (s, s, 3), np.uint8),
            "agent_pos": spaces.Box(-np.inf, np.inf, (2,), np.float32),
            "lidar": spaces.Box(-np.inf, np.inf, (r, 4), np.float32),
            "lidar_mask": spaces.MultiBinary(r),
            "radar": spaces.Box(-np.inf, np.inf, (RADAR_MAX_TARGETS, 4), np.float32),
            "radar_mask": spaces.MultiBinary(RADAR_MAX_TARGETS),
            "imu": spaces.Box(-np.inf, np.inf, (IMU_RATE, 6), np.float32),
            "pose": spaces.Box(-np.inf, np.inf, (3,), np.float32),
        })
        self.action_space = spaces.Box(np.array([-1, 0, 0], np.float32), np.ones(3, np.float32), dtype=np.float32)
        self.scenario: Scenario | None = None

    # -- episode ---------------------------------------------------------------------------------
    @property
    def instruction(self) -> str:
        return self.scenario.instruction if self.scenario is not None else ""

    @property
    def route(self) -> Path:
        return self.scenario.route

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        self.scenario = sc = self.task.sample(rng, self.net, options)
        self.sensor_rng = np.random.default_rng(rng.integers(2 ** 63))
        xy = sc.route.at(sc.ego_s)
        self.ego = np.array([xy[0], xy[1], sc.route.heading_at(sc.ego_s)])
        self.speed, self.yaw_rate = float(sc.ego_speed), 0.0
        self.last_action = np.zeros(3, np.float32)
        self.vehicles = [Vehicle(v.path, v.s, v.speed, v.color, v.stops) for v in sc.vehicles[:N_SLOTS]]
        self.world.set_colors([CAR_COLORS[v.color] for v in self.vehicles] + [(0.5, 0.5, 0.5)] * N_SLOTS)
        self.progress_s = sc.ego_s
        self.start_s = sc.ego_s
        self.steps, self.distance, self.collisions = 0, 0.0, 0
        self.stopped_steps = 0
        self.imu = np.zeros((IMU_RATE, 6), np.float32)
        self.imu[:, 2] = 9.81
        self.poses = [self.ego.copy()]
        return self._observe(), self._info(False, False, False)

    def step(self, action):
        if self.scenario is None:
            raise RuntimeError("DrivingEnv.step before reset(); call env.reset(seed=...) first")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (3,) or not np.all(np.isfinite(a)):
            raise ValueError(f"driving actions are 3 finite numbers (steer, throttle, brake); got {a.tolist()}")
        steer = float(np.clip(a[0], -1, 1)) * MAX_STEER
        throttle, brake = float(np.clip(a[1], 0, 1)), float(np.clip(a[2], 0, 1))
        self.last_action = np.array([np.clip(a[0], -1, 1), throttle, brake], np.float32)
        h = self.dt / IMU_RATE
        for k in range(IMU_RATE):  # bicycle sub-steps, one IMU sample each
            acc = MAX_ACCEL * throttle - (MAX_BRAKE * brake if self.speed > 0 else 0.0) - 0.02 * self.speed ** 2
            v_new = float(np.clip(self.speed + acc * h, 0.0, 20.0))
            acc_eff = (v_new - self.speed) / h
            self.speed = v_new
            self.yaw_rate = self.speed / WHEELBASE * np.tan(steer)
            self.ego[0] += self.speed * np.cos(self.ego[2]) * h
            self.ego[1] += self.speed * np.sin(self.ego[2]) * h
            self.ego[2] = float(np.angle(np.exp(1j * (self.ego[2] + self.yaw_rate * h))))
            self.distance += self.speed * h
            self.imu[k] = imu_sample(self.sensor_rng, acc_eff, self.speed, self.yaw_rate)
        self._move_traffic()
        self.steps += 1
        self.poses.append(self.ego.copy())
        old = self.progress_s
        self.progress_s, lateral = self.route.project(self.ego[:2], s_hint=self.progress_s)
        collision = self._collided()
        off_road = not self.net.on_road(self.ego[:2], margin=0.5) or abs(lateral) > 5.0
        self.collisions += int(collision)
        success = self._success()
        reward = 0.1 * (self.progress_s - old) + (1.0 if success else 0.0) - (1.0 if collision or off_road else 0.0)
        terminated = bool(success or collision or off_road)
        truncated = bool(not terminated and self.steps >= self.max_episode_steps)
        return self._observe(), float(reward), terminated, truncated, self._info(success, collision, off_road)

    def _move_traffic(self) -> None:
        ego_pos = self.ego[:2].copy()
        poses = [v.pose for v in self.vehicles]
        for i, v in enumerate(self.vehicles):
            if v.cruise <= 0.0 or v.emergency_stop(self.dt):
                continue
            others = [p[:2] for j, p in enumerate(poses) if j != i] + [ego_pos]
            speeds = [w.v for j, w in enumerate(self.vehicles) if j != i] + [self.speed]
            gap, k = gap_ahead(v.path, v.s, others)
            dv = v.v - speeds[k] if k >= 0 else 0.0
            end_gap = v.path.length - v.s + 2.0  # the path's end acts as a standing car: park there
            if end_gap < gap:
                gap, dv, k = end_gap, v.v, -1
            acc = idm_accel(v.v, v.cruise, gap, dv, s0=2.0)
            v.v = float(np.clip(v.v + acc * self.dt, 0.0, v.cruise * 1.2))
            v.s = min(v.s + v.v * self.dt, v.path.length)

    def _collided(self) -> bool:
        for v in self.vehicles:
            p = v.pose
            if np.linalg.norm(p[:2] - self.ego[:2]) < 6.0 and obb_overlap(self.ego, p):
                return True
        for c in self.cones:
            cone = np.array([c[0], c[1], 0.0])
            if np.linalg.norm(cone[:2] - self.ego[:2]) < 4.0 and obb_overlap(self.ego, cone, size_b=(0.5, 0.5)):
                return True
        return False

    def target_gap(self) -> float:
        """Bumper gap (m) to the named vehicle along the route (inf when there is none)."""
        sc = self.scenario
        if sc.target is None:
            return float("inf")
        t = self.vehicles[sc.target]
        ts, lat = self.route.project(t.pose[:2], s_hint=t.s if t.path is self.route else None, window=60.0)
        return float(ts - self.progress_s - CAR_LENGTH) if abs(lat) < 2.5 else float("inf")

    def _success(self) -> bool:
        sc = self.scenario
        if sc.stop_gap is not None:  # stop-behind: at a standstill within the gap band
            gap = self.target_gap()
            self.stopped_steps = self.stopped_steps + 1 if self.speed < 0.3 else 0
            return bool(sc.stop_gap[0] <= gap <= sc.stop_gap[1] and self.stopped_steps >= 3)
        if sc.target is not None:  # follow: reached the lead's parking spot and stopped
            return bool(self.progress_s >= sc.goal_s and self.speed < 1.0)
        return bool(self.progress_s >= sc.goal_s)

    def route_completion(self) -> float:
        sc = self.scenario
        return float(np.clip((self.progress_s - self.start_s) / max(sc.goal_s - self.start_s, 1e-6), 0.0, 1.0))

    def _info(self, success: bool, collision: bool, off_road: bool) -> dict[str, Any]:
        return {"instruction": self.instruction, "is_success": bool(success), "collision": bool(collision),
                "off_road": bool(off_road), "route_completion": self.route_completion(),
                "distance": float(self.distance), "collisions": int(self.collisions),
                "ego_pose": self.ego.astype(np.float32).copy(), "speed": float(self.speed),
                "last_action": self.last_action.copy()}

    # -- sensors ---------------------------------------------------------------------------------
    def _observe(self) -> dict[str, np.ndarray]:
        self.world.place(self.ego, [v.pose for v in self.vehicles] + [None] * (N_SLOTS - len(self.vehicles)))
        s = self.image_size
        pixels = self.world.render("front") if self.render_images else np.zeros((s, s, 3), np.uint8)
        r = len(self.world.lidar_dirs)
        if self.use_lidar:
            pts, hit = self.world.lidar(self.ego)
        else:
            pts, hit = np.zeros((r, 4), np.float32), np.zeros(r, bool)
        objects = [(v.pose[:2], v.velocity, 10.0) for v in self.vehicles]
        objects += [(np.array(c), np.zeros(2), 0.0) for c in self.cones]
        radar, radar_mask = radar_targets(self.sensor_rng, self.ego, self.speed, objects)
        state = np.array([self.speed, self.yaw_rate], np.float32)
        return {"pixels": pixels, "agent_pos": state, "lidar": pts, "lidar_mask": hit.astype(np.int8),
                "radar": radar, "radar_mask": radar_mask, "imu": self.imu.copy(),
                "pose": self.ego.astype(np.float32).copy()}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.world.render("front")

    def render_bev(self, size: int = 192) -> np.ndarray:
        """A bird's-eye view (size, size, 3) uint8 from above the ego, forward up."""
        return self.world.render("bev", size)

    # -- evaluation (vla_engine.eval.evaluator reads these) ------------------------------------------
    @property
    def action_dim(self) -> int:
        return 3

    @property
    def fps(self) -> int:
        return int(self.task.fps)

    def episode_metrics(self, info: dict[str, Any]) -> dict[str, Any]:
        """Driving measures of the episode that just ended (one row of an evaluation)."""
        return {"route_completion": float(info["route_completion"]), "collisions": int(info["collisions"]),
                "off_road": bool(info["off_road"]), "distance_m": float(info["distance"])}

    @staticmethod
    def summarize_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
        """``eval/route_completion``, ``eval/collisions_per_km``, ``eval/off_road_rate``, ``eval/km`` of rows."""
        from .metrics import driving_metrics

        m = driving_metrics([{**r, "distance": r["distance_m"]} for r in rows])
        return {"eval/route_completion": m["route_completion"], "eval/collisions_per_km": m["collisions_per_km"],
                "eval/off_road_rate": float(np.mean([r["off_road"] for r in rows])), "eval/km": m["km"]}

    def video_frame(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The camera beside a bird's-eye view of the same height (H, 2H, 3) uint8."""
        cam = obs["pixels"]
        return np.concatenate([cam, self.render_bev(cam.shape[0])], axis=1)

    def get_privileged_state(self) -> dict[str, Any]:
        return {"ego": self.ego.copy(), "speed": self.speed, "progress_s": self.progress_s,
                "vehicles": [v.pose for v in self.vehicles], "goal_s": self.scenario.goal_s}

    def make_expert(self) -> Any:
        """The scripted expert of this env (``vla_engine.envs.make_expert`` calls it)."""
        from .expert import DrivingExpert

        return DrivingExpert(self)

    def close(self) -> None:
        self.world.close()
