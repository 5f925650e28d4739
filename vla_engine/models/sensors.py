"""Sensor encoders for driving: lidar point clouds, radar targets, IMU sequences -> one feature vector each.

Every encoder maps a padded batch and its mask to (B, output_dim):

* ``PointNetEncoder``       points (B, N, C) + mask (B, N) -> shared per-point MLP -> masked max-pool
* ``PointTransformerEncoder`` points (B, N, C) + mask -> local attention over each point's k nearest valid
  neighbours (relative-position bias, as Point Transformer) -> masked max + mean pool
* ``RadarEncoder``          targets (B, N, 4) (range, azimuth, radial velocity, rcs) + mask -> per-target MLP
  -> masked max-pool; or a range-azimuth grid (B, C, H, W) -> a small CNN
* ``IMUEncoder``            samples (B, T, 6) (accelerometer, gyro) + mask -> transformer encoder -> masked mean

Padding never changes a feature: every op is per point or masked, so a cloud gives the same features in any
padded batch (tests check it). Clouds of different sizes are batched with :func:`pad_point_clouds`.

Each encoder keeps its constructor arguments in ``spec`` (JSON-able) so a model saves its encoders by name
(``SENSOR_ENCODERS`` registry key) and rebuilds them on load. Every encoder also reads its input straight from
a batch dict: ``encoder.encode_batch(batch, key)`` takes ``batch[key]`` and ``batch[key + "_mask"]``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SensorEncoder", "PointNetEncoder", "PointTransformerEncoder", "RadarEncoder", "IMUEncoder",
           "pad_point_clouds", "SensorInputError"]


class SensorInputError(ValueError):
    """A sensor input does not fit its encoder (wrong channels, shape). One-line message."""


def pad_point_clouds(clouds: Sequence[Any], max_points: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Clouds of different sizes ``[(N_i, C), ...]`` -> ``points (B, N, C)`` zero-padded and ``mask (B, N)`` bool
    (True = a real point). ``max_points`` cuts longer clouds (their first points are kept)."""
    arrs = [torch.as_tensor(np.asarray(c, dtype=np.float32)) for c in clouds]
    if not arrs:
        raise SensorInputError("pad_point_clouds got no clouds; give at least one (N, C) array")
    c = arrs[0].shape[-1] if arrs[0].ndim == 2 else 0
    for a in arrs:
        if a.ndim != 2 or a.shape[-1] != c:
            raise SensorInputError(f"every cloud must be (N, {c}); got {tuple(a.shape)}")
    n = max(max(a.shape[0] for a in arrs), 1)
    if max_points is not None:
        n = min(n, max_points)
    pts = torch.zeros(len(arrs), n, c)
    mask = torch.zeros(len(arrs), n, dtype=torch.bool)
    for i, a in enumerate(arrs):
        k = min(a.shape[0], n)
        pts[i, :k] = a[:k]
        mask[i, :k] = True
    return pts, mask  # (B, N, C), (B, N)


def _masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over dim 1 of (B, N, D) where mask (B, N); rows with no valid entry give zeros."""
    x = x.masked_fill(~mask[..., None], float("-inf"))
    out = x.max(dim=1).values  # (B, D)
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask[..., None].to(x.dtype)  # (B, N, 1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, D)


class SensorEncoder(nn.Module):
    """Base: remembers its constructor arguments (``spec``) and reads its input from a batch."""

    name = "sensor"
    output_dim: int
    input_ndim = 3  # (B, N, C) by default

    def __init__(self, **spec: Any):
        super().__init__()
        self.spec = dict(spec)

    def _check(self, x: torch.Tensor, mask: torch.Tensor | None, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim == 2:  # one unbatched cloud
            x = x.unsqueeze(0)
            mask = mask.unsqueeze(0) if mask is not None else None
        if x.ndim != 3 or x.shape[-1] < channels:
            raise SensorInputError(f"{type(self).__name__} takes (B, N, {channels}) inputs; got {tuple(x.shape)}")
        x = x[..., :channels].float()
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return x, mask.to(x.device).bool()

    def encode_batch(self, batch: Mapping[str, Any], key: str, device: torch.device | None = None) -> torch.Tensor:
        """Encode ``batch[key]`` with its mask ``batch[key + "_mask"]`` (all valid when absent): (B, output_dim)."""
        if key not in batch:
            have = ", ".join(k for k in batch if k.startswith("observation.")) or "none"
            raise SensorInputError(f"the batch has no {key!r} for the {type(self).__name__}; it has: {have}")
        x = batch[key]
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
        mask = batch.get(key + "_mask")
        if mask is not None and not isinstance(mask, torch.Tensor):
            mask = torch.as_tensor(np.asarray(mask, dtype=bool))
        if device is not None:
            x = x.to(device)
            mask = mask.to(device) if mask is not None else None
        return self(x, mask)


class PointNetEncoder(SensorEncoder):
    """PointNet: a shared MLP on every point, then a masked max-pool (order- and padding-invariant)."""

    def __init__(self, output_dim: int = 512, input_dim: int = 4, hidden_dims: Sequence[int] = (64, 128, 256)):
        super().__init__(output_dim=output_dim, input_dim=input_dim, hidden_dims=list(hidden_dims))
        self.output_dim, self.input_dim = int(output_dim), int(input_dim)
        layers: list[nn.Module] = []
        d = self.input_dim
        for h in hidden_dims:
            layers += [nn.Linear(d, h), nn.LayerNorm(h), nn.GELU()]
            d = h
        self.point_mlp = nn.Sequential(*layers)
        self.out = nn.Sequential(nn.Linear(d, self.output_dim), nn.LayerNorm(self.output_dim))

    def forward(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x, mask = self._check(points, mask, self.input_dim)  # (B, N, C), (B, N)
        feats = self.point_mlp(x)  # (B, N, D)
        return self.out(_masked_max(feats, mask))  # (B, output_dim)


class _LocalAttention(nn.Module):
    """One Point Transformer block: each point attends to its k nearest valid neighbours, with a learned bias
    from the relative position (B, N, k, 3) -> (B, N, D)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.h = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.pos = nn.Sequential(nn.Linear(3, dim), nn.GELU(), nn.Linear(dim, dim))
        self.proj = nn.Linear(dim, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, xyz: torch.Tensor, idx: torch.Tensor, nmask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        k = idx.shape[-1]
        q, kk, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)  # 3 x (B, N, D)
        gather = idx.reshape(b, n * k)  # (B, N*k)

        def nb(t: torch.Tensor) -> torch.Tensor:
            return torch.gather(t, 1, gather[..., None].expand(-1, -1, t.shape[-1])).view(b, n, k, t.shape[-1])

        rel = self.pos(xyz[:, :, None, :] - nb(xyz))  # (B, N, k, D)
        kn, vn = nb(kk) + rel, nb(v) + rel  # (B, N, k, D)
        hd = d // self.h
        logits = (q.view(b, n, 1, self.h, hd) * kn.view(b, n, k, self.h, hd)).sum(-1) / hd ** 0.5  # (B, N, k, h)
        logits = logits.masked_fill(~nmask[..., None], float("-inf"))
        w = torch.softmax(logits, dim=2).nan_to_num(0.0)  # (B, N, k, h)
        out = (w[..., None] * vn.view(b, n, k, self.h, hd)).sum(2).reshape(b, n, d)  # (B, N, D)
        x = x + self.proj(out)
        return x + self.ff(self.norm2(x))  # (B, N, D)


class PointTransformerEncoder(SensorEncoder):
    """Point Transformer: per-point embedding, ``num_layers`` blocks of local attention over the ``k`` nearest
    valid neighbours (padding is never a neighbour), then masked max + mean pooling."""

    def __init__(self, output_dim: int = 512, input_dim: int = 4, dim: int = 64, k: int = 16, num_layers: int = 2,
                 num_heads: int = 4):
        super().__init__(output_dim=output_dim, input_dim=input_dim, dim=dim, k=k, num_layers=num_layers,
                         num_heads=num_heads)
        if dim % num_heads:
            raise SensorInputError(f"PointTransformerEncoder dim {dim} must be divisible by num_heads {num_heads}")
        self.output_dim, self.input_dim, self.k = int(output_dim), int(input_dim), int(k)
        self.embed = nn.Sequential(nn.Linear(self.input_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList(_LocalAttention(dim, num_heads) for _ in range(num_layers))
        self.out = nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, self.output_dim))

    def neighbours(self, xyz: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices (B, N, k) of each point's k nearest valid points and their validity (B, N, k)."""
        d = torch.cdist(xyz, xyz)  # (B, N, N)
        d = d.masked_fill(~mask[:, None, :], float("inf"))
        k = min(self.k, xyz.shape[1])
        dist, idx = d.topk(k, dim=-1, largest=False)  # (B, N, k)
        return idx, torch.isfinite(dist)

    def forward(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x, mask = self._check(points, mask, self.input_dim)  # (B, N, C), (B, N)
        xyz = x[..., :3]
        idx, nmask = self.neighbours(xyz, mask)  # (B, N, k), (B, N, k)
        h = self.embed(x)  # (B, N, D)
        for blk in self.blocks:
            h = blk(h, xyz, idx, nmask)  # (B, N, D)
        pooled = torch.cat([_masked_max(h, mask), _masked_mean(h, mask)], dim=-1)  # (B, 2D)
        return self.out(pooled)  # (B, output_dim)


class RadarEncoder(SensorEncoder):
    """Radar: a sparse target list (B, N, 4) = (range, azimuth, radial velocity, rcs) with a mask through a
    per-target MLP and a masked max-pool (plus the target count); or, with ``grid_channels`` set, a
    range-azimuth grid (B, C, H, W) through a small CNN."""

    def __init__(self, output_dim: int = 256, input_dim: int = 4, hidden_dim: int = 128,
                 grid_channels: int | None = None, max_range: float = 60.0):
        super().__init__(output_dim=output_dim, input_dim=input_dim, hidden_dim=hidden_dim,
                         grid_channels=grid_channels, max_range=max_range)
        self.output_dim, self.input_dim, self.max_range = int(output_dim), int(input_dim), float(max_range)
        # targets -> (range/max, cos az, sin az, v, rcs...) so the azimuth wraps and the range is O(1)
        self.target_mlp = nn.Sequential(nn.Linear(self.input_dim + 1, hidden_dim), nn.LayerNorm(hidden_dim), nn.GELU(),
                                        nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.GELU())
        self.out = nn.Sequential(nn.Linear(hidden_dim + 1, self.output_dim), nn.LayerNorm(self.output_dim))
        self.grid = None
        if grid_channels:
            self.grid = nn.Sequential(
                nn.Conv2d(grid_channels, 32, 3, stride=2, padding=1), nn.GELU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GELU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, self.output_dim))

    def forward(self, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if targets.ndim == 4:  # a range-azimuth grid
            if self.grid is None:
                raise SensorInputError("RadarEncoder got a (B, C, H, W) grid; build it with grid_channels=C")
            return self.grid(targets.float())  # (B, output_dim)
        x, mask = self._check(targets, mask, self.input_dim)  # (B, N, 4), (B, N)
        rng, az = x[..., :1] / self.max_range, x[..., 1:2]
        feats = torch.cat([rng, torch.cos(az), torch.sin(az), x[..., 2:]], dim=-1)  # (B, N, C+1)
        h = self.target_mlp(feats)  # (B, N, D)
        count = mask.float().sum(1, keepdim=True) / 16.0  # (B, 1)
        return self.out(torch.cat([_masked_max(h, mask), count], dim=-1))  # (B, output_dim)


class IMUEncoder(SensorEncoder):
    """IMU: (B, T, 6) accelerometer + gyro samples (at the IMU's rate, several per camera frame) through a small
    transformer encoder with learned positions; masked mean over the valid samples."""

    def __init__(self, output_dim: int = 128, input_dim: int = 6, d_model: int = 64, num_layers: int = 2,
                 num_heads: int = 4, max_len: int = 64):
        super().__init__(output_dim=output_dim, input_dim=input_dim, d_model=d_model, num_layers=num_layers,
                         num_heads=num_heads, max_len=max_len)
        self.output_dim, self.input_dim, self.max_len = int(output_dim), int(input_dim), int(max_len)
        self.inp = nn.Linear(self.input_dim, d_model)
        self.pos = nn.Parameter(torch.randn(max_len, d_model) * 0.02)  # (L, D)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, num_heads, 2 * d_model, dropout=0.0, batch_first=True,
                                       norm_first=True) for _ in range(num_layers))
        self.out = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, self.output_dim))

    def forward(self, samples: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x, mask = self._check(samples, mask, self.input_dim)  # (B, T, 6), (B, T)
        if x.shape[1] > self.max_len:  # keep the latest samples
            x, mask = x[:, -self.max_len:], mask[:, -self.max_len:]
        h = self.inp(x) + self.pos[: x.shape[1]]  # (B, T, D)
        pad = ~mask
        empty = pad.all(dim=1)  # rows with no sample: attend to position 0 so softmax stays finite
        pad = pad.clone()
        pad[empty, 0] = False
        for layer in self.layers:
            # the math path (not the fused fast path) so padded and unpadded batches compute alike
            h = layer(h, src_key_padding_mask=pad.float().masked_fill(pad, float("-inf")))
        out = self.out(_masked_mean(h, mask))  # (B, output_dim)
        return out.masked_fill(empty[:, None], 0.0)
