"""Collation of VLA items into a batch: tensors stacked along a new batch axis, ``task`` a list of str."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch


class BatchList(list):
    """What ``LeRobotVLADataset.__getitems__`` returns: the per-item dicts (for any collate_fn) plus
    the batch, already stacked, which :func:`collate_batch` returns without copying again."""

    batch: dict[str, Any]


def collate_batch(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack item tensors along a new batch axis; strings (``task``) stay a list of str."""
    if isinstance(items, BatchList):
        return items.batch
    if not items:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        v0 = vals[0]
        if isinstance(v0, torch.Tensor):
            out[key] = torch.stack(vals)
        elif isinstance(v0, np.ndarray):
            out[key] = torch.from_numpy(np.stack(vals))
        elif isinstance(v0, str):
            out[key] = list(vals)
        elif isinstance(v0, (bool, int, float, np.number)):
            out[key] = torch.tensor(vals)
        else:
            out[key] = list(vals)
    return out
