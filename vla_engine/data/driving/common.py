"""What the driving dataset readers share: the item layout, controls and commands derived from ego poses,
padding of point clouds and radar targets, and the dataloader.

Every reader (nuScenes, KITTI raw, and the driving world's own LeRobot datasets) yields items with the keys
the multi-sensor model reads (``MultiSensorVLA``)::

    observation.images.front  float32 (3, S, S) in [0, 1]    the front camera
    observation.state         float32 (2,)   speed (m/s), yaw rate (rad/s) (no previous controls: copycat BC)
    observation.lidar         float32 (N, 4) x, y, z, intensity in the ego frame (x forward, y left), zero-padded
    observation.lidar_mask    float32 (N,)   1 = a real point
    observation.radar         float32 (K, 4) range, azimuth, radial velocity (ego-motion compensated), rcs
    observation.radar_mask    float32 (K,)
    observation.imu           float32 (T, 6) accelerometer + gyro (zeros with an all-zero mask when absent)
    observation.imu_mask      float32 (T,)
    observation.pose          float32 (3,)   ego x, y, yaw in the log's world frame
    action                    float32 (1, 3) controls derived from the ego motion (below)
    action_is_pad             bool (1,)
    action.waypoints          float32 (H, 2) the next H ego positions in the current ego frame (metres)
    task                      str            a driving command derived from the route ahead ("turn left at ...")

Recorded logs hold no steering or pedal values, so ``action`` is what the driving world's kinematic bicycle
would need to follow the logged motion: steer = atan(yaw rate x wheelbase / speed) / max steer, throttle or
brake = the longitudinal acceleration over the world's full-throttle / full-brake acceleration.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ...envs.driving.labels import to_ego_frame

WHEELBASE, MAX_STEER, MAX_ACCEL, MAX_BRAKE = 2.7, 0.6, 3.0, 7.0  # the driving world's ego (envs/driving/env.py)


def yaw_of_quaternion(q: Sequence[float]) -> float:
    """Yaw (rad) of a (w, x, y, z) quaternion."""
    w, x, y, z = (float(v) for v in q)
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def motion_labels(poses: np.ndarray, times: np.ndarray, horizon: int) -> dict[str, np.ndarray]:
    """From ego poses (T, 3) at ``times`` (T,) seconds: speed, yaw rate, derived controls (T, 3), the
    ``horizon`` next positions in each ego frame (T, H, 2) and a driving command per frame."""
    poses, times = np.asarray(poses, dtype=np.float64), np.asarray(times, dtype=np.float64)
    t = len(poses)
    nxt = np.minimum(np.arange(t) + 1, t - 1)
    prv = np.maximum(np.arange(t) - 1, 0)
    dt = np.maximum(times[nxt] - times[prv], 1e-3)
    speed = np.linalg.norm(poses[nxt, :2] - poses[prv, :2], axis=1) / dt  # (T,)
    dyaw = np.angle(np.exp(1j * (poses[nxt, 2] - poses[prv, 2])))
    yaw_rate = dyaw / dt
    accel = np.gradient(speed, times) if t > 1 else np.zeros(t)
    steer = np.clip(np.arctan(yaw_rate * WHEELBASE / np.maximum(speed, 0.5)) / MAX_STEER, -1, 1)
    controls = np.stack([steer, np.clip(accel / MAX_ACCEL, 0, 1), np.clip(-accel / MAX_BRAKE, 0, 1)], axis=1)
    idx = np.minimum(np.arange(t)[:, None] + np.arange(1, horizon + 1)[None, :], t - 1)  # (T, H)
    wps = np.stack([to_ego_frame(poses[idx[i], :2], poses[i]) for i in range(t)]).astype(np.float32)
    commands = [command_of(w) for w in wps]
    return {"speed": speed, "yaw_rate": yaw_rate, "controls": controls.astype(np.float32), "waypoints": wps,
            "commands": commands}


def command_of(waypoints: np.ndarray, lateral: float = 2.0) -> str:
    """A driving command from the route ahead (H, 2): where its last point lies sideways."""
    y = float(waypoints[-1, 1]) if len(waypoints) else 0.0
    if y > lateral:
        return "turn left at the next junction"
    if y < -lateral:
        return "turn right at the next junction"
    return "go straight"


def pad_rows(rows: np.ndarray, n: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(M, C) -> (n, C) zero-padded and a mask (n,); more than ``n`` rows are subsampled (with ``rng``) or cut."""
    rows = np.asarray(rows, dtype=np.float32).reshape(-1, rows.shape[-1] if rows.ndim > 1 else 1)
    if len(rows) > n:
        keep = np.sort(rng.choice(len(rows), n, replace=False)) if rng is not None else np.arange(n)
        rows = rows[keep]
    out = np.zeros((n, rows.shape[1]), np.float32)
    mask = np.zeros(n, np.float32)
    out[: len(rows)] = rows
    mask[: len(rows)] = 1.0
    return out, mask


def radar_rows(xy: np.ndarray, v_xy: np.ndarray, rcs: np.ndarray) -> np.ndarray:
    """Radar points in the ego frame (M, 2), their compensated velocities (M, 2) and rcs (M,) -> target rows
    (M, 4) = (range, azimuth, radial velocity, rcs), nearest first."""
    r = np.linalg.norm(xy, axis=1)
    az = np.arctan2(xy[:, 1], xy[:, 0])
    radial = np.einsum("ij,ij->i", v_xy, xy / np.maximum(r, 1e-6)[:, None])
    rows = np.stack([r, az, radial, rcs], axis=1).astype(np.float32)
    return rows[np.argsort(r)]


def image_tensor(img: Any, size: int) -> torch.Tensor:
    """A PIL image or (H, W, 3) uint8 -> (3, size, size) float32 in [0, 1]."""
    from PIL import Image

    im = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img, dtype=np.uint8))
    arr = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def create_driving_dataloader(dataset: Any, batch_size: int = 16, shuffle: bool = True, num_workers: int = 0,
                              drop_last: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader of driving items (fixed-size padded clouds and targets stack as they are; ``task`` strings
    become a list)."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                                       drop_last=drop_last)
