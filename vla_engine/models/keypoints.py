"""A small CNN whose tokens are learned keypoints (spatial softmax, Levine et al. 2016; the standard
image encoder of robomimic and Diffusion Policy), made language-friendly: one token per keypoint.

    image (B, 3, S, S) + 2 coordinate channels --3 convs--> features F (B, C, S/4, S/4)
    K attention maps A_k = softmax over pixels of conv_k(F) / temperature      (B, K, HW)
    keypoint k: position p_k = sum A_k * (x, y)  and  feature f_k = sum A_k * F  (B, K, 2), (B, K, C)
    token k = Linear([p_k, f_k]) + embed_k                                       (B, K, D)

Positions are sub-pixel exact expectations, so a policy reads where things are far more precisely
than from pooled grid cells; the LM can then pick the keypoint the instruction names ("the red
block") by its feature. With ``model.vision.film`` the instruction scales and shifts the feature map before
the attention maps are taken (FiLM), so keypoints can lock onto the block the words name. At 96 px: a 24 x 24 map and ``vision.pool ** 2`` keypoints (36 by default, as
many tokens as the grid CNN gives).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .vision import VisionEncoder


class SpatialSoftmaxEncoder(VisionEncoder):
    name = "cnn-keypoints"

    def __init__(self, out_dim: int = 64, image_size: int = 96, num_keypoints: int = 16, channels: int = 64):
        super().__init__()
        self.out_dim, self.image_size, self.num_tokens = out_dim, image_size, num_keypoints
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(5, 32, 5, stride=2, padding=2), nn.GroupNorm(8, 32), nn.ReLU(inplace=True),
            nn.Conv2d(32, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(8, c), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(8, c), nn.ReLU(inplace=True),
        )
        self.attn = nn.Conv2d(c, num_keypoints, 1)  # one attention map per keypoint
        self.log_temp = nn.Parameter(torch.zeros(1))  # learned softmax temperature
        self.token = nn.Linear(2 + c, out_dim)
        self.embed = nn.Parameter(torch.randn(num_keypoints, out_dim) * 0.02)  # (K, D)
        self.film_channels = c  # FiLM: one (scale, shift) pair per channel of the last feature map

    @classmethod
    def from_config(cls, cfg, *, hf_config: Any = None, rebuild: bool = False) -> "SpatialSoftmaxEncoder":
        return cls(out_dim=cfg.vision.dim, image_size=cfg.image_size, num_keypoints=max(1, cfg.vision.pool) ** 2)

    def forward(self, images: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        """``film``: (B, 2 * C) per-channel (scale, shift) from the instruction, or None."""
        x = self.resize(images) * 2.0 - 1.0  # (B, 3, S, S) in [-1, 1]
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        feats = self.net(torch.cat([x, xs, ys], dim=1))  # (B, C, h', w')
        if film is not None:
            gamma, beta = film.chunk(2, dim=-1)  # (B, C), (B, C)
            feats = torch.relu(feats * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])  # (B, C, h', w')
        hh, ww = feats.shape[-2:]
        logits = self.attn(feats).flatten(2) / self.log_temp.exp()  # (B, K, HW)
        a = logits.softmax(dim=-1)  # (B, K, HW)
        gy, gx = torch.meshgrid(torch.linspace(-1, 1, hh, device=x.device, dtype=feats.dtype),
                                torch.linspace(-1, 1, ww, device=x.device, dtype=feats.dtype), indexing="ij")
        grid = torch.stack([gx.flatten(), gy.flatten()], dim=-1)  # (HW, 2)
        pos = a @ grid  # (B, K, 2) expected keypoint positions
        val = a @ feats.flatten(2).transpose(1, 2)  # (B, K, C) features at the keypoints
        return self.token(torch.cat([pos, val], dim=-1)) + self.embed  # (B, K, D)
