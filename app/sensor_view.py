"""Sensors beyond the camera in a dataset frame (the driving tasks): a bird's-eye view of the lidar point
cloud, the radar targets and the future waypoints, and the IMU traces of the episode.

The layout follows the dataset features the driving world writes (``task_info(t)["sensors"]``):
``observation.lidar`` (T, N, 4) points x, y, z, intensity in the ego frame with ``observation.lidar_mask``;
``observation.radar`` (T, K, 4) targets (range, azimuth, radial velocity, rcs) with ``observation.radar_mask``;
``observation.imu`` (T, R, 6) R samples per step of (accel x, y, z, gyro x, y, z); ``action.waypoints``
(T, H, 2) the next H ego positions in the ego frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from .plots import _LAYOUT, _TITLE, empty_figure, timeseries_figure

SENSOR_KEYS = ("observation.lidar", "observation.radar", "observation.imu")
IMU_NAMES = ["accel x", "accel y", "accel z", "gyro x", "gyro y", "gyro z"]


def has_sensors(data: dict) -> bool:
    return any(k in data for k in SENSOR_KEYS)


def _valid(data: dict, key: str, t: int) -> np.ndarray:
    arr = np.asarray(data[key][t], dtype=float)
    mask = data.get(f"{key}_mask")
    return arr[np.asarray(mask[t]) > 0.5] if mask is not None else arr


def bev_figure(data: dict, t: int) -> go.Figure:
    """Lidar points (coloured by height), radar targets (coloured by radial velocity) and waypoints at step t,
    seen from above in the ego frame (x forward, y left)."""
    if not has_sensors(data):
        return empty_figure("bird's-eye view", "no lidar or radar in this dataset")
    fig = go.Figure()
    if "observation.lidar" in data:
        pts = _valid(data, "observation.lidar", t)
        fig.add_trace(go.Scattergl(x=-pts[:, 1], y=pts[:, 0], mode="markers", name=f"lidar ({len(pts)} points)",
                                   marker=dict(size=3, color=pts[:, 2], colorscale="Viridis", opacity=0.7)))
    if "observation.radar" in data:
        tg = _valid(data, "observation.radar", t)
        rng, az, vr = tg[:, 0], tg[:, 1], tg[:, 2]
        fig.add_trace(go.Scatter(x=-rng * np.sin(az), y=rng * np.cos(az), mode="markers",
                                 name=f"radar ({len(tg)} targets)", text=[f"v_r {v:+.1f} m/s" for v in vr],
                                 marker=dict(size=10, symbol="diamond", color=vr, colorscale="RdBu", cmid=0,
                                             line=dict(width=1, color="black"))))
    if "action.waypoints" in data:
        wp = np.asarray(data["action.waypoints"][t], dtype=float)
        fig.add_trace(go.Scatter(x=-wp[:, 1], y=wp[:, 0], mode="lines+markers", name="future waypoints",
                                 line=dict(color="#d62728", width=3)))
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", name="ego", marker=dict(size=12, symbol="triangle-up",
                                                                                  color="black")))
    fig.update_layout(title=dict(text=f"bird's-eye view, step {t} (ego frame, forward is up)", **_TITLE),
                      xaxis_title="left ← m → right", yaxis_title="m ahead", **{**_LAYOUT, "height": 380})
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def imu_figure(data: dict, t: int, fps: float | None) -> go.Figure:
    """The episode's IMU traces (every sample, at the IMU's own rate) with a line at step t."""
    if "observation.imu" not in data:
        return empty_figure("IMU", "no IMU in this dataset")
    imu = np.asarray(data["observation.imu"], dtype=float)  # (T, R, 6)
    per_step = imu.shape[1]
    flat = imu.reshape(-1, imu.shape[-1])
    rate = fps * per_step if fps else None
    return timeseries_figure(flat, IMU_NAMES[:flat.shape[1]], f"IMU ({per_step} samples per step)",
                             t * per_step, rate)


def sensor_views(data: dict, t: int, fps: float | None) -> dict[str, Any]:
    return {"bev": bev_figure(data, t), "imu": imu_figure(data, t, fps), "visible": has_sensors(data)}
