"""Driving tasks: what a reset draws (routes, traffic, the named car, the instruction) and when an episode
succeeds. Pure numpy (no MuJoCo), so registering the tasks is light.

* ``turn``        "take the next left" / "turn right at the junction" / "go straight through the junction":
                  reach the end of the lane behind the named exit, with crossing traffic around.
* ``follow``      "follow the blue car ahead": a lead car drives a route of random turns and parks at its end;
                  follow it there and stop behind it.
* ``stop-behind`` "stop behind the red car": a named parked car ahead in the ego's lane, other colours parked
                  in other lanes; come to a stop 1-8 m behind it.
* ``queue``       "take the next left behind the blue car": the turn of ``turn``, with a slower named car ahead
                  on the same route that parks at its end; keep behind it all the way and stop behind it.
                  ``driving/queue-fog`` is the same in fog: the camera sees ~12 m (lidar, radar and IMU are
                  not affected, as radar is not by real fog), so the car ahead is the range sensors' to find.
* ``convoy``      "keep behind the blue car": straight on through the junction behind a named car that cruises
                  near the speed limit and makes one or two emergency stops (full braking, a wait, then on
                  again) before it parks at the route's end. ``driving/convoy-fog`` puts the camera in fog
                  that hides the car at the expert's following gap, so only the range sensors show it braking.

Every episode fails on a collision (vehicle or cone) or when the ego leaves the road.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .roads import SPEED_LIMIT, Path, RoadNetwork

COLORS = ("red", "blue", "green", "yellow", "white", "black")
TURN_WORDS = {"left": "left", "right": "right", "straight": "straight"}


@dataclass
class VehicleSpec:
    path: Path
    s: float
    speed: float  # target cruise speed (0: parked)
    color: str
    stops: tuple[tuple[float, int], ...] = ()  # emergency stops: (arc length, steps standing) in path order


@dataclass
class Scenario:
    route: Path  # the ego's path
    ego_s: float  # start arc length on the route
    ego_speed: float
    vehicles: list[VehicleSpec]
    instruction: str
    goal_s: float  # the route is complete at this arc length
    target: int | None = None  # index of the named vehicle
    stop_gap: tuple[float, float] | None = None  # stop-behind: allowed bumper gap (m) at a standstill
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class DrivingTask:
    """A driving task of the ``driving/`` family; calling it builds its env (``make_env`` keywords)."""

    name: str
    kind: str
    description: str
    templates: tuple[str, ...]
    max_episode_steps: int = 200
    fps: int = 10
    n_traffic: int = 3
    # fog on the front camera: the distance (m) at which it is opaque (None: clear); other sensors unaffected
    visibility: float | None = None

    @property
    def gym_id(self) -> str:
        return "vla_engine/Driving" + "".join(p.capitalize() for p in self.name.split("/")[-1].split("-")) + "-v0"

    def meta(self) -> dict[str, Any]:
        from .labels import POSE_KEY, WAYPOINT_HORIZON, WAYPOINT_KEY
        from .sensors import IMU_RATE, LIDAR_SHAPE, RADAR_MAX_TARGETS

        rays = LIDAR_SHAPE[0] * LIDAR_SHAPE[1]

        def feat(*shape: int) -> dict[str, Any]:
            return {"dtype": "float32", "shape": tuple(shape), "names": None}

        return {
            "action_dim": 3,
            "state_dim": 2,
            "fps": self.fps,
            "max_episode_steps": self.max_episode_steps,
            "description": self.description,
            "gym_id": self.gym_id,
            "camera_names": ["front"],
            "extra_cameras": ["bev"],
            "state_names": ["speed", "yaw_rate"],
            "action_names": ["steer", "throttle", "brake"],
            "example_instruction": self.templates[0].format(turn="left", color="red")
            + (" behind the red car" if self.kind == "queue" else ""),
            "visibility": self.visibility,
            "family": "driving",
            "sensors": {"lidar": {"shape": [LIDAR_SHAPE[0] * LIDAR_SHAPE[1], 4], "rays": list(LIDAR_SHAPE)},
                        "radar": {"shape": [RADAR_MAX_TARGETS, 4],
                                  "fields": ["range", "azimuth", "radial_velocity", "rcs"]},
                        "imu": {"shape": [IMU_RATE, 6], "rate_hz": self.fps * IMU_RATE}},
            # what datagen records beside the camera, state and action: env observation key -> dataset feature
            "sensor_obs": {"lidar": "observation.lidar", "lidar_mask": "observation.lidar_mask",
                           "radar": "observation.radar", "radar_mask": "observation.radar_mask",
                           "imu": "observation.imu", "pose": POSE_KEY},
            "extra_features": {"observation.lidar": feat(rays, 4), "observation.lidar_mask": feat(rays),
                               "observation.radar": feat(RADAR_MAX_TARGETS, 4),
                               "observation.radar_mask": feat(RADAR_MAX_TARGETS),
                               "observation.imu": feat(IMU_RATE, 6), POSE_KEY: feat(3),
                               WAYPOINT_KEY: feat(WAYPOINT_HORIZON, 2)},
            # labels computed from a whole recorded episode (the waypoints from the ego poses)
            "episode_labels": "vla_engine.envs.driving.labels:episode_labels",
        }

    def __call__(self, **kwargs: Any) -> Any:
        from .env import DrivingEnv

        return DrivingEnv(self, **kwargs)

    # -- scenarios ---------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, net: RoadNetwork, options: dict | None = None) -> Scenario:
        options = options or {}
        if self.kind == "turn":
            sc = self._turn(rng, net, options)
        elif self.kind == "follow":
            sc = self._follow(rng, net, options)
        elif self.kind == "queue":
            sc = self._queue(rng, net, options)
        elif self.kind == "convoy":
            sc = self._convoy(rng, net, options)
        else:
            sc = self._stop_behind(rng, net, options)
        self._add_traffic(rng, net, sc, self.n_traffic)
        return sc

    def _phrase(self, rng: np.random.Generator, **kw: Any) -> str:
        return self.templates[int(rng.integers(len(self.templates)))].format(**kw)

    def _turn(self, rng, net, options) -> Scenario:
        turn = options.get("turn")
        while True:
            lane = int(rng.integers(len(net.lanes)))
            succ = net.successors(lane)
            choices = sorted(succ)
            if not choices or (turn is not None and turn not in succ):
                continue
            t = turn or choices[int(rng.integers(len(choices)))]
            break
        route = net.route_path([lane, succ[t]])
        words = [s for s in self.templates if ("{turn}" in s) == (t != "straight")]
        words = [s for s in words if ("straight" in s) == (t == "straight")]
        text = words[int(rng.integers(len(words)))].format(turn=t)
        start = float(rng.uniform(1.0, 8.0))
        return Scenario(route, start, float(rng.uniform(3.0, 6.0)), [], text, route.length - 3.0,
                        info={"turn": t})

    def _queue(self, rng, net, options) -> Scenario:
        # the turn task's route and phrase, then a slower named car ahead on it (it parks at the route's end)
        sc = self._turn(rng, net, options)
        color = options.get("color") or COLORS[int(rng.integers(len(COLORS)))]
        lead = VehicleSpec(sc.route, sc.ego_s + float(rng.uniform(12.0, 20.0)), float(rng.uniform(3.0, 4.5)), color)
        from .world import CAR_LENGTH

        sc.vehicles, sc.target, sc.info["color"] = [lead], 0, color
        sc.instruction = sc.instruction + f" behind the {color} car"
        sc.goal_s = sc.route.length - 1.0 - CAR_LENGTH - 12.0  # the lead parks at the end; stop within 12 m
        return sc

    def _convoy(self, rng, net, options) -> Scenario:
        # straight on through a junction (no turn to learn), behind a fast named car that brakes hard once
        # or twice; the ego starts at the lead's speed a little over the expert's following gap behind it
        while True:
            lane = int(rng.integers(len(net.lanes)))
            if "straight" in net.successors(lane):
                break
        route = net.route_path([lane, net.successors(lane)["straight"]])
        sc = Scenario(route, float(rng.uniform(1.0, 5.0)), 0.0, [], "", route.length)
        color = options.get("color") or COLORS[int(rng.integers(len(COLORS)))]
        cruise = float(rng.uniform(6.5, 7.5))
        lead_s = sc.ego_s + float(rng.uniform(11.0, 15.0))
        end = sc.route.length - 25.0
        stops = [float(rng.uniform(lead_s + 12.0, lead_s + 30.0))]
        if stops[0] + 20.0 < end and rng.random() < 0.5:
            stops.append(float(rng.uniform(stops[0] + 20.0, end)))
        lead = VehicleSpec(sc.route, lead_s, cruise, color,
                           stops=tuple((s, int(rng.integers(10, 26))) for s in stops))
        from .world import CAR_LENGTH

        sc.vehicles, sc.target, sc.ego_speed, sc.info["color"] = [lead], 0, cruise, color
        sc.instruction = self._phrase(rng, color=color)
        sc.goal_s = sc.route.length - 1.0 - CAR_LENGTH - 12.0  # the lead parks at the end; stop within 12 m
        return sc

    def _follow(self, rng, net, options) -> Scenario:
        lane = int(rng.integers(len(net.lanes)))
        route = net.route_path(net.random_route(rng, lane, 3))
        color = options.get("color") or COLORS[int(rng.integers(len(COLORS)))]
        ego_s = float(rng.uniform(1.0, 4.0))
        lead = VehicleSpec(route, ego_s + float(rng.uniform(12.0, 18.0)), float(rng.uniform(5.0, 6.5)), color)
        text = self._phrase(rng, color=color)
        from .world import CAR_LENGTH

        goal = route.length - 1.0 - CAR_LENGTH - 12.0  # the lead parks at the end; stop within 12 m behind it
        return Scenario(route, ego_s, lead.speed * 0.8, [lead], text, goal, target=0, info={"color": color})

    def _stop_behind(self, rng, net, options) -> Scenario:
        while True:
            lane = int(rng.integers(len(net.lanes)))
            if "straight" in net.successors(lane):
                break
        nxt = net.successors(lane)["straight"]
        route = net.route_path([lane, nxt])
        color = options.get("color") or COLORS[int(rng.integers(len(COLORS)))]
        others = [c for c in COLORS if c != color]
        rng.shuffle(others)
        from .world import CAR_LENGTH

        ego_s = float(rng.uniform(1.0, 5.0))
        red_s = ego_s + float(rng.uniform(25.0, 45.0))
        vehicles = [VehicleSpec(route, red_s, 0.0, color)]
        # distractors of other colours parked in other lanes (the opposite lane, the next lane's neighbours)
        opposite = [ln for ln in net.lanes if ln.start_node == net.lanes[lane].end_node
                    and ln.end_node == net.lanes[lane].start_node]
        spots = [ln.id for ln in opposite] + [int(rng.integers(len(net.lanes))) for _ in range(3)]
        for k, lid in enumerate(spots[:2]):
            if lid in (lane, nxt):
                continue
            p = net.route_path([lid])
            vehicles.append(VehicleSpec(p, float(rng.uniform(6.0, p.length - 6.0)), 0.0, others[k]))
        text = self._phrase(rng, color=color)
        goal = red_s - CAR_LENGTH - 8.0  # route complete once within 8 m of its back
        return Scenario(route, ego_s, float(rng.uniform(4.0, 7.0)), vehicles, text, goal, target=0,
                        stop_gap=(1.0, 8.0), info={"color": color})

    def _add_traffic(self, rng: np.random.Generator, net: RoadNetwork, sc: Scenario, n: int) -> None:
        """Moving cars on random routes, started away from the ego and from each other."""
        ego_xy = sc.route.at(sc.ego_s)
        used = [c.color for c in sc.vehicles]
        taken = [v.path.at(v.s) for v in sc.vehicles] + [ego_xy]
        tries = 0
        while n > 0 and tries < 200:
            tries += 1
            lane = int(rng.integers(len(net.lanes)))
            path = net.route_path(net.random_route(rng, lane, 4))
            s = float(rng.uniform(0.0, 15.0))
            xy = path.at(s)
            if any(np.linalg.norm(xy - q) < 14.0 for q in taken):
                continue
            # a moving car never starts on the ego's own lane right behind it (it would push the ego)
            sp, lat = sc.route.project(xy)
            if abs(lat) < 2.0 and sp < sc.ego_s + 40 and sp > sc.ego_s - 40:
                continue
            pool = [c for c in COLORS if c not in used] or list(COLORS)
            color = pool[int(rng.integers(len(pool)))]
            sc.vehicles.append(VehicleSpec(path, s, float(rng.uniform(4.5, 6.5)), color))
            taken.append(xy)
            n -= 1


TURN_PHRASES = ("take the next {turn}", "turn {turn} at the next junction", "at the junction, go {turn}",
                "go straight through the next junction", "continue straight at the junction")

DRIVING_TASKS = (
    DrivingTask("driving/turn", "turn",
                "Town driving: take the named exit at the next junction (left, right, straight) among traffic",
                TURN_PHRASES, max_episode_steps=200),
    DrivingTask("driving/follow", "follow",
                "Town driving: follow the named car through its turns and stop behind it where it parks",
                ("follow the {color} car ahead", "follow the {color} car", "stay behind the {color} car"),
                max_episode_steps=320),
    DrivingTask("driving/stop-behind", "stop-behind",
                "Town driving: stop 1-8 m behind the named parked car (other colours parked elsewhere)",
                ("stop behind the {color} car", "pull up behind the {color} car", "park behind the {color} car"),
                max_episode_steps=150, n_traffic=2),
    DrivingTask("driving/queue", "queue",
                "Town driving: take the named exit behind a slower named car and stop behind it where it parks",
                TURN_PHRASES, max_episode_steps=300, n_traffic=2),
    DrivingTask("driving/queue-fog", "queue",
                "Town driving in fog (the camera sees ~12 m): take the named exit behind a slower named car and "
                "stop behind it where it parks",
                TURN_PHRASES, max_episode_steps=300, n_traffic=2, visibility=12.0),
    DrivingTask("driving/convoy-fog", "convoy",
                "Town driving in fog (the camera sees ~8 m): keep behind a named car that brakes hard without "
                "warning, straight through a junction, and stop behind it where it parks",
                ("keep behind the {color} car", "follow the {color} car ahead", "stay behind the {color} car"),
                max_episode_steps=260, n_traffic=0, visibility=8.0),
)

SPEED = SPEED_LIMIT
