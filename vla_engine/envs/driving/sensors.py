"""Sensor models of the ego that need no rendering: the radar target list and the IMU (pure numpy).

* radar: a front radar (``RADAR_FOV`` either side, ``RADAR_RANGE``) reports every vehicle and cone in view as
  (range, azimuth, radial velocity, rcs) with Gaussian noise, misses a target with probability
  ``RADAR_MISS`` and adds a clutter return with probability ``RADAR_CLUTTER``; at most ``RADAR_MAX_TARGETS``,
  nearest first, padded with zeros and a mask. Radar sees through vehicles (no occlusion), as a simple model.
* IMU: ``IMU_RATE`` samples per control step (a higher rate than the camera) of (accel x, accel y, accel z,
  gyro x, gyro y, gyro z) in the ego frame, from the bicycle model's sub-steps, with noise.
"""

from __future__ import annotations

import numpy as np

LIDAR_SHAPE = (64, 16)  # azimuth x elevation rays
RADAR_MAX_TARGETS = 16
RADAR_RANGE = 80.0
RADAR_FOV = np.deg2rad(60.0)
RADAR_MISS = 0.05
RADAR_CLUTTER = 0.1
RADAR_NOISE = (0.25, 0.01, 0.15, 1.0)  # std of range (m), azimuth (rad), radial velocity (m/s), rcs (dBsm)
IMU_RATE = 4
IMU_NOISE = (0.05, 0.005)  # std of accelerometer (m/s^2), gyro (rad/s)
GRAVITY = 9.81


def radar_targets(rng: np.random.Generator, ego: np.ndarray, ego_speed: float,
                  objects: list[tuple[np.ndarray, np.ndarray, float]]) -> tuple[np.ndarray, np.ndarray]:
    """``objects``: (position (2,), velocity (2,), rcs) in the world. Returns targets (K, 4) and mask (K,)."""
    c, s = np.cos(ego[2]), np.sin(ego[2])
    ego_vel = np.array([c, s]) * ego_speed
    rows = []
    for pos, vel, rcs in objects:
        rel = pos - ego[:2]
        r = float(np.hypot(*rel))
        az = float(np.angle(np.exp(1j * (np.arctan2(rel[1], rel[0]) - ego[2]))))
        if r < 0.5 or r > RADAR_RANGE or abs(az) > RADAR_FOV or rng.random() < RADAR_MISS:
            continue
        radial = float((vel - ego_vel) @ (rel / r))
        rows.append([r, az, radial, rcs])
    if rng.random() < RADAR_CLUTTER:  # a stationary clutter return (ground, guard rail)
        r, az = float(rng.uniform(5.0, RADAR_RANGE)), float(rng.uniform(-RADAR_FOV, RADAR_FOV))
        rows.append([r, az, -ego_speed * np.cos(az), -5.0])
    out = np.zeros((RADAR_MAX_TARGETS, 4), dtype=np.float32)
    mask = np.zeros(RADAR_MAX_TARGETS, dtype=np.int8)
    if rows:
        t = np.array(sorted(rows)[:RADAR_MAX_TARGETS], dtype=np.float64)
        t += rng.normal(0.0, 1.0, t.shape) * np.array(RADAR_NOISE)
        t[:, 0] = np.maximum(t[:, 0], 0.0)
        out[: len(t)] = t
        mask[: len(t)] = 1
    return out, mask


def imu_sample(rng: np.random.Generator, accel_long: float, speed: float, yaw_rate: float) -> np.ndarray:
    """One IMU reading (6,) in the ego frame: centripetal lateral accel = v * yaw rate, gravity on z."""
    a = np.array([accel_long, speed * yaw_rate, GRAVITY]) + rng.normal(0.0, IMU_NOISE[0], 3)
    g = np.array([0.0, 0.0, yaw_rate]) + rng.normal(0.0, IMU_NOISE[1], 3)
    return np.concatenate([a, g]).astype(np.float32)
