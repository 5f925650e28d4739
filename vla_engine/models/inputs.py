"""A batch (LeRobot keys) -> the tensors a VLA reads, with one-line errors naming what does not fit.

Batch keys: ``observation.images.<camera>`` (B, [T,] 3, H, W) float in [0, 1] or uint8, channel-last
accepted; ``observation.state`` (B, [T,] S); ``task`` (a string or one per sample); ``action`` (B, [chunk,] A)
and ``action_is_pad`` (B, chunk) for training.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["ModelInputError", "fit_time", "image_tensor", "batch_size", "batch_tasks", "action_targets",
           "image_batch"]


class ModelInputError(ValueError):
    """A batch or observation does not fit the model (missing key, wrong size). One-line message."""


def fit_time(x: torch.Tensor, step_ndim: int, key: str, n_obs_steps: int) -> torch.Tensor:
    """(B, *step) or (B, T', *step) -> (B, T, *step) with T = n_obs_steps (last steps; repeat the first)."""
    if x.ndim == step_ndim + 1:
        x = x.unsqueeze(1)  # (B, 1, *step)
    elif x.ndim != step_ndim + 2:
        raise ModelInputError(f"batch[{key!r}] has shape {tuple(x.shape)}; expected (B, ...) or (B, T, ...) "
                              f"with {step_ndim} trailing dimensions")
    t = n_obs_steps
    if x.shape[1] > t:
        x = x[:, -t:]
    elif x.shape[1] < t:
        pad = x[:, :1].expand(-1, t - x.shape[1], *x.shape[2:])
        x = torch.cat([pad, x], dim=1)
    return x  # (B, T, *step)


def image_tensor(batch: Mapping[str, Any], key: str, device: torch.device, n_obs_steps: int) -> torch.Tensor:
    """Camera ``key`` of the batch as float (B, T, 3, H, W) in [0, 1] on ``device``."""
    if key not in batch:
        have = [k for k in batch if k.startswith("observation.")]
        raise ModelInputError(f"the batch has no {key!r} (model.image_keys); it has {', '.join(have) or 'no observations'}; "
                              f"set model.image_keys to the dataset's camera keys")
    x = batch[key]
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    x = x.to(device, non_blocking=True)
    if x.ndim >= 4 and x.shape[-1] in (1, 3) and x.shape[-3] not in (1, 3):  # channel-last
        x = x.movedim(-1, -3)
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif x.dtype != torch.float32:
        x = x.float()
    if x.shape[-3] == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    return fit_time(x, 3, key, n_obs_steps)  # (B, T, 3, H, W)


def batch_size(batch: Mapping[str, Any], image_key: str) -> int:
    """B, read off the first camera's images."""
    x = batch[image_key] if image_key in batch else None
    if x is None:
        raise ModelInputError(f"the batch has no {image_key!r} (model.image_keys); "
                              f"set model.image_keys to the dataset's camera keys")
    x = x if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim == 3:  # one unbatched image
        return 1
    return int(x.shape[0])


def batch_tasks(batch: Mapping[str, Any], b: int) -> list[str]:
    """One instruction per sample ("" when the batch has none; one string is repeated)."""
    task = batch.get("task")
    if task is None:
        return [""] * b
    if isinstance(task, str):
        return [task] * b
    task = list(task)
    if len(task) == 1 and b > 1:
        return task * b
    if len(task) != b:
        raise ModelInputError(f"batch['task'] has {len(task)} instructions for a batch of {b}; give one per sample")
    return [str(t) for t in task]


def action_targets(batch: Mapping[str, Any], action_dim: int, chunk_size: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The demonstrated actions (B, chunk, A) and their padding mask (B, chunk) or None."""
    if "action" not in batch:
        raise ModelInputError("the batch has no 'action'; training needs demonstrated actions "
                              "(use predict_action_chunk for inference)")
    a = batch["action"]
    if not isinstance(a, torch.Tensor):
        a = torch.as_tensor(np.asarray(a, dtype=np.float32))
    a = a.to(device, torch.float32, non_blocking=True)
    if a.ndim == 2:
        a = a.unsqueeze(1)  # (B, 1, A)
    if a.ndim != 3:
        raise ModelInputError(f"batch['action'] has shape {tuple(a.shape)}; expected (B, chunk, A) or (B, A)")
    if a.shape[-1] != action_dim:
        raise ModelInputError(f"batch['action'] is {a.shape[-1]}-d but model.action_dim is "
                              f"{action_dim}; set model.action_dim: {a.shape[-1]}")
    c = chunk_size
    if a.shape[1] < c:
        raise ModelInputError(f"batch['action'] has chunks of {a.shape[1]} steps but model.chunk_size is {c}; "
                              f"load the data with chunk_size {c}")
    pad = batch.get("action_is_pad")
    if pad is not None:
        pad = torch.as_tensor(pad).to(device, non_blocking=True)
        if pad.ndim == 1:
            pad = pad.unsqueeze(1)  # (B, 1)
        pad = pad[:, :c].bool()  # (B, chunk)
    return a[:, :c], pad  # (B, chunk, A), (B, chunk)


def image_batch(img: Any) -> torch.Tensor:
    """An environment's image(s), uint8 (H, W, 3) / (B, H, W, 3) or channel-first -> float (B, 3, H, W) in [0, 1]."""
    x = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(img))
    if x.ndim == 3:
        x = x.unsqueeze(0)  # (1, H, W, 3) or (1, 3, H, W)
    if x.ndim != 4:
        raise ModelInputError(f"pixels have shape {tuple(x.shape)}; expected (H, W, 3) or (B, H, W, 3)")
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)  # (B, 3, H, W)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()  # (B, 3, H, W) in [0, 1]
