"""Feature normalisation kept inside the model (saved with its weights).

A ``Normalizer`` holds mean/std and min/max buffers for one feature (state or action). The model
normalises its inputs and training targets and un-normalises its predictions, so a policy maps
raw observations to raw actions.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

import numpy as np
import torch
from torch import nn

NormMode = Literal["mean_std", "min_max", "none"]


class NormalizationError(ValueError):
    """Statistics that do not fit the model (wrong keys or sizes). One-line message."""


def _as_tensor(value: Any, name: str, dim: int) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu", torch.float32).reshape(-1)
    else:
        t = torch.tensor(np.asarray(value, dtype=np.float32)).reshape(-1)
    if t.numel() != dim:
        raise NormalizationError(f"normalisation stats {name} have {t.numel()} values but the model expects {dim}; "
                                 f"compute the stats on data with the model's dimensions")
    if not torch.isfinite(t).all():
        raise NormalizationError(f"normalisation stats {name} contain NaN or inf; recompute the dataset stats")
    return t


class Normalizer(nn.Module):
    """Normalises a (..., dim) feature with mean/std (-> zero mean, unit std) or min/max (-> [-1, 1])."""

    def __init__(self, dim: int, mode: NormMode = "mean_std", eps: float = 1e-6):
        super().__init__()
        self.dim, self.mode, self.eps = dim, mode, eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("min", -torch.ones(dim))
        self.register_buffer("max", torch.ones(dim))
        self.register_buffer("is_set", torch.zeros((), dtype=torch.bool))

    def set_stats(self, stats: Mapping[str, Any], name: str = "feature") -> None:
        """Copy ``mean``/``std`` and/or ``min``/``max`` from ``stats`` (tensors, arrays or lists)."""
        need = {"mean_std": ("mean", "std"), "min_max": ("min", "max"), "none": ()}[self.mode]
        missing = [k for k in need if k not in stats]
        if missing:
            raise NormalizationError(f"normalisation stats for {name} lack {', '.join(missing)} "
                                     f"(needed by normalization: {self.mode}); have {', '.join(stats) or 'nothing'}")
        with torch.no_grad():
            for key in ("mean", "std", "min", "max"):
                if key in stats:
                    getattr(self, key).copy_(_as_tensor(stats[key], f"{name}.{key}", self.dim))
            self.is_set.fill_(True)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "mean_std":
            return (x - self.mean) / self.std.clamp_min(self.eps)  # (..., dim)
        if self.mode == "min_max":
            return 2.0 * (x - self.min) / (self.max - self.min).clamp_min(self.eps) - 1.0  # (..., dim)
        return x

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "mean_std":
            return x * self.std.clamp_min(self.eps) + self.mean  # (..., dim)
        if self.mode == "min_max":
            return (x + 1.0) * 0.5 * (self.max - self.min).clamp_min(self.eps) + self.min  # (..., dim)
        return x

    def extra_repr(self) -> str:
        return f"dim={self.dim}, mode={self.mode}"
