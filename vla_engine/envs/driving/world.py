"""The MuJoCo side of the driving world: the scene (roads, markings, buildings, cones, vehicles) and the ego's
sensors (front camera, bird's-eye camera, lidar ray ring).

Every vehicle is a mocap body (no dynamics in MuJoCo: the ego is a kinematic bicycle and the others follow
their lanes, both integrated in numpy by ``env.py``); MuJoCo places the bodies, renders the cameras (shadows
off, as the tabletop suite) and casts the lidar rays with ``mj_multiRay``. Vehicle slots that a scenario does
not use sit far below the ground.
"""

from __future__ import annotations

import numpy as np

from .roads import JUNCTION_HALF, LANE_WIDTH, ROAD_HALF, RoadNetwork

CAR_LENGTH, CAR_WIDTH, CAR_HEIGHT = 4.5, 1.9, 1.5
CAR_COLORS = {"red": (0.85, 0.1, 0.1), "blue": (0.1, 0.25, 0.85), "green": (0.1, 0.65, 0.2),
              "yellow": (0.9, 0.8, 0.1), "white": (0.92, 0.92, 0.92), "black": (0.12, 0.12, 0.12)}
EGO_COLOR = (0.55, 0.55, 0.6)
LIDAR_HEIGHT = 1.9  # sensor height above the ground (m)
LIDAR_RANGE = 50.0
FOG_RGBA = (0.72, 0.73, 0.76, 1.0)
HIDDEN_Z = -50.0


def lidar_directions(n_azimuth: int = 64, n_elevation: int = 16, fov_up: float = 5.0,
                     fov_down: float = -20.0) -> np.ndarray:
    """Unit ray directions in the sensor frame (x forward, y left, z up): (n_azimuth * n_elevation, 3)."""
    az = np.linspace(-np.pi, np.pi, n_azimuth, endpoint=False)
    el = np.deg2rad(np.linspace(fov_down, fov_up, n_elevation))
    a, e = np.meshgrid(az, el, indexing="ij")
    return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1).reshape(-1, 3)


def _box(name: str, pos, size, rgba, group: int = 0, extra: str = "") -> str:
    p = " ".join(f"{v:.3f}" for v in pos)
    s = " ".join(f"{v:.3f}" for v in size)
    c = " ".join(f"{v:.3f}" for v in rgba)
    return f'<geom name="{name}" type="box" pos="{p}" size="{s}" rgba="{c}" group="{group}" {extra}/>'


def build_scene_xml(net: RoadNetwork, n_vehicles: int, cones: list[tuple[float, float]],
                    image_size: int = 96) -> str:
    """The MJCF of a town ``net`` with ``n_vehicles`` vehicle slots and traffic cones at ``cones`` (x, y)."""
    lo, hi = net.extent
    mid, half = (lo + hi) / 2, (hi - lo) / 2 + 20
    # the plane's third size is its render grid spacing: MuJoCo draws a plane as a grid of quads, and a fine
    # grid (0.1 m: ~40k quads) was ~80% of a CPU (llvmpipe) camera frame; 10 m squares look the same unlit-flat
    geoms = [f'<geom name="ground" type="plane" pos="{mid} {mid} 0" size="{half} {half} 10" rgba="0.35 0.45 0.3 1"/>']
    for i, (a, b) in enumerate(net.roads):
        c, d = (a + b) / 2, b - a
        length = np.linalg.norm(d) / 2
        yaw = np.arctan2(d[1], d[0])
        rot = f'euler="0 0 {yaw:.4f}"'
        geoms.append(_box(f"road{i}", (*c, 0.005), (length, ROAD_HALF, 0.005), (0.22, 0.22, 0.24, 1), extra=rot))
        inner = length - JUNCTION_HALF  # centre line and edge lines stop at the junctions
        geoms.append(_box(f"centre{i}", (*c, 0.012), (inner, 0.08, 0.002), (0.95, 0.8, 0.1, 1), extra=rot))
        for side in (-1, 1):
            off = np.array([-np.sin(yaw), np.cos(yaw)]) * side * (ROAD_HALF - 0.15)
            geoms.append(_box(f"edge{i}_{side}", (*(c + off), 0.012), (inner, 0.07, 0.002), (0.95, 0.95, 0.95, 1),
                              extra=rot))
    for k, p in enumerate(net.nodes.values()):
        geoms.append(_box(f"junction{k}", (*p, 0.006), (JUNCTION_HALF, JUNCTION_HALF, 0.006), (0.25, 0.25, 0.27, 1)))
    # buildings: one block of houses inside each square of roads
    b = net.block
    for i in range(net.grid - 1):
        for j in range(net.grid - 1):
            c = ((i + 0.5) * b, (j + 0.5) * b)
            s = b / 2 - ROAD_HALF - 6.0
            h = 4.0 + 3.0 * ((i * 7 + j * 3) % 4)
            shade = 0.55 + 0.1 * ((i + j) % 3)
            geoms.append(_box(f"building{i}_{j}", (*c, h / 2), (s, s, h / 2), (shade, shade * 0.85, shade * 0.7, 1)))
    for k, (x, y) in enumerate(cones):
        geoms.append(f'<geom name="cone{k}" type="cylinder" pos="{x:.3f} {y:.3f} 0.4" size="0.25 0.4" '
                     f'rgba="1 0.45 0 1"/>')
    bodies = []
    ego = [
        _box("ego_body", (0, 0, 0.55), (CAR_LENGTH / 2, CAR_WIDTH / 2, 0.45), (*EGO_COLOR, 1)),
        _box("ego_cabin", (-0.3, 0, 1.2), (1.2, CAR_WIDTH / 2 - 0.1, 0.3), (0.2, 0.25, 0.3, 1)),
        '<camera name="front" pos="1.0 0 1.55" xyaxes="0 -1 0 0.139 0 0.990" fovy="75"/>',
        '<camera name="bev" pos="12 0 45" xyaxes="0 -1 0 1 0 0" fovy="60"/>',
        f'<site name="lidar" pos="0 0 {LIDAR_HEIGHT}" size="0.1"/>',
    ]
    bodies.append(f'<body name="ego" mocap="true" pos="0 0 0">{"".join(ego)}</body>')
    for v in range(n_vehicles):
        parts = [
            _box(f"car{v}_body", (0, 0, 0.55), (CAR_LENGTH / 2, CAR_WIDTH / 2, 0.45), (0.5, 0.5, 0.5, 1)),
            _box(f"car{v}_cabin", (-0.3, 0, 1.2), (1.2, CAR_WIDTH / 2 - 0.1, 0.3), (0.15, 0.18, 0.22, 1)),
        ]
        bodies.append(f'<body name="car{v}" mocap="true" pos="0 0 {HIDDEN_Z}">{"".join(parts)}</body>')
    # quality: no shadows; cylinders (cones) with 8 slices and box faces as one quad each (fewer triangles for
    # the CPU rasteriser; the 36 cones and ~100 boxes were the rest of the frame's cost)
    return f"""<mujoco model="driving-town">
  <visual>
    <global offwidth="{max(image_size, 256)}" offheight="{max(image_size, 256)}"/>
    <quality shadowsize="0" numslices="8" numstacks="2" numquads="1"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5"/>
  </visual>
  <worldbody>
    <light name="sun" pos="0 0 80" dir="0.3 0.3 -1" directional="true" castshadow="false" diffuse="0.5 0.5 0.5"/>
    {"".join(geoms)}
    {"".join(bodies)}
  </worldbody>
</mujoco>"""


class World:
    """A compiled town: place vehicles, render cameras, cast lidar rays."""

    def __init__(self, net: RoadNetwork, n_vehicles: int, cones: list[tuple[float, float]], image_size: int = 96,
                 lidar_shape: tuple[int, int] = (64, 16), visibility: float | None = None):
        import mujoco

        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_string(build_scene_xml(net, n_vehicles, cones, image_size))
        self.data = mujoco.MjData(self.model)
        self.image_size = int(image_size)
        self.n_vehicles = int(n_vehicles)
        self.ego_mocap = int(self.model.body("ego").mocapid[0])
        self.ego_body = int(self.model.body("ego").id)
        self.car_mocap = [int(self.model.body(f"car{v}").mocapid[0]) for v in range(n_vehicles)]
        self.car_geoms = [int(self.model.geom(f"car{v}_body").id) for v in range(n_vehicles)]
        self.lidar_dirs = lidar_directions(*lidar_shape)  # (R, 3)
        self._geomid = np.zeros(len(self.lidar_dirs), dtype=np.int32)
        self._dist = np.zeros(len(self.lidar_dirs), dtype=np.float64)
        # lidar intensity: a per-material reflectivity read off each geom's colour brightness
        self.reflectivity = self.model.geom_rgba[:, :3].mean(axis=1).astype(np.float32)  # (G,)
        self._renderers: dict[int, object] = {}
        # MuJoCo's clipping planes are in units of the model's extent (~150 m for the town): a near plane of
        # 0.1 m and a far one of 300 m, in metres (znear 0.05 in the XML once clipped everything within 7.5 m)
        ext = float(self.model.stat.extent)
        self.model.vis.map.znear, self.model.vis.map.zfar = 0.1 / ext, 300.0 / ext
        # fog on the front camera: linear from a third of the visibility to opaque at it. MuJoCo copies these
        # (in units of the extent) into each GL context when it is made, so they are set before any renderer
        # exists; the bird's-eye camera renders without fog (the scene flag, per render)
        self.visibility = None if visibility is None else float(visibility)
        if self.visibility is not None:
            self.model.vis.map.fogstart = self.visibility / 3.0 / ext
            self.model.vis.map.fogend = self.visibility / ext
            self.model.vis.rgba.fog[:] = FOG_RGBA

    def set_colors(self, colors: list[tuple[float, float, float]]) -> None:
        for g, c in zip(self.car_geoms, colors):
            self.model.geom_rgba[g, :3] = c
            self.reflectivity[g] = float(np.mean(c))

    def place(self, ego: np.ndarray, cars: list[np.ndarray | None]) -> None:
        """Poses (x, y, yaw) of the ego and each vehicle slot (None: hidden); updates the kinematics."""
        self._set(self.ego_mocap, ego, 0.0)
        for m, pose in zip(self.car_mocap, cars):
            self._set(m, pose if pose is not None else np.array([0.0, 0.0, 0.0]), 0.0 if pose is not None else HIDDEN_Z)
        self._mj.mj_kinematics(self.model, self.data)
        self._mj.mj_camlight(self.model, self.data)

    def _set(self, mocap: int, pose: np.ndarray, z: float) -> None:
        self.data.mocap_pos[mocap] = (pose[0], pose[1], z)
        half = pose[2] / 2
        self.data.mocap_quat[mocap] = (np.cos(half), 0.0, 0.0, np.sin(half))

    def render(self, camera: str = "front", size: int | None = None) -> np.ndarray:
        """(S, S, 3) uint8 from ``camera`` ("front" or "bev")."""
        s = int(size or self.image_size)
        r = self._renderers.get(s)
        if r is None:
            from ..render import open_renderer

            r = self._renderers[s] = open_renderer(self.model, s)
        r.update_scene(self.data, camera=camera)
        r.scene.flags[self._mj.mjtRndFlag.mjRND_FOG] = self.visibility is not None and camera == "front"
        return r.render()

    def lidar(self, ego: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points (R, 4) = (x, y, z, intensity) in the ego frame (z from the ground) and hits (R,) bool."""
        c, s = np.cos(ego[2]), np.sin(ego[2])
        d = self.lidar_dirs
        world_dirs = np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=-1)
        origin = np.array([ego[0], ego[1], LIDAR_HEIGHT])
        self._mj.mj_multiRay(self.model, self.data, origin, world_dirs.reshape(-1), None, 1, self.ego_body,
                             self._geomid, self._dist, None, len(d), LIDAR_RANGE)
        hit = (self._dist >= 0) & (self._geomid >= 0)
        r = np.where(hit, self._dist, 0.0)[:, None]
        pts = np.zeros((len(d), 4), dtype=np.float32)
        pts[:, :3] = d * r
        pts[:, 2] += LIDAR_HEIGHT
        pts[:, 3] = np.where(hit, self.reflectivity[np.maximum(self._geomid, 0)], 0.0)
        pts[~hit] = 0.0
        return pts, hit

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()


LANE_HALF = LANE_WIDTH / 2
