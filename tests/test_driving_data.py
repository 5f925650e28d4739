"""Driving datasets in their own formats: a tiny nuScenes v1.0-style folder (JSON tables, LIDAR_TOP .pcd.bin,
RADAR_FRONT .pcd, CAM_FRONT jpg) read by nuscenes-devkit and by NuScenesDataset gives the same sample; a tiny
KITTI raw drive (velodyne .bin, oxts, image_02, calib) reads; both batch through create_driving_dataloader."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from vla_engine.data.driving import KittiRawDataset, NuScenesDataset, create_driving_dataloader

RADAR_FIELDS = ("x y z dyn_prop id rcs vx vy vx_comp vy_comp is_quality_valid ambig_state x_rms y_rms "
                "invalid_state pdh0 vx_rms vy_rms").split()
RADAR_SIZE = [4, 4, 4, 1, 2, 4, 4, 4, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1]
RADAR_TYPE = list("FFFIIFFFFFIIIIIIII")


def _quat_yaw(yaw):
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def _write_radar_pcd(path, targets):
    """targets: (x, y, vx_comp, vy_comp, rcs) rows -> a nuScenes radar .pcd (binary, 18 fields)."""
    header = ["# .PCD v0.7 - Point Cloud Data file format", "VERSION 0.7", "FIELDS " + " ".join(RADAR_FIELDS),
              "SIZE " + " ".join(map(str, RADAR_SIZE)), "TYPE " + " ".join(RADAR_TYPE), "COUNT " + " ".join(["1"] * 18),
              f"WIDTH {len(targets)}", "HEIGHT 1", "VIEWPOINT 0 0 0 1 0 0 0", f"POINTS {len(targets)}", "DATA binary"]
    dtype = np.dtype([(n, {("F", 4): "<f4", ("I", 1): "u1", ("I", 2): "<u2"}[(t, s)])
                      for n, t, s in zip(RADAR_FIELDS, RADAR_TYPE, RADAR_SIZE)])
    rec = np.zeros(len(targets), dtype)
    for i, (x, y, vx, vy, rcs) in enumerate(targets):
        rec[i]["x"], rec[i]["y"], rec[i]["vx_comp"], rec[i]["vy_comp"], rec[i]["rcs"] = x, y, vx, vy, rcs
        rec[i]["ambig_state"], rec[i]["invalid_state"], rec[i]["dyn_prop"] = 3, 0, 0
    # the devkit reads a byte past each point's last field (its bounds check is strict), as the released files allow
    path.write_bytes(("\n".join(header) + "\n").encode() + rec.tobytes() + b"\n")


def make_nuscenes(root, n_samples=4, version="v1.0-mini"):
    """A one-scene nuScenes folder in the v1.0 layout: the ego drives +x at 5 m/s, key frames 0.5 s apart."""
    (root / version).mkdir(parents=True)
    for d in ("samples/LIDAR_TOP", "samples/RADAR_FRONT", "samples/CAM_FRONT", "maps"):
        (root / d).mkdir(parents=True)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "maps" / "map.png")
    sensors = [{"token": "s_lidar", "channel": "LIDAR_TOP", "modality": "lidar"},
               {"token": "s_radar", "channel": "RADAR_FRONT", "modality": "radar"},
               {"token": "s_cam", "channel": "CAM_FRONT", "modality": "camera"}]
    calib = [{"token": "c_lidar", "sensor_token": "s_lidar", "translation": [0.9, 0.0, 1.8],
              "rotation": _quat_yaw(math.pi / 2), "camera_intrinsic": []},
             {"token": "c_radar", "sensor_token": "s_radar", "translation": [3.4, 0.0, 0.5],
              "rotation": _quat_yaw(0.0), "camera_intrinsic": []},
             {"token": "c_cam", "sensor_token": "s_cam", "translation": [1.7, 0.0, 1.5],
              "rotation": [0.5, -0.5, 0.5, -0.5], "camera_intrinsic": [[500, 0, 10], [0, 500, 8], [0, 0, 1]]}]
    rng = np.random.default_rng(0)
    samples, sample_data, ego_poses = [], [], []
    for i in range(n_samples):
        ts = 1_532_402_927_000_000 + i * 500_000
        samples.append({"token": f"sample{i}", "timestamp": ts, "scene_token": "scene0",
                        "prev": f"sample{i - 1}" if i else "", "next": f"sample{i + 1}" if i < n_samples - 1 else ""})
        ego_poses.append({"token": f"ego{i}", "timestamp": ts, "translation": [100.0 + 2.5 * i, 50.0, 0.0],
                          "rotation": _quat_yaw(0.0)})
        pts = rng.normal(0, 5, (200 + 10 * i, 5)).astype(np.float32)
        pts.tofile(root / "samples" / "LIDAR_TOP" / f"lidar{i}.pcd.bin")
        _write_radar_pcd(root / "samples" / "RADAR_FRONT" / f"radar{i}.pcd",
                         [(20.0 - 2.5 * i, 1.0, -1.0, 0.0, 5.0), (40.0, -3.0, 0.0, 0.0, 10.0)])
        Image.fromarray(rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)).save(root / "samples/CAM_FRONT" / f"cam{i}.jpg")
        for ch, cal, fn, fmt in (("LIDAR_TOP", "c_lidar", f"samples/LIDAR_TOP/lidar{i}.pcd.bin", "pcd"),
                                 ("RADAR_FRONT", "c_radar", f"samples/RADAR_FRONT/radar{i}.pcd", "pcd"),
                                 ("CAM_FRONT", "c_cam", f"samples/CAM_FRONT/cam{i}.jpg", "jpg")):
            sample_data.append({"token": f"{ch}{i}", "sample_token": f"sample{i}", "ego_pose_token": f"ego{i}",
                                "calibrated_sensor_token": cal, "timestamp": ts, "fileformat": fmt,
                                "is_key_frame": True, "height": 16 if fmt == "jpg" else 0,
                                "width": 20 if fmt == "jpg" else 0, "filename": fn,
                                "prev": f"{ch}{i - 1}" if i else "", "next": f"{ch}{i + 1}" if i < n_samples - 1 else ""})
    tables = {
        "category": [], "attribute": [], "visibility": [], "instance": [], "sample_annotation": [],
        "sensor": sensors, "calibrated_sensor": calib, "ego_pose": ego_poses,
        "log": [{"token": "log0", "logfile": "log0", "vehicle": "n015", "date_captured": "2018-07-24",
                 "location": "singapore-onenorth"}],
        "scene": [{"token": "scene0", "log_token": "log0", "nbr_samples": n_samples, "first_sample_token": "sample0",
                   "last_sample_token": f"sample{n_samples - 1}", "name": "scene-0001",
                   "description": "Straight road, parked cars"}],
        "sample": samples, "sample_data": sample_data,
        "map": [{"token": "map0", "log_tokens": ["log0"], "category": "semantic_prior", "filename": "maps/map.png"}],
    }
    for name, rows in tables.items():
        (root / version / f"{name}.json").write_text(json.dumps(rows))
    return root


def test_nuscenes_folder_reads_like_the_devkit(tmp_path):
    from nuscenes.nuscenes import NuScenes
    from nuscenes.utils.data_classes import LidarPointCloud, RadarPointCloud
    from pyquaternion import Quaternion

    root = make_nuscenes(tmp_path / "nuscenes")
    ds = NuScenesDataset(data_root=root, version="v1.0-mini", use_lidar=True, use_radar=True, prediction_horizon=2,
                         image_size=32, max_points=512, max_targets=8)
    assert len(ds) == 4
    item = ds[1]
    # the devkit's own reading of the same sample: lidar points moved into the ego frame
    nusc = NuScenes(version="v1.0-mini", dataroot=str(root), verbose=False)
    sample = nusc.get("sample", "sample1")
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    pc = LidarPointCloud.from_file(str(root / sd["filename"]))
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pc.rotate(Quaternion(cs["rotation"]).rotation_matrix)
    pc.translate(np.array(cs["translation"]))
    n = pc.points.shape[1]
    assert int(item["observation.lidar_mask"].sum()) == n == 210
    ours = item["observation.lidar"][: n].numpy()
    theirs = pc.points[:4].T
    np.testing.assert_allclose(ours[np.lexsort(ours.T)], theirs[np.lexsort(theirs.T)], atol=1e-4)
    # radar: both targets, nearest first, range from the ego origin, radial velocity of the closing target
    rsd = nusc.get("sample_data", sample["data"]["RADAR_FRONT"])
    assert RadarPointCloud.from_file(str(root / rsd["filename"])).points.shape[1] == 2
    radar = item["observation.radar"].numpy()
    assert item["observation.radar_mask"].tolist()[:3] == [1, 1, 0]
    np.testing.assert_allclose(radar[0, 0], math.hypot(3.4 + 17.5, 1.0), atol=1e-3)
    assert radar[0, 2] < 0  # closing in
    # ego motion: 5 m/s straight ahead, waypoints 2.5 m apart on x, a "go straight" command, no steering
    np.testing.assert_allclose(item["observation.state"][0].item(), 5.0, atol=1e-3)
    np.testing.assert_allclose(item["action.waypoints"].numpy(), [[2.5, 0.0], [5.0, 0.0]], atol=1e-4)
    assert item["task"] == "go straight" and abs(float(item["action"][0, 0])) < 1e-6
    assert item["observation.images.front"].shape == (3, 32, 32)
    batch = next(iter(create_driving_dataloader(ds, batch_size=4, shuffle=False)))
    assert batch["observation.lidar"].shape == (4, 512, 4) and len(batch["task"]) == 4
    # the last sample: its waypoints stay at its own position (no future key frames)
    np.testing.assert_allclose(ds[3]["action.waypoints"].numpy(), 0.0, atol=1e-4)


def test_nuscenes_missing_folder_is_one_line(tmp_path):
    from vla_engine.data.lerobot_io import DatasetError

    with pytest.raises(DatasetError, match="no nuScenes tables"):
        NuScenesDataset(data_root=tmp_path, version="v1.0-trainval")


def make_kitti(root, n=12):
    """A KITTI raw drive turning left at 5 m/s (yaw rate 0.2 rad/s), 10 Hz."""
    date = "2011_09_26"
    drive = root / date / f"{date}_drive_0001_sync"
    for d in ("image_02/data", "velodyne_points/data", "oxts/data"):
        (drive / d).mkdir(parents=True)
    (root / date / "calib_velo_to_cam.txt").write_text(
        "calib_time: 15-Mar-2012 11:37:16\nR: 1 0 0 0 1 0 0 0 1\nT: -0.004 -0.076 -0.27\n")
    lat0, lon0, r = 49.0, 8.4, 6378137.0
    scale = math.cos(lat0 * math.pi / 180)
    x, y, yaw = 0.0, 0.0, 0.0
    stamps = []
    rng = np.random.default_rng(0)
    for i in range(n):
        lon = lon0 + x / (scale * r) * 180 / math.pi
        merc0 = scale * r * math.log(math.tan((90 + lat0) * math.pi / 360))
        lat = 360 / math.pi * math.atan(math.exp((merc0 + y) / (scale * r))) - 90
        vals = [lat, lon, 100.0, 0.0, 0.0, yaw] + [0.0] * 24
        vals[14], vals[22] = 0.1, 0.2  # af, wu
        (drive / "oxts/data" / f"{i:010d}.txt").write_text(" ".join(f"{v:.12f}" for v in vals))
        stamps.append(f"2011-09-26 13:02:{25 + i // 10:02d}.{(i % 10) * 100000000:09d}")
        rng.normal(0, 5, (100, 4)).astype(np.float32).tofile(drive / "velodyne_points/data" / f"{i:010d}.bin")
        Image.fromarray(rng.integers(0, 255, (10, 30, 3), dtype=np.uint8)).save(drive / "image_02/data" / f"{i:010d}.png")
        x, y, yaw = x + 0.5 * math.cos(yaw), y + 0.5 * math.sin(yaw), yaw + 0.02
    (drive / "oxts/timestamps.txt").write_text("\n".join(stamps) + "\n")
    return root


def test_kitti_raw_folder_reads(tmp_path):
    root = make_kitti(tmp_path / "kitti")
    ds = KittiRawDataset(root, prediction_horizon=2, waypoint_step=2, image_size=24, max_points=128)
    assert len(ds) == 12 and "2011_09_26_drive_0001_sync" in ds.calib
    item = ds[2]
    assert item["observation.lidar"].shape == (128, 4) and int(item["observation.lidar_mask"].sum()) == 100
    np.testing.assert_allclose(item["observation.lidar"][:100].numpy(),
                               np.fromfile(root / "2011_09_26/2011_09_26_drive_0001_sync/velodyne_points/data/"
                                           "0000000002.bin", dtype=np.float32).reshape(-1, 4), atol=0)
    np.testing.assert_allclose(item["observation.state"][0].item(), 5.0, rtol=0.02)  # speed
    np.testing.assert_allclose(item["observation.state"][1].item(), 0.2, rtol=0.05)  # yaw rate
    wp = item["action.waypoints"].numpy()
    assert wp.shape == (2, 2) and 0.9 < wp[0, 0] < 1.1 and wp[1, 1] > wp[0, 1] > 0  # ahead, curving left
    assert item["action"][0, 0] > 0  # steering left
    np.testing.assert_allclose(item["observation.imu"][0, [0, 5]].numpy(), [0.1, 0.2])
    batch = next(iter(create_driving_dataloader(ds, batch_size=5)))
    assert batch["observation.images.front"].shape == (5, 3, 24, 24)
