"""The dataset section of a run config: which LeRobot dataset, and how items are cut from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from .base import ConfigBase


@dataclass
class DatasetConfig(ConfigBase):
    """Where the training data lives and how it is sliced into items.

    ``root`` is a LeRobot v3 dataset folder; when it holds no dataset and ``task`` names a built-in
    task, ``episodes`` expert demonstrations are generated there first (seeds 0, 1, ...).
    One item is ``model.n_obs_steps`` frames of history and ``model.chunk_size`` future actions: the
    model owns both and the data is cut to fit it. ``val_fraction`` of the episodes (the last ones) are
    held out for validation.
    """

    _section: ClassVar[str] = "dataset"

    repo_id: str = "local/push"  # LeRobot repo id, 'owner/name' (local/push for the built-in data)
    root: str | None = "datasets/push"  # the dataset's folder (null: the hub cache)
    task: str | None = "push"  # built-in task that generates the data when root is missing
    episodes: int = 200  # episodes to generate
    image_size: int = 96  # generating: camera images of image_size x image_size pixels
    action_noise: float = 0.3  # DART noise on executed expert actions when generating (0 = none)
    targets_per_layout: int = 1  # generating: episodes per layout, each naming another block (3 = contrastive)
    plan_horizon: int = 0  # generating: record the expert's noise-free plan of this many steps per frame (0 = none)
    chunk_labels: Literal["auto", "recorded", "plan"] = "auto"  # action chunks from the recorded actions, the expert plans, or auto (plans if there)
    val_fraction: float = 0.0  # fraction of the episodes (the last ones) held out for validation
    minari_id: str | None = None  # offline-bc: a Minari dataset id (vla/pendulum/expert-v0) or dataset folder
    minari_root: str | None = None  # offline-bc: where Minari ids live (empty: MINARI_DATASETS_PATH or ~/.minari/datasets)

    def validate(self) -> None:
        if not self.repo_id or "/" not in self.repo_id:
            self._fail("repo_id", "is not a repo id; use 'owner/name', e.g. 'local/push' or 'lerobot/pusht'")
        if self.root is not None and not self.root.strip():
            self._fail("root", "is empty; give a dataset folder or null for the hub cache")
        if self.task is not None:
            import vla_engine.envs  # noqa: F401  (fills the TASKS registry; a light import)
            from vla_engine.registry import TASKS

            self._check_choice("task", TASKS)
        self._check_range("episodes", 1)
        self._check_range("image_size", 16, 1024)
        self._check_range("val_fraction", 0.0, 0.9)
        self._check_range("action_noise", 0.0, 2.0)
        self._check_range("targets_per_layout", 1, 3)
        self._check_range("plan_horizon", 0, 256)
        for name in ("minari_id", "minari_root"):
            if getattr(self, name) is not None and not str(getattr(self, name)).strip():
                self._fail(name, "is empty; give a value or leave it null")
