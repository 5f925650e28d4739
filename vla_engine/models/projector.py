"""Projectors: vision tokens (B, N, Dv) -> language-model tokens (B, N, H)."""

from __future__ import annotations

import torch
from torch import nn


class MLPProjector(nn.Module):
    """Two linear layers with a GELU between them (LLaVA-1.5 style)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    @classmethod
    def from_config(cls, cfg, in_dim: int, out_dim: int) -> "MLPProjector":
        return cls(in_dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)  # (B, N, Dv) -> (B, N, H)
