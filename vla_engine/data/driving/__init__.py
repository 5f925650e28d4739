"""Driving datasets in their own on-disk formats: nuScenes (through nuscenes-devkit's tables) and KITTI raw
(velodyne ``.bin``, oxts, ``image_02``), with the item layout of ``common.py`` that ``MultiSensorVLA`` reads.
The driving world's own demonstrations are LeRobot v3 datasets (``vla datagen --task driving/turn``)."""

from __future__ import annotations

from .common import create_driving_dataloader, motion_labels
from .kitti import KittiRawDataset
from .nuscenes import NuScenesDataset

__all__ = ["NuScenesDataset", "KittiRawDataset", "create_driving_dataloader", "motion_labels"]
