"""Waypoint labels of a recorded driving episode, from its ego poses (pure numpy).

A driving policy can predict the ego's future positions instead of (or beside) its controls, as the
planning heads of nuScenes-trained models do: ``WAYPOINT_HORIZON`` points ``WAYPOINT_STEP`` frames apart
(0.5 s at 10 Hz, nuScenes' 2 Hz key-frame rate, so 6 points cover 3 s), each in the ego frame of the
current frame (x forward, y left, metres). Past the episode's end the ego stands at its last pose.

``datagen`` calls :func:`episode_labels` on every driving episode (the task's ``episode_labels`` meta);
the nuScenes and KITTI readers compute the same labels from their ego poses with :func:`waypoints_from_poses`.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

WAYPOINT_HORIZON = 6
WAYPOINT_STEP = 5  # frames between waypoints (0.5 s at 10 Hz)
WAYPOINT_KEY = "action.waypoints"
POSE_KEY = "observation.pose"


def to_ego_frame(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """World points (..., 2) -> the frame of ``pose`` (x, y, yaw): x forward, y left."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    d = np.asarray(points, dtype=np.float64) - pose[:2]
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def waypoints_from_poses(poses: np.ndarray, horizon: int = WAYPOINT_HORIZON, step: int = WAYPOINT_STEP
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Poses (T, 3) (x, y, yaw) -> waypoints (T, horizon, 2) in each frame's ego frame and a validity mask
    (T, horizon) (False where the waypoint lies past the last pose, which it then repeats)."""
    poses = np.asarray(poses, dtype=np.float64)
    t = len(poses)
    idx = np.arange(t)[:, None] + step * np.arange(1, horizon + 1)[None, :]  # (T, H)
    valid = idx < t
    future = poses[np.minimum(idx, t - 1), :2]  # (T, H, 2)
    out = np.stack([to_ego_frame(future[i], poses[i]) for i in range(t)]) if t else np.zeros((0, horizon, 2))
    return out.astype(np.float32), valid


def episode_labels(episode: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Extra per-frame labels of a recorded episode: ``action.waypoints`` (T, H, 2) from ``observation.pose``."""
    wp, _ = waypoints_from_poses(np.asarray(episode[POSE_KEY]))
    return {WAYPOINT_KEY: wp}
