"""Robot datasets for training: the reader, its DataLoader, and datasets built from a config.

The parts live in their own modules and are importable from here as before:

* :mod:`.vla_dataset` -- :class:`LeRobotVLADataset` (items, splits, chunk labels) and
  :class:`PushTDataset`
* :mod:`.frame_cache` -- the decode-once frame cache (PNG/mp4 -> memory-mapped uint8 arrays)
* :mod:`.dataset_files` -- :func:`check_dataset_files`, split parsing, one-line error hints
* :mod:`.collate` -- :func:`collate_batch`

This module adds :func:`create_lerobot_dataloader` and :func:`build_datasets` (a DatasetConfig ->
train and validation datasets, generating the data first when a built-in task names it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from .collate import collate_batch
from .datagen import generate_dataset
from .dataset_files import check_dataset_files, parse_split
from .frame_cache import CACHE_VERSION
from .lerobot_io import DatasetError
from .vla_dataset import CHUNK_LABELS, LeRobotVLADataset, PushTDataset

if TYPE_CHECKING:  # pragma: no cover
    from vla_engine.config.dataset_config import DatasetConfig

__all__ = [
    "CACHE_VERSION",
    "CHUNK_LABELS",
    "LeRobotVLADataset",
    "PushTDataset",
    "build_datasets",
    "check_dataset_files",
    "collate_batch",
    "create_lerobot_dataloader",
    "parse_split",
]


def create_lerobot_dataloader(
    dataset: torch.utils.data.Dataset,
    batch_size: int = 64,
    shuffle: bool = True,
    num_workers: int = 0,
    drop_last: bool = True,
    seed: int | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader over a :class:`LeRobotVLADataset` (or lerobot's ``LeRobotDataset``).

    Tensors are stacked along a batch axis, ``task`` stays a list of str. ``drop_last`` is ignored
    when the dataset is smaller than one batch (so a tiny dataset still yields a batch). ``seed``
    fixes the shuffling order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if isinstance(dataset, LeRobotVLADataset):
        dataset.build_cache()  # decode in the main process once, not in every worker
    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(int(seed))
    n = len(dataset)  # type: ignore[arg-type]
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last and n >= batch_size,
        collate_fn=collate_batch,
        generator=generator,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def build_datasets(
    cfg: "DatasetConfig", n_obs_steps: int = 1, chunk_size: int = 1, progress: bool = True,
    on_episode: Callable[[int, int], None] | None = None,
) -> tuple[LeRobotVLADataset, LeRobotVLADataset | None]:
    """Train (and validation, when ``cfg.val_fraction > 0``) datasets from a DatasetConfig, with items of
    ``n_obs_steps`` frames and ``chunk_size`` actions (the model's: a run passes ``model.n_obs_steps`` /
    ``model.chunk_size``).

    When ``cfg.root`` holds no dataset and ``cfg.task`` names a built-in task, the data is
    generated first with the task's scripted expert (``cfg.episodes`` episodes, seeds 0, 1, ...).
    The validation split holds the last ``val_fraction`` of the episodes.
    """
    root = Path(cfg.root) if cfg.root is not None else None
    if root is not None and not (root / "meta" / "info.json").is_file() and cfg.task is not None:
        if root.exists() and any(root.iterdir()):
            check_dataset_files(root)  # something is there but broken: say what
        generate_dataset(
            cfg.task, cfg.episodes, root, image_size=cfg.image_size, repo_id=cfg.repo_id, progress=progress,
            on_episode=on_episode, action_noise=cfg.action_noise, targets_per_layout=cfg.targets_per_layout,
            plan_horizon=cfg.plan_horizon,
        )
    kw = dict(n_obs_steps=n_obs_steps, chunk_size=chunk_size, chunk_labels=cfg.chunk_labels)
    if cfg.val_fraction <= 0:
        return LeRobotVLADataset(cfg.repo_id, root=root, **kw), None
    pct = 100.0 * (1.0 - cfg.val_fraction)
    train = LeRobotVLADataset(cfg.repo_id, root=root, split=f"train[:{pct:g}%]", **kw)
    val = LeRobotVLADataset(cfg.repo_id, root=root, split=f"train[{pct:g}%:]", **kw)
    if len(val) == 0 or len(train) == 0:
        raise DatasetError(
            f"dataset.val_fraction={cfg.val_fraction} leaves an empty split of {train.root} "
            f"({train.num_episodes + val.num_episodes} episodes); lower it or generate more episodes"
        )
    return train, val
