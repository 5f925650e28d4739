"""LeRobot's public simulation datasets as workbench datasets: PushT, ALOHA sim and xArm.

    PushTDataset(split="train")                                   # lerobot/pusht
    PushTDataset(split="train[:1000]", root="data/pusht")         # the first 1000 frames of a local copy
    AlohaDataset("lerobot/aloha_sim_insertion_human", split="train[:90%]")
    XArmDataset("lerobot/xarm_lift_medium", chunk_size=8)

Each class is a :class:`.vla_dataset.LeRobotVLADataset` (decode-once frame cache, ``delta_timestamps``
semantics, HF split strings) over a local folder in the hub's exact layout (LeRobot v3.0: ``meta/info.json``,
``meta/stats.json``, ``meta/tasks.parquet``, ``meta/episodes/...``, ``data/chunk-000/file-000.parquet``,
``videos/...``), checked against :data:`.hub_layout.HUB_SPECS`: a folder whose state or action width or
cameras differ from the named dataset is refused with one line saying what differs.

Nothing is downloaded unless asked: the default root is ``$HF_LEROBOT_HOME/<repo_id>``, and a missing folder
stops with one line giving the ``huggingface-cli download`` command that puts the dataset there
(``download=True`` lets lerobot fetch it from the hub instead).

Keys follow the workbench's batch format: the single camera ``observation.image`` of PushT and xArm comes out
as ``observation.images.front`` (the workbench's default camera, so a default model config trains on it);
ALOHA's ``observation.images.top`` keeps its name. ``observation.state``, ``action``, ``task`` and the scalar
columns (``next.reward``, ``next.done``, ``next.success``) keep theirs. ``image_keys=`` takes either name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dataset_files import check_dataset_files
from .hub_layout import HUB_SPECS, HubSpec, hub_spec
from .lerobot_io import DatasetError
from .vla_dataset import LeRobotVLADataset

SINGLE_CAMERA = "observation.image"  # LeRobot's key for a dataset's only camera (PushT, xArm)
FRONT = "observation.images.front"  # the workbench's default camera key


class HubDataset(LeRobotVLADataset):
    """A hub simulation dataset (one of ``FAMILY``'s repo ids) read from a local folder in the hub's layout."""

    REPO_ID = ""  # the family's default dataset
    FAMILY = ""  # repo ids of the family start with "lerobot/<FAMILY>"
    CAMERA_MAP: dict[str, str] = {}  # raw camera key -> workbench key

    def __init__(self, repo_id: str | None = None, split: str = "train", root: str | Path | None = None, *,
                 download: bool = False, image_keys: list[str] | None = None, **kw: Any) -> None:
        repo_id = repo_id or self.REPO_ID
        if not repo_id.startswith(f"lerobot/{self.FAMILY}"):
            family = [r for r in HUB_SPECS if r.startswith(f"lerobot/{self.FAMILY}")]
            raise DatasetError(f"{type(self).__name__} reads the {self.FAMILY} datasets, not '{repo_id}'; "
                               f"choose one of: {', '.join(family)}")
        self.spec: HubSpec = hub_spec(repo_id)
        self.download = bool(download)
        self._to_raw = {v: k for k, v in self.CAMERA_MAP.items()}
        raw_keys = [self._to_raw.get(k, k) for k in image_keys] if image_keys is not None else None
        super().__init__(repo_id, root=root, split=split, image_keys=raw_keys, **kw)
        self._check_spec()

    # ---------------------------------------------------------------------------- opening
    def _ensure_local(self) -> None:
        """The folder must hold the dataset already, unless ``download=True`` lets lerobot fetch it."""
        if self.download:
            super()._ensure_local()
            return
        if not (self.root / "meta" / "info.json").is_file():
            raise DatasetError(
                f"dataset '{self.repo_id}' is not at {self.root}; download it from the Hugging Face hub with "
                f"`huggingface-cli download {self.repo_id} --repo-type dataset --local-dir {self.root}`, or pass "
                f"root= the folder that holds it (download=True fetches it through lerobot)")
        check_dataset_files(self.root)

    def _check_spec(self) -> None:
        """The folder must be the named dataset: its cameras, state and action widths as the hub's."""
        spec, feats = self.spec, self.features
        problems = []
        for key in spec.cameras:
            if key not in feats or feats[key]["dtype"] not in ("video", "image"):
                problems.append(f"no camera '{key}'")
        for key, dim in (("observation.state", spec.state_dim), ("action", spec.action_dim)):
            have = int(np.prod(feats[key]["shape"])) if key in feats else 0
            if have != dim:
                problems.append(f"'{key}' is {have}-D, not {dim}-D")
        if problems:
            raise DatasetError(f"{self.root} is not in the layout of {self.repo_id}: {'; '.join(problems)}; "
                               f"point root= at a copy of {self.repo_id}")

    # ---------------------------------------------------------------------------- workbench keys
    def _query(self, abs_idx: np.ndarray) -> dict[str, Any]:
        out = super()._query(abs_idx)
        for raw, key in self.CAMERA_MAP.items():
            for suffix in ("", "_is_pad"):
                if raw + suffix in out:
                    out[key + suffix] = out.pop(raw + suffix)
        return out

    @property
    def image_keys(self) -> list[str]:
        return [self.CAMERA_MAP.get(k, k) for k in self._image_keys]

    @property
    def stats(self) -> dict[str, dict[str, torch.Tensor]]:
        return {self.CAMERA_MAP.get(k, k): v for k, v in super().stats.items()}

    def episode_frames(self, ep: int, key: str | None = None) -> np.ndarray:
        return super().episode_frames(ep, self._to_raw.get(key, key) if key is not None else None)

    @property
    def raw_image_keys(self) -> list[str]:
        """The camera keys as the dataset's files name them."""
        return list(self._image_keys)


class PushTDataset(HubDataset):
    """LeRobot's PushT demonstrations (``lerobot/pusht``: 206 human episodes, 96x96 camera, 2-D agent
    position as state, 2-D target position as action, 10 fps; ``lerobot/pusht_image`` keeps PNG frames).

    ``PushTDataset(split="train")``, ``PushTDataset(split="train[:1000]")`` (frames),
    ``PushTDataset(split="train[90%:]")`` (episodes). See :class:`HubDataset` for ``root`` and ``download``.
    """

    REPO_ID = "lerobot/pusht"
    FAMILY = "pusht"
    CAMERA_MAP = {SINGLE_CAMERA: FRONT}

    def __init__(self, split: str = "train", root: str | Path | None = None, repo_id: str = REPO_ID,
                 **kw: Any) -> None:
        super().__init__(repo_id, split=split, root=root, **kw)


class AlohaDataset(HubDataset):
    """The ALOHA sim datasets (``lerobot/aloha_sim_{insertion,transfer_cube}_{human,scripted}[_image]``):
    14 joint positions of two ViperX arms as state and action, the ``top`` camera at 480x640, 50 fps."""

    REPO_ID = "lerobot/aloha_sim_insertion_human"
    FAMILY = "aloha_sim"


class XArmDataset(HubDataset):
    """FOWM's xArm datasets (``lerobot/xarm_{lift,push}_{medium,medium_replay}[_image]``): one 84x84 camera,
    a 4-D state, 4-D (lift) or 3-D (push) end-effector actions, 15 fps, 25-frame episodes."""

    REPO_ID = "lerobot/xarm_lift_medium"
    FAMILY = "xarm"
    CAMERA_MAP = {SINGLE_CAMERA: FRONT}
