"""KITTI raw drives in their own layout: one item per frame (10 Hz) of each synced drive.

    <root>/<date>/calib_velo_to_cam.txt
    <root>/<date>/<date>_drive_<NNNN>_sync/image_02/data/0000000000.png      left colour camera
    <root>/<date>/<date>_drive_<NNNN>_sync/velodyne_points/data/0000000000.bin  float32 (M, 4): x, y, z, reflectance
    <root>/<date>/<date>_drive_<NNNN>_sync/oxts/data/0000000000.txt          30 GPS/IMU values per frame
    <root>/<date>/<date>_drive_<NNNN>_sync/oxts/timestamps.txt

    >>> ds = KittiRawDataset("/data/kitti_raw", prediction_horizon=6)

The ego frame is the Velodyne's (x forward, y left, z up; the points as recorded). Poses come from oxts
(lat/lon through the Mercator projection of the KITTI devkit, yaw), the IMU from oxts' accelerations and angular
rates (af, al, au, wf, wl, wu), and waypoints every ``waypoint_step`` frames (0.5 s at 10 Hz). KITTI has no radar:
its radar mask is all zeros.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..lerobot_io import DatasetError
from .common import command_of, image_tensor, motion_labels, pad_rows

EARTH_RADIUS = 6378137.0


def read_oxts(path: Path) -> np.ndarray:
    """One oxts file -> (30,) float64 (lat, lon, alt, roll, pitch, yaw, vn, ve, vf, vl, vu, ax, ay, az, af, al,
    au, wx, wy, wz, wf, wl, wu, ...)."""
    vals = np.array(path.read_text().split(), dtype=np.float64)
    if len(vals) < 23:
        raise DatasetError(f"{path} has {len(vals)} oxts values, expected 30; the file is truncated")
    return vals


def oxts_poses(oxts: np.ndarray) -> np.ndarray:
    """(T, 30) oxts -> (T, 3) x, y (metres, Mercator scaled at the first latitude), yaw."""
    scale = np.cos(oxts[0, 0] * np.pi / 180.0)
    x = scale * EARTH_RADIUS * oxts[:, 1] * np.pi / 180.0
    y = scale * EARTH_RADIUS * np.log(np.tan((90.0 + oxts[:, 0]) * np.pi / 360.0))
    return np.stack([x - x[0], y - y[0], oxts[:, 5]], axis=1)


def read_timestamps(path: Path) -> np.ndarray:
    """KITTI ``timestamps.txt`` ("YYYY-MM-DD hh:mm:ss.nnnnnnnnn" per line, nanoseconds) -> seconds from the first."""
    out = []
    for line in path.read_text().split("\n"):
        if not line.strip():
            continue
        day, _, frac = line.strip().partition(".")
        t = _dt.datetime.strptime(day, "%Y-%m-%d %H:%M:%S").timestamp() + float("0." + (frac or "0"))
        out.append(t)
    t = np.array(out)
    return t - t[0]


def read_calib(path: Path) -> dict[str, np.ndarray]:
    """A KITTI calib file ("KEY: v1 v2 ...") -> {key: array}."""
    out = {}
    for line in path.read_text().splitlines():
        key, sep, rest = line.partition(":")
        if sep and key != "calib_time":
            out[key.strip()] = np.array(rest.split(), dtype=np.float64)
    return out


class KittiRawDataset(torch.utils.data.Dataset):
    """Frames of KITTI raw synced drives under ``root`` (see the module docstring)."""

    action_dim, state_dim = 3, 2  # state: speed, yaw rate (as the driving env's agent_pos)

    def __init__(self, root: str | os.PathLike, drives: list[str] | None = None, prediction_horizon: int = 6,
                 waypoint_step: int = 5, image_size: int = 96, max_points: int = 4096, use_lidar: bool = True):
        self.root = Path(root)
        found = sorted(p for p in self.root.glob("*/*_sync") if (p / "oxts" / "data").is_dir())
        if drives is not None:
            found = [p for p in found if p.name in drives]
        if not found:
            raise DatasetError(f"no KITTI raw drives under {self.root} (expected <date>/<date>_drive_NNNN_sync/ with "
                               f"oxts/, velodyne_points/, image_02/); give the folder holding the date folders")
        self.horizon, self.step = int(prediction_horizon), int(waypoint_step)
        self.image_size, self.max_points, self.use_lidar = int(image_size), int(max_points), bool(use_lidar)
        self.frames: list[tuple[Path, str, dict, int]] = []
        self.calib: dict[str, dict[str, np.ndarray]] = {}
        for drive in found:
            calib = drive.parent / "calib_velo_to_cam.txt"
            if calib.exists():
                self.calib[drive.name] = read_calib(calib)
            names = sorted(p.stem for p in (drive / "oxts" / "data").glob("*.txt"))
            oxts = np.stack([read_oxts(drive / "oxts" / "data" / f"{n}.txt") for n in names])
            ts = drive / "oxts" / "timestamps.txt"
            times = read_timestamps(ts) if ts.exists() else np.arange(len(names)) * 0.1
            poses = oxts_poses(oxts)
            labels = motion_labels(poses, times, self.horizon * self.step)
            labels["waypoints"] = labels["waypoints"][:, self.step - 1 :: self.step]  # every step-th future frame
            labels.update(poses=poses.astype(np.float32), oxts=oxts)
            self.frames += [(drive, n, labels, k) for k, n in enumerate(names)]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from PIL import Image

        drive, name, labels, k = self.frames[i]
        img_path = drive / "image_02" / "data" / f"{name}.png"
        if not img_path.exists():
            raise DatasetError(f"{img_path} is missing; the drive's image_02 folder is incomplete")
        pts = np.zeros((0, 4), np.float32)
        if self.use_lidar:
            velo = drive / "velodyne_points" / "data" / f"{name}.bin"
            pts = np.fromfile(velo, dtype=np.float32).reshape(-1, 4)  # x, y, z, reflectance
        lidar, lmask = pad_rows(pts, self.max_points, np.random.default_rng(i))
        ox = labels["oxts"][k]
        imu = np.array([[ox[14], ox[15], ox[16], ox[20], ox[21], ox[22]]], np.float32)  # af al au wf wl wu
        wps = labels["waypoints"][k]
        return {
            "observation.images.front": image_tensor(Image.open(img_path), self.image_size),
            "observation.state": torch.tensor([labels["speed"][k], labels["yaw_rate"][k]], dtype=torch.float32),
            "observation.lidar": torch.from_numpy(lidar), "observation.lidar_mask": torch.from_numpy(lmask),
            "observation.radar": torch.zeros(16, 4), "observation.radar_mask": torch.zeros(16),
            "observation.imu": torch.from_numpy(imu), "observation.imu_mask": torch.ones(1),
            "observation.pose": torch.from_numpy(labels["poses"][k]),
            "action": torch.from_numpy(labels["controls"][k : k + 1]), "action_is_pad": torch.zeros(1, dtype=torch.bool),
            "action.waypoints": torch.from_numpy(np.ascontiguousarray(wps)),
            "task": command_of(wps), "frame": f"{drive.name}/{name}"}
