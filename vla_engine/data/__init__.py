"""Robot data: LeRobot v3 datasets (writing, fast reading, generation from scripted experts).

Light on import: the names below load their modules (torch, lerobot) on first use.

* :func:`generate_dataset` -- expert demonstrations of a built-in task -> LeRobot v3 dataset
* :class:`LeRobotVLADataset` -- a LeRobot v3 dataset (local or hub) as a torch Dataset with a
  decode-once frame cache
* :class:`PushTDataset`, :class:`AlohaDataset`, :class:`XArmDataset` -- LeRobot's PushT, ALOHA sim and xArm
  datasets from a local copy in the hub's layout; :func:`write_hub_dataset` writes that layout
* :func:`create_lerobot_dataloader`, :func:`collate_batch` -- batches with ``task`` as list of str
* :class:`LeRobotWriter`, :func:`write_dataset` -- write episodes through lerobot's own writer
* :class:`BCDataset`, :class:`FilteredBCDataset`, :class:`WeightedBCDataset`, :func:`create_bc_dataloader`
  -- offline BC datasets read from Minari (``minari_io`` makes them with minari's DataCollector)
* :class:`DatasetError` -- one-line errors for missing/corrupt datasets
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DatasetError": ".lerobot_io",
    "DatasetExistsError": ".lerobot_io",
    "LeRobotWriter": ".lerobot_io",
    "make_features": ".lerobot_io",
    "write_dataset": ".lerobot_io",
    "read_sidecar": ".lerobot_io",
    "write_sidecar": ".lerobot_io",
    "IMAGE_KEY": ".lerobot_io",
    "STATE_KEY": ".lerobot_io",
    "ACTION_KEY": ".lerobot_io",
    "EVAL_SEED_START": "..config.run_config",  # owned by the run config; re-exported here
    "ReplayBuffer": "..train.rl.buffers",  # the RL buffers (the seed imports ReplayBuffer with the datasets)
    "RolloutBuffer": "..train.rl.buffers",
    "LeRobotVLADataset": ".vla_dataset",
    "PushTDataset": ".hub_datasets",
    "AlohaDataset": ".hub_datasets",
    "XArmDataset": ".hub_datasets",
    "HUB_SPECS": ".hub_layout",
    "write_hub_dataset": ".hub_layout",
    "collate_batch": ".collate",
    "check_dataset_files": ".dataset_files",
    "create_lerobot_dataloader": ".dataset",
    "build_datasets": ".dataset",
    "generate_dataset": ".datagen",
    "rollout_episode": ".datagen",
    "DatagenError": ".datagen",
    "BCDataset": ".bc_datasets",
    "FilteredBCDataset": ".bc_datasets",
    "WeightedBCDataset": ".bc_datasets",
    "create_bc_dataloader": ".bc_datasets",
    "NuScenesDataset": ".driving",
    "KittiRawDataset": ".driving",
    "create_driving_dataloader": ".driving",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vla_engine.data' has no attribute '{name}'")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
