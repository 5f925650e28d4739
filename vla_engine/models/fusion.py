"""Fusion of per-modality features (camera/VLM, lidar, radar, IMU) into one feature for the action head.

Every fusion takes a list of modality features ``[(B, D_1), (B, D_2), ...]`` (the first is the query modality,
in ``MultiSensorVLA`` the camera/VLM feature) and an optional ``present`` mask (B, M) bool (False = that sensor
gave nothing this step), and returns (B, output_dim):

* ``SensorFusion(feature_dim, num_heads)``: project each modality to ``feature_dim``, add a modality embedding,
  concatenate as tokens with a learned summary token, self-attention; the summary token is the output.
* ``CrossModalFusion(query_dim, key_dim, num_heads)``: the first modality queries the others (projected to
  ``key_dim``) with cross-attention, residual + feed-forward.
* ``HierarchicalFusion(feature_dim, num_spatial_layers, num_temporal_layers)``: self-attention across
  modalities within each time step (spatial), then causal self-attention over time steps (temporal); takes
  ``(B, T, D_i)`` inputs for a history, or ``(B, D_i)`` as one step; the output is the last step.
* ``GatedFusion(modality_dims, output_dim)``: project each modality, a gate network over all of them gives
  softmax weights (B, M) (``last_weights`` keeps them, ``forward(..., return_weights=True)`` returns them);
  the output is the weighted sum. A corrupted sensor can be down-weighted per sample.

``modality_dims`` tells a fusion what it is given; each keeps its constructor arguments in ``spec`` so a model
rebuilds it by its ``FUSIONS`` registry name.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["Fusion", "SensorFusion", "CrossModalFusion", "HierarchicalFusion", "GatedFusion", "FusionInputError"]


class FusionInputError(ValueError):
    """Features given to a fusion do not fit it (count or sizes). One-line message."""


class Fusion(nn.Module):
    """Base: keeps ``spec`` and checks the modality features against ``modality_dims``."""

    name = "fusion"
    output_dim: int
    modality_dims: list[int]

    def __init__(self, **spec: Any):
        super().__init__()
        self.spec = dict(spec)

    def _check(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        feats = list(feats)
        dims = [int(f.shape[-1]) for f in feats]
        if dims != list(self.modality_dims):
            raise FusionInputError(f"{type(self).__name__} was built for modality sizes {self.modality_dims} but got "
                                   f"{dims}; build it with modality_dims={dims}")
        return feats

    @staticmethod
    def _present(present: torch.Tensor | None, b: int, m: int, device: torch.device) -> torch.Tensor:
        if present is None:
            return torch.ones(b, m, dtype=torch.bool, device=device)
        return present.to(device).bool()


def _encoder(dim: int, heads: int, layers: int) -> nn.ModuleList:
    return nn.ModuleList(nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True,
                                                    norm_first=True) for _ in range(layers))


def _pad_mask(keep: torch.Tensor) -> torch.Tensor:
    """(B, N) bool keep -> additive float key-padding mask (0 keep, -inf drop)."""
    return torch.zeros(keep.shape, device=keep.device).masked_fill(~keep, float("-inf"))


class SensorFusion(Fusion):
    """Concatenate the modalities as tokens (+ a summary token) and run self-attention over them."""

    def __init__(self, feature_dim: int = 512, num_heads: int = 8, num_layers: int = 1,
                 modality_dims: Sequence[int] | None = None):
        dims = list(modality_dims) if modality_dims is not None else [feature_dim]
        super().__init__(feature_dim=feature_dim, num_heads=num_heads, num_layers=num_layers, modality_dims=dims)
        self.modality_dims, self.output_dim = dims, int(feature_dim)
        self.proj = nn.ModuleList(nn.Linear(d, feature_dim) for d in dims)
        self.modality_embed = nn.Parameter(torch.randn(len(dims), feature_dim) * 0.02)  # (M, D)
        self.summary = nn.Parameter(torch.randn(1, 1, feature_dim) * 0.02)  # (1, 1, D)
        self.layers = _encoder(feature_dim, num_heads, num_layers)
        self.norm = nn.LayerNorm(feature_dim)

    def forward(self, feats: Sequence[torch.Tensor], present: torch.Tensor | None = None) -> torch.Tensor:
        feats = self._check(feats)
        tok = torch.stack([p(f) for p, f in zip(self.proj, feats)], dim=1) + self.modality_embed  # (B, M, D)
        b, m = tok.shape[:2]
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=tok.device),
                          self._present(present, b, m, tok.device)], dim=1)  # (B, 1+M)
        x = torch.cat([self.summary.expand(b, -1, -1), tok], dim=1)  # (B, 1+M, D)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=_pad_mask(keep))
        return self.norm(x[:, 0])  # (B, D)


class CrossModalFusion(Fusion):
    """The first modality (query, ``query_dim``) attends to the others, each projected to ``key_dim``."""

    def __init__(self, query_dim: int = 512, key_dim: int = 256, num_heads: int = 8,
                 modality_dims: Sequence[int] | None = None):
        dims = list(modality_dims) if modality_dims is not None else [query_dim, key_dim]
        super().__init__(query_dim=query_dim, key_dim=key_dim, num_heads=num_heads, modality_dims=dims)
        if len(dims) < 2:
            raise FusionInputError("CrossModalFusion needs a query modality and at least one other")
        self.modality_dims, self.output_dim = dims, int(query_dim)
        self.q_in = nn.Linear(dims[0], query_dim) if dims[0] != query_dim else nn.Identity()
        self.k_in = nn.ModuleList(nn.Linear(d, key_dim) for d in dims[1:])
        self.modality_embed = nn.Parameter(torch.randn(len(dims) - 1, key_dim) * 0.02)  # (M-1, Dk)
        self.norm_q, self.norm_k = nn.LayerNorm(query_dim), nn.LayerNorm(key_dim)
        self.attn = nn.MultiheadAttention(query_dim, num_heads, kdim=key_dim, vdim=key_dim, batch_first=True)
        self.ff = nn.Sequential(nn.LayerNorm(query_dim), nn.Linear(query_dim, 2 * query_dim), nn.GELU(),
                                nn.Linear(2 * query_dim, query_dim))

    def forward(self, feats: Sequence[torch.Tensor], present: torch.Tensor | None = None) -> torch.Tensor:
        feats = self._check(feats)
        q = self.q_in(feats[0])[:, None]  # (B, 1, Dq)
        kv = torch.stack([p(f) for p, f in zip(self.k_in, feats[1:])], dim=1) + self.modality_embed  # (B, M-1, Dk)
        b, m = kv.shape[:2]
        keep = self._present(present, b, m + 1, q.device)[:, 1:]  # (B, M-1)
        none = ~keep.any(dim=1)  # nothing to attend to: the query passes through
        keep = keep.clone()
        keep[none, 0] = True
        att, _ = self.attn(self.norm_q(q), self.norm_k(kv), self.norm_k(kv), key_padding_mask=~keep)  # (B, 1, Dq)
        att = att.masked_fill(none[:, None, None], 0.0)
        x = q + att
        return (x + self.ff(x))[:, 0]  # (B, Dq)


class HierarchicalFusion(Fusion):
    """Spatial self-attention across modalities per time step, then causal temporal attention across steps."""

    def __init__(self, feature_dim: int = 512, num_spatial_layers: int = 2, num_temporal_layers: int = 2,
                 num_heads: int = 8, max_steps: int = 16, modality_dims: Sequence[int] | None = None):
        dims = list(modality_dims) if modality_dims is not None else [feature_dim]
        super().__init__(feature_dim=feature_dim, num_spatial_layers=num_spatial_layers,
                         num_temporal_layers=num_temporal_layers, num_heads=num_heads, max_steps=max_steps,
                         modality_dims=dims)
        self.modality_dims, self.output_dim, self.max_steps = dims, int(feature_dim), int(max_steps)
        self.proj = nn.ModuleList(nn.Linear(d, feature_dim) for d in dims)
        self.modality_embed = nn.Parameter(torch.randn(len(dims), feature_dim) * 0.02)  # (M, D)
        self.time_embed = nn.Parameter(torch.randn(max_steps, feature_dim) * 0.02)  # (T, D)
        self.spatial = _encoder(feature_dim, num_heads, num_spatial_layers)
        self.temporal = _encoder(feature_dim, num_heads, num_temporal_layers)
        self.norm = nn.LayerNorm(feature_dim)

    def forward(self, feats: Sequence[torch.Tensor], present: torch.Tensor | None = None) -> torch.Tensor:
        feats = self._check(feats)
        feats = [f[:, None] if f.ndim == 2 else f for f in feats]  # (B, T, D_i)
        t = feats[0].shape[1]
        if t > self.max_steps:
            raise FusionInputError(f"HierarchicalFusion got {t} time steps; build it with max_steps >= {t}")
        tok = torch.stack([p(f) for p, f in zip(self.proj, feats)], dim=2) + self.modality_embed  # (B, T, M, D)
        b, _, m, d = tok.shape
        keep = self._present(present, b, m, tok.device)  # (B, M)
        keep = keep.clone()
        keep[~keep.any(dim=1), 0] = True  # at least one token per step
        x = tok.reshape(b * t, m, d)  # (B*T, M, D)
        mask = _pad_mask(keep.repeat_interleave(t, dim=0))  # (B*T, M)
        for layer in self.spatial:
            x = layer(x, src_key_padding_mask=mask)
        w = (mask == 0).float()[..., None]  # (B*T, M, 1)
        step = ((x * w).sum(1) / w.sum(1)).view(b, t, d) + self.time_embed[:t]  # (B, T, D)
        causal = torch.triu(torch.full((t, t), float("-inf"), device=x.device), diagonal=1)  # (T, T)
        for layer in self.temporal:
            step = layer(step, src_mask=causal)
        return self.norm(step[:, -1])  # (B, D)


class GatedFusion(Fusion):
    """Learned per-sample modality weights: ``w = softmax(gate([proj_1(f_1), ..., proj_M(f_M)]))`` (B, M),
    ``out = sum_i w_i * proj_i(f_i)``. An absent modality gets weight 0."""

    def __init__(self, modality_dims: Sequence[int] = (512, 256, 128), output_dim: int = 512, hidden_dim: int = 256):
        dims = [int(d) for d in modality_dims]
        super().__init__(modality_dims=dims, output_dim=output_dim, hidden_dim=hidden_dim)
        self.modality_dims, self.output_dim = dims, int(output_dim)
        self.proj = nn.ModuleList(nn.Sequential(nn.Linear(d, output_dim), nn.LayerNorm(output_dim)) for d in dims)
        self.gate = nn.Sequential(nn.Linear(len(dims) * output_dim, hidden_dim), nn.GELU(),
                                  nn.Linear(hidden_dim, len(dims)))
        self.last_weights: torch.Tensor | None = None  # (B, M) of the latest forward, detached

    def weights(self, feats: Sequence[torch.Tensor], present: torch.Tensor | None = None) -> torch.Tensor:
        """The per-modality weights (B, M) (sum to one over the present modalities)."""
        return self.forward(feats, present, return_weights=True)[1]

    def forward(self, feats: Sequence[torch.Tensor], present: torch.Tensor | None = None,
                return_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        feats = self._check(feats)
        proj = torch.stack([p(f) for p, f in zip(self.proj, feats)], dim=1)  # (B, M, D)
        b, m = proj.shape[:2]
        keep = self._present(present, b, m, proj.device)  # (B, M)
        logits = self.gate(proj.flatten(1)).masked_fill(~keep, float("-inf"))  # (B, M)
        w = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # (B, M)
        out = (w[..., None] * proj).sum(1)  # (B, D)
        self.last_weights = w.detach()
        return (out, w) if return_weights else out
