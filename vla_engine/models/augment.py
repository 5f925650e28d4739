"""Image operations of the VLA's input path: SmolVLA's aspect-keeping resize with padding, and DrQ's
random-shift augmentation (applied to training batches only, ``model.random_shift`` pixels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pad_resize", "random_shift"]


def pad_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """SmolVLA's ``resize_with_pad``: resize (N, C, H, W) keeping the aspect ratio (bilinear) so the longer
    side is ``size``, then pad with 0 at the left / top to (N, C, size, size)."""
    h, w = images.shape[-2:]
    ratio = max(w / size, h / size)
    rh, rw = int(h / ratio), int(w / ratio)
    out = F.interpolate(images, size=(rh, rw), mode="bilinear", align_corners=False)  # (N, C, rh, rw)
    return F.pad(out, (max(0, size - rw), 0, max(0, size - rh), 0), value=0.0)  # (N, C, size, size)


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ-style augmentation: shift each image by up to ``pad`` pixels (edges replicated). (N, C, H, W)."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")  # (N, C, H+2p, W+2p)
    eps_h, eps_w = 1.0 / (h + 2 * pad), 1.0 / (w + 2 * pad)
    ar_h = torch.linspace(-1.0 + eps_h, 1.0 - eps_h, h + 2 * pad, device=images.device)[:h]
    ar_w = torch.linspace(-1.0 + eps_w, 1.0 - eps_w, w + 2 * pad, device=images.device)[:w]
    base = torch.stack(torch.meshgrid(ar_h, ar_w, indexing="ij")[::-1], dim=-1)  # (H, W, 2) as (x, y)
    shift = torch.randint(0, 2 * pad + 1, (n, 1, 1, 2), device=images.device, dtype=images.dtype)
    shift = shift * torch.tensor([2.0 / (w + 2 * pad), 2.0 / (h + 2 * pad)], device=images.device)
    grid = base.unsqueeze(0).to(images.dtype) + shift  # (N, H, W, 2)
    return F.grid_sample(padded, grid, padding_mode="zeros", align_corners=False)  # (N, C, H, W)
