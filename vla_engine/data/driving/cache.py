"""An in-memory copy of a frame dataset, so several models train on the same frames without decoding them again.

A driving frame carries a camera image, a 1024-point lidar cloud, radar targets and IMU samples; reading one
from the LeRobot files costs ~3 ms, which at batch 32 is as much as a small model's training step. A
benchmark that trains five models on the same data (``benchmarks/bench_driving.py --train``) reads every
frame once into stacked tensors and samples batches from memory:

    >>> data, _ = build_datasets(cfg.dataset, n_obs_steps=1, chunk_size=1)
    >>> frames = InMemoryFrames(data)          # reads all frames once (len(data) x ~3 ms)
    >>> BehavioralCloning(model, cfg.training).train(frames)

Tensor fields are stacked ((N, ...) each); string fields (the instruction ``task``) stay lists. Everything
else (``stats``, ``action_dim``, ``state_dim``, ``chunk_size``, ``fps``, ...) is read from the wrapped dataset.
"""

from __future__ import annotations

from typing import Any

import torch


class InMemoryFrames(torch.utils.data.Dataset):
    """Every item of ``dataset`` held in memory; items are the same dicts the dataset gives."""

    def __init__(self, dataset: Any, dtype_images: torch.dtype = torch.float32):
        n = len(dataset)
        if n == 0:
            raise ValueError("InMemoryFrames got an empty dataset; generate or point to a dataset with frames")
        self.source = dataset
        first = dataset[0]
        self._tensors: dict[str, torch.Tensor] = {}
        self._lists: dict[str, list[Any]] = {}
        for k, v in first.items():
            if isinstance(v, torch.Tensor):
                dt = dtype_images if v.is_floating_point() and k.startswith("observation.images") else v.dtype
                self._tensors[k] = torch.empty((n, *v.shape), dtype=dt)
            else:
                self._lists[k] = [None] * n
        for i in range(n):
            item = first if i == 0 else dataset[i]
            for k, buf in self._tensors.items():
                buf[i] = item[k]
            for k, lst in self._lists.items():
                lst[i] = item[k]
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {k: t[i] for k, t in self._tensors.items()}
        out.update({k: lst[i] for k, lst in self._lists.items()})
        return out

    def __getattr__(self, name: str) -> Any:
        # only reached for attributes this class does not have: the wrapped dataset's (stats, action_dim, ...)
        if name in ("source", "_tensors", "_lists", "_n"):
            raise AttributeError(name)
        return getattr(self.source, name)
