"""The road network of the driving world: a grid town of two-lane roads, junctions and turns (pure numpy).

Junction centres sit on a ``grid x grid`` lattice ``block`` metres apart. Every road between two neighbouring
junctions carries one lane each way (right-hand traffic, lanes ``LANE_WIDTH`` wide). A *lane* is a dense
polyline (points every ``STEP`` metres) from just after one junction to just before the next; a *connector*
joins a lane ending at a junction to a lane leaving it (left, right or straight), a quadratic Bezier curve
through the junction. A *route* is a list of lanes and connectors; its path is their concatenated polylines.

    >>> net = RoadNetwork(grid=3, block=40.0)
    >>> lane = net.lanes[0]
    >>> nxt = net.successors(lane.id)        # {"left": lane id, "straight": ..., "right": ...}
    >>> path = net.route_path([lane.id, nxt["left"]])   # Path: points (N, 2), headings, arc length
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LANE_WIDTH = 3.5  # metres per lane
ROAD_HALF = LANE_WIDTH  # a road is two lanes: half-width = one lane
JUNCTION_HALF = 6.0  # lanes stop this far from a junction centre
STEP = 0.5  # polyline spacing (m)
SPEED_LIMIT = 8.0  # m/s on straight lanes


@dataclass
class Lane:
    id: int
    start_node: tuple[int, int]
    end_node: tuple[int, int]
    direction: np.ndarray  # (2,) unit travel direction
    points: np.ndarray  # (N, 2)


@dataclass
class Path:
    """A polyline with arc length and headings; positions along it by arc length ``s``."""

    points: np.ndarray  # (N, 2)
    s: np.ndarray = field(init=False)  # (N,) cumulative arc length
    heading: np.ndarray = field(init=False)  # (N,) travel direction (rad)
    curvature: np.ndarray = field(init=False)  # (N,) |d heading / ds|

    def __post_init__(self) -> None:
        p = np.asarray(self.points, dtype=np.float64)
        keep = np.r_[True, np.linalg.norm(np.diff(p, axis=0), axis=1) > 1e-6]
        self.points = p[keep]
        seg = np.diff(self.points, axis=0)  # (N-1, 2)
        self.s = np.r_[0.0, np.cumsum(np.linalg.norm(seg, axis=1))]
        h = np.arctan2(seg[:, 1], seg[:, 0])
        self.heading = np.r_[h, h[-1:]]
        dh = np.abs(np.angle(np.exp(1j * np.diff(self.heading))))
        ds = np.maximum(np.diff(self.s), 1e-6)
        k = np.r_[dh / ds, 0.0]
        self.curvature = np.convolve(k, np.ones(5) / 5, mode="same")  # smoothed

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def at(self, s: float | np.ndarray) -> np.ndarray:
        """Position(s) at arc length ``s`` (clipped to the path): (2,) or (K, 2)."""
        s = np.clip(s, 0.0, self.length)
        return np.stack([np.interp(s, self.s, self.points[:, 0]), np.interp(s, self.s, self.points[:, 1])], axis=-1)

    def heading_at(self, s: float) -> float:
        i = int(np.clip(np.searchsorted(self.s, s), 0, len(self.s) - 1))
        return float(self.heading[i])

    def project(self, xy: np.ndarray, s_hint: float | None = None, window: float = 15.0) -> tuple[float, float]:
        """(arc length of the closest point, signed lateral offset (left +)) of ``xy``; with ``s_hint`` the
        search stays within ``window`` metres of it (so a path that loops back is not confused)."""
        lo, hi = 0, len(self.points)
        if s_hint is not None:
            lo = int(np.searchsorted(self.s, s_hint - window))
            hi = int(np.searchsorted(self.s, s_hint + window)) + 1
        a = self.points[lo:max(hi - 1, lo + 1)]
        b = self.points[lo + 1:max(hi, lo + 2)]
        if len(b) == 0:
            return float(self.s[-1]), 0.0
        a = a[: len(b)]
        ab = b - a
        t = np.clip(np.einsum("ij,ij->i", xy - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12), 0, 1)
        proj = a + t[:, None] * ab
        d = np.linalg.norm(proj - xy, axis=1)
        i = int(np.argmin(d))
        s = float(self.s[lo + i] + t[i] * np.linalg.norm(ab[i]))
        cross = ab[i, 0] * (xy[1] - a[i, 1]) - ab[i, 1] * (xy[0] - a[i, 0])
        return s, float(np.sign(cross) * d[i])


def _bezier(p0: np.ndarray, c: np.ndarray, p1: np.ndarray, step: float = STEP) -> np.ndarray:
    n = max(int(np.ceil((np.linalg.norm(c - p0) + np.linalg.norm(p1 - c)) / step)), 2)
    t = np.linspace(0.0, 1.0, n + 1)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t ** 2 * p1  # (n+1, 2)


def _turn_of(d_in: np.ndarray, d_out: np.ndarray) -> str | None:
    cross = d_in[0] * d_out[1] - d_in[1] * d_out[0]
    dot = float(d_in @ d_out)
    if dot > 0.5:
        return "straight"
    if dot < -0.5:
        return None  # no U-turns
    return "left" if cross > 0 else "right"


class RoadNetwork:
    """A ``grid x grid`` town; ``lanes``, ``connectors`` and the route helpers (see the module docstring)."""

    def __init__(self, grid: int = 3, block: float = 40.0):
        if grid < 2:
            raise ValueError(f"RoadNetwork grid must be >= 2 junctions per side; got {grid}")
        self.grid, self.block = int(grid), float(block)
        self.nodes = {(i, j): np.array([i * block, j * block]) for i in range(grid) for j in range(grid)}
        self.lanes: list[Lane] = []
        self.roads: list[tuple[np.ndarray, np.ndarray]] = []  # (centre start, centre end) of every road
        for (i, j), p in self.nodes.items():
            for di, dj in ((1, 0), (0, 1)):
                q = (i + di, j + dj)
                if q in self.nodes:
                    self.roads.append((p, self.nodes[q]))
                    self._add_lane((i, j), q)
                    self._add_lane(q, (i, j))
        self.connectors: dict[tuple[int, int], np.ndarray] = {}  # (lane in, lane out) -> points
        self._succ: dict[int, dict[str, int]] = {}
        by_start: dict[tuple[int, int], list[Lane]] = {}
        for lane in self.lanes:
            by_start.setdefault(lane.start_node, []).append(lane)
        for lane in self.lanes:
            succ = {}
            for out in by_start.get(lane.end_node, []):
                turn = _turn_of(lane.direction, out.direction)
                if turn is None:
                    continue
                p0, p1 = lane.points[-1], out.points[0]
                if turn == "straight":
                    pts = _bezier(p0, (p0 + p1) / 2, p1)
                else:  # control point: where the two lane lines cross
                    c = p0 + lane.direction * float(lane.direction @ (p1 - p0))
                    pts = _bezier(p0, c, p1)
                self.connectors[(lane.id, out.id)] = pts
                succ[turn] = out.id
            self._succ[lane.id] = succ

    def _add_lane(self, a: tuple[int, int], b: tuple[int, int]) -> None:
        pa, pb = self.nodes[a], self.nodes[b]
        d = (pb - pa) / np.linalg.norm(pb - pa)
        right = np.array([d[1], -d[0]])
        start = pa + d * JUNCTION_HALF + right * LANE_WIDTH / 2
        end = pb - d * JUNCTION_HALF + right * LANE_WIDTH / 2
        n = max(int(np.ceil(np.linalg.norm(end - start) / STEP)), 2)
        pts = start + np.linspace(0, 1, n + 1)[:, None] * (end - start)
        self.lanes.append(Lane(len(self.lanes), a, b, d, pts))

    # -- routes ----------------------------------------------------------------------------------
    def successors(self, lane_id: int) -> dict[str, int]:
        """Turn name ("left", "straight", "right") -> the lane it leads to, at the lane's end junction."""
        return dict(self._succ[lane_id])

    def random_route(self, rng: np.random.Generator, start_lane: int, n_lanes: int = 4) -> list[int]:
        route = [start_lane]
        for _ in range(n_lanes - 1):
            succ = self.successors(route[-1])
            if not succ:
                break
            route.append(succ[sorted(succ)[int(rng.integers(len(succ)))]])
        return route

    def route_path(self, lanes: list[int]) -> Path:
        """The path through ``lanes`` (consecutive lanes joined by their connectors)."""
        parts = [self.lanes[lanes[0]].points]
        for a, b in zip(lanes[:-1], lanes[1:]):
            if (a, b) not in self.connectors:
                raise ValueError(f"lane {b} does not follow lane {a}; build routes with successors()")
            parts += [self.connectors[(a, b)][1:], self.lanes[b].points[1:]]
        return Path(np.concatenate(parts))

    def on_road(self, xy: np.ndarray, margin: float = 0.0) -> bool:
        """Whether ``xy`` lies on a road or a junction (``margin`` metres of slack)."""
        half = ROAD_HALF + margin
        for p in self.nodes.values():  # junction squares
            if np.all(np.abs(xy - p) <= JUNCTION_HALF + margin):
                return True
        for a, b in self.roads:
            d = b - a
            length = np.linalg.norm(d)
            u = d / length
            rel = xy - a
            along = float(rel @ u)
            if -half <= along <= length + half and abs(u[0] * rel[1] - u[1] * rel[0]) <= half:
                return True
        return False

    @property
    def extent(self) -> tuple[float, float]:
        return -self.block * 0.5, (self.grid - 1) * self.block + self.block * 0.5
