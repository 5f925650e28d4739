"""nuScenes through nuscenes-devkit's own tables: one item per key-frame sample (2 Hz) of every scene.

    >>> ds = NuScenesDataset(data_root="/data/sets/nuscenes", version="v1.0-mini", use_lidar=True, use_radar=True,
    ...                      prediction_horizon=10)
    >>> item = ds[0]          # the layout of data/driving/common.py
    >>> loader = create_driving_dataloader(ds, batch_size=16)

The devkit (``nuscenes.nuscenes.NuScenes``) reads ``<data_root>/<version>/*.json`` (sample, sample_data,
ego_pose, calibrated_sensor, ...); the lidar sweep of each sample (``LIDAR_TOP`` ``.pcd.bin``) loads with the
devkit's ``LidarPointCloud`` and the radars (``RADAR_FRONT``, ...) with its ``RadarPointCloud`` (its default
filters), both moved into the ego frame with their calibrated sensor's pose; the camera is ``CAM_FRONT``.
Waypoints are the ego positions of the next ``prediction_horizon`` samples of the scene.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..lerobot_io import DatasetError
from .common import image_tensor, motion_labels, pad_rows, radar_rows, yaw_of_quaternion

RADARS = ("RADAR_FRONT", "RADAR_FRONT_LEFT", "RADAR_FRONT_RIGHT", "RADAR_BACK_LEFT", "RADAR_BACK_RIGHT")


def _rotation(q: list[float]) -> np.ndarray:
    from pyquaternion import Quaternion

    return Quaternion(q).rotation_matrix  # (3, 3)


class NuScenesDataset(torch.utils.data.Dataset):
    """Key-frame samples of a nuScenes release (see the module docstring).

    Args:
        data_root: the folder holding ``<version>/`` (the tables), ``samples/`` and ``sweeps/``.
        version: "v1.0-mini", "v1.0-trainval", ...
        use_lidar, use_radar: read LIDAR_TOP / the radars (absent sensors give all-zero masks).
        prediction_horizon: waypoints per item (future key frames, 0.5 s apart).
        image_size: the camera is resized to image_size x image_size.
        max_points, max_targets: lidar points (subsampled, seeded) and radar targets per item.
        scenes: scene names to keep (default: all).
        radars: radar channels to merge.
    """

    action_dim, state_dim = 3, 2  # state: speed, yaw rate (as the driving env's agent_pos)

    def __init__(self, data_root: str | os.PathLike = "/data/sets/nuscenes", version: str = "v1.0-mini",
                 use_lidar: bool = True, use_radar: bool = True, prediction_horizon: int = 10,
                 image_size: int = 96, max_points: int = 4096, max_targets: int = 64,
                 scenes: list[str] | None = None, radars: tuple[str, ...] = RADARS, verbose: bool = False):
        root = Path(data_root)
        if not (root / version).is_dir():
            raise DatasetError(f"no nuScenes tables at {root / version}; give data_root=<folder holding {version}/, "
                               f"samples/, sweeps/> and the version you downloaded")
        from nuscenes.nuscenes import NuScenes

        self.nusc = NuScenes(version=version, dataroot=str(root), verbose=verbose)
        self.root, self.version = root, version
        self.use_lidar, self.use_radar, self.radars = bool(use_lidar), bool(use_radar), tuple(radars)
        self.horizon, self.image_size = int(prediction_horizon), int(image_size)
        self.max_points, self.max_targets = int(max_points), int(max_targets)
        self.samples: list[str] = []
        self._labels: dict[str, tuple[dict, int]] = {}  # sample token -> (its scene's motion labels, index)
        for scene in self.nusc.scene:
            if scenes is not None and scene["name"] not in scenes:
                continue
            tokens, tok = [], scene["first_sample_token"]
            while tok:
                tokens.append(tok)
                tok = self.nusc.get("sample", tok)["next"]
            poses, times = [], []
            for tok in tokens:
                pose = self._ego_pose(tok)
                poses.append([pose["translation"][0], pose["translation"][1], yaw_of_quaternion(pose["rotation"])])
                times.append(self.nusc.get("sample", tok)["timestamp"] * 1e-6)
            labels = motion_labels(np.array(poses), np.array(times), self.horizon)
            labels["poses"] = np.array(poses, np.float32)
            for i, tok in enumerate(tokens):
                self._labels[tok] = (labels, i)
            self.samples += tokens
        if not self.samples:
            raise DatasetError(f"{root / version} has no samples{' in scenes ' + str(scenes) if scenes else ''}")

    def _ego_pose(self, sample_token: str) -> dict:
        sample = self.nusc.get("sample", sample_token)
        channel = "LIDAR_TOP" if "LIDAR_TOP" in sample["data"] else next(iter(sample["data"]))
        sd = self.nusc.get("sample_data", sample["data"][channel])
        return self.nusc.get("ego_pose", sd["ego_pose_token"])

    def __len__(self) -> int:
        return len(self.samples)

    def _to_ego(self, sd: dict, xyz: np.ndarray) -> np.ndarray:
        cs = self.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        return xyz @ _rotation(cs["rotation"]).T + np.asarray(cs["translation"])  # (M, 3)

    def lidar(self, sample: dict) -> np.ndarray:
        """The sample's LIDAR_TOP points (M, 4) in the ego frame: x, y, z, intensity."""
        from nuscenes.utils.data_classes import LidarPointCloud

        sd = self.nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        pc = LidarPointCloud.from_file(str(self.root / sd["filename"]))  # (4, M)
        return np.concatenate([self._to_ego(sd, pc.points[:3].T), pc.points[3:4].T], axis=1)

    def radar(self, sample: dict) -> np.ndarray:
        """Every radar's targets (M, 4) = (range, azimuth, radial velocity, rcs) in the ego frame, nearest first."""
        from nuscenes.utils.data_classes import RadarPointCloud

        xy, vel, rcs = [], [], []
        for ch in self.radars:
            if ch not in sample["data"]:
                continue
            sd = self.nusc.get("sample_data", sample["data"][ch])
            pc = RadarPointCloud.from_file(str(self.root / sd["filename"]))  # (18, M)
            cs = self.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            rot = _rotation(cs["rotation"])
            xy.append(self._to_ego(sd, pc.points[:3].T)[:, :2])
            v = np.concatenate([pc.points[8:10].T, np.zeros((pc.points.shape[1], 1))], axis=1) @ rot.T  # vx_comp, vy_comp
            vel.append(v[:, :2])
            rcs.append(pc.points[5])
        if not xy:
            return np.zeros((0, 4), np.float32)
        return radar_rows(np.concatenate(xy), np.concatenate(vel), np.concatenate(rcs))

    def __getitem__(self, i: int) -> dict[str, Any]:
        token = self.samples[i]
        sample = self.nusc.get("sample", token)
        labels, k = self._labels[token]
        out: dict[str, Any] = {}
        from PIL import Image

        cam = self.nusc.get("sample_data", sample["data"]["CAM_FRONT"])
        out["observation.images.front"] = image_tensor(Image.open(self.root / cam["filename"]), self.image_size)
        out["observation.state"] = torch.tensor([labels["speed"][k], labels["yaw_rate"][k]], dtype=torch.float32)
        rng = np.random.default_rng(i)
        pts = self.lidar(sample) if self.use_lidar and "LIDAR_TOP" in sample["data"] else np.zeros((0, 4))
        lidar, lmask = pad_rows(pts, self.max_points, rng)
        radar, rmask = pad_rows(self.radar(sample) if self.use_radar else np.zeros((0, 4)), self.max_targets)
        out.update({"observation.lidar": torch.from_numpy(lidar), "observation.lidar_mask": torch.from_numpy(lmask),
                    "observation.radar": torch.from_numpy(radar), "observation.radar_mask": torch.from_numpy(rmask),
                    "observation.imu": torch.zeros(4, 6), "observation.imu_mask": torch.zeros(4),
                    "observation.pose": torch.from_numpy(labels["poses"][k]),
                    "action": torch.from_numpy(labels["controls"][k : k + 1]),
                    "action_is_pad": torch.zeros(1, dtype=torch.bool),
                    "action.waypoints": torch.from_numpy(labels["waypoints"][k]),
                    "task": labels["commands"][k], "sample_token": token})
        return out
