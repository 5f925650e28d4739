"""Projectors: vision tokens (B, N, Dv) -> language-model tokens (B, M, H).

    mlp          2-layer MLP per token (LLaVA-1.5): M = N
    fused-gelu-mlp  3-layer MLP per token (OpenVLA / Prismatic, for fused DINOv2 + SigLIP features): M = N
    attention    cross-attention pooling to ``num_tokens`` learned queries: M = num_tokens
    identity     none: the vision part already gives LM-width tokens (SmolVLM's connector, as SmolVLA uses it): M = N
    perceiver    Perceiver resampler (Flamingo): ``num_tokens`` latents refined by ``num_layers`` layers of
                 cross-attention over [visual tokens; latents] + feed-forward: M = num_tokens

Each has ``from_config(cfg, in_dim, out_dim)`` (what ``VLAModel`` calls). For scripts,
``VisionProjector(in_dim, out_dim, projector_type="attention", num_tokens=16)`` builds the chosen one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config.base import ConfigError
from ..config.model_config import ModelConfig
from ..registry import PROJECTORS
from .parts import part_config_class


class _ProjectorFactory(type):
    """Calling ``VisionProjector(...)`` itself builds the chosen projector; subclasses construct as usual."""

    def __call__(cls, *args: Any, **kwargs: Any):
        if cls is VisionProjector:
            return cls.create(*args, **kwargs)
        return super().__call__(*args, **kwargs)


class VisionProjector(nn.Module, metaclass=_ProjectorFactory):
    """Base of the projectors: ``forward(tokens (B, N, in_dim)) -> (B, M, out_dim)``.

    ``VisionProjector(in_dim, out_dim, projector_type="mlp" | "attention" | "perceiver", num_tokens=16,
    num_heads=4, num_layers=2)`` returns an ``MLPProjector``, ``AttentionProjector`` or ``PerceiverResampler``
    (any name in the PROJECTORS registry). ``num_tokens`` is None when the projector keeps N.
    """

    in_dim: int
    out_dim: int
    num_tokens: int | None = None

    @classmethod
    def create(cls, in_dim: int, out_dim: int, projector_type: str = "mlp", num_tokens: int = 16,
               num_heads: int = 4, num_layers: int = 2, dropout: float = 0.0) -> "VisionProjector":
        settings = dict(num_tokens=num_tokens, num_heads=num_heads, num_layers=num_layers)
        cls_ = part_config_class(PROJECTORS, projector_type) if projector_type in PROJECTORS else None
        own = cls_.field_names() if cls_ is not None else []  # an unknown name: the config names the choices
        cfg = ModelConfig(projector=projector_type, projection={k: v for k, v in settings.items() if k in own},
                          dropout=dropout)
        return PROJECTORS.get(projector_type).from_config(cfg, in_dim, out_dim)

    def output_tokens(self, n_in: int) -> int:
        """How many tokens come out for ``n_in`` visual tokens in."""
        return n_in if self.num_tokens is None else self.num_tokens


def _check_heads(dim: int, heads: int) -> None:
    if dim % heads:
        divisors = [h for h in (1, 2, 4, 8, 16) if dim % h == 0]
        raise ConfigError(f"model.projection.num_heads: {heads} does not divide the language model's hidden size "
                          f"{dim}; choose one of {divisors} (or another divisor of {dim})")


class _FeedForward(nn.Sequential):
    """Pre-norm feed-forward block: LayerNorm, Linear(D, 4D), GELU, Linear(4D, D)."""

    def __init__(self, dim: int, dropout: float = 0.0, mult: int = 4):
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, dim * mult), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(dim * mult, dim))


class MLPProjector(VisionProjector):
    """Two linear layers with a GELU between them (LLaVA-1.5 style), applied to every token."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    @classmethod
    def from_config(cls, cfg, in_dim: int, out_dim: int) -> "MLPProjector":
        return cls(in_dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)  # (B, N, Dv) -> (B, N, H)


class IdentityProjector(VisionProjector):
    """No projection: the vision part's tokens already have the LM's width (SmolVLA feeds SmolVLM's connector
    output straight to the LM)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        if in_dim != out_dim:
            raise ConfigError(f"model.projector: identity needs vision tokens of the LM's width, but the vision part "
                              f"gives {in_dim} and the LM is {out_dim} wide; use projector: mlp")
        self.in_dim, self.out_dim = in_dim, out_dim

    @classmethod
    def from_config(cls, cfg, in_dim: int, out_dim: int) -> "IdentityProjector":
        return cls(in_dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens  # (B, N, H)


class FusedGeluMLPProjector(VisionProjector):
    """OpenVLA's projector for fused vision features (Prismatic ``fused-gelu-mlp``), applied to every token:
    Linear(Dv, 4 Dv) -> GELU -> Linear(4 Dv, H) -> GELU -> Linear(H, H). Parameter names ``fc1 / fc2 / fc3``
    are OpenVLA's own (``projector.fc1.weight`` ... in its checkpoints)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.fc1 = nn.Linear(in_dim, 4 * in_dim)
        self.fc2 = nn.Linear(4 * in_dim, out_dim)
        self.fc3 = nn.Linear(out_dim, out_dim)
        self.act = nn.GELU()

    @classmethod
    def from_config(cls, cfg, in_dim: int, out_dim: int) -> "FusedGeluMLPProjector":
        return cls(in_dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act(self.fc2(self.act(self.fc1(tokens)))))  # (B, N, Dv) -> (B, N, H)


class AttentionProjector(VisionProjector):
    """Cross-attention pooling: ``num_tokens`` learned queries attend over the N visual tokens (one multi-head
    attention with a residual, then a feed-forward block and a linear map to the LM width). Gives a fixed
    number of LM tokens whatever N is: fewer tokens for the LM to read than the MLP's one per patch."""

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int = 16, num_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        _check_heads(out_dim, num_heads)
        self.in_dim, self.out_dim, self.num_tokens, self.num_heads = in_dim, out_dim, num_tokens, num_heads
        self.kv_norm = nn.LayerNorm(in_dim)
        self.kv_proj = nn.Linear(in_dim, out_dim)
        self.queries = nn.Parameter(torch.randn(num_tokens, out_dim) * 0.02)  # (M, H)
        self.q_norm = nn.LayerNorm(out_dim)
        self.attn = nn.MultiheadAttention(out_dim, num_heads, dropout=dropout, batch_first=True)
        self.ff = _FeedForward(out_dim, dropout)
        self.out = nn.Linear(out_dim, out_dim)

    @classmethod
    def from_config(cls, cfg, in_dim: int, out_dim: int) -> "AttentionProjector":
        return cls(in_dim, out_dim, num_tokens=cfg.projection.num_tokens, num_heads=cfg.projection.num_heads,
                   dropout=cfg.dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        kv = self.kv_proj(self.kv_norm(tokens))  # (B, N, H)
        q = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1).to(kv.dtype)  # (B, M, H)
        x = q + self.attn(self.q_norm(q), kv, kv, need_weights=False)[0]  # (B, M, H)
        x = x + self.ff(x)  # (B, M, H)
        return self.out(x)  # (B, M, H)


class PerceiverLayer(nn.Module):
    """One resampler layer: the latents attend over [visual tokens; latents], then a feed-forward block;
    both residual, inputs layer-normed (Flamingo's PerceiverAttention + FeedForward)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, bias=False, batch_first=True)
        self.ff = _FeedForward(dim, dropout)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x = self.norm_media(media)  # (B, N, D)
        lat = self.norm_latents(latents)  # (B, M, D)
        kv = torch.cat([x, lat], dim=1)  # (B, N + M, D)
        latents = latents + self.attn(lat, kv, kv, need_weights=False)[0]  # (B, M, D)
        return latents + self.ff(latents)  # (B, M, D)


class PerceiverResampler(VisionProjector):
    """Perceiver resampler (Flamingo, Alayrac et al. 2022): ``num_tokens`` learned latents, ``num_layers``
    layers of cross-attention over the concatenation [visual tokens; latents] plus feed-forward, a final
    LayerNorm. The visual tokens are first mapped to the LM width (as Idefics2 does), so the resampler works
    at the LM's size and its output goes to the LM as it is."""

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int = 16, num_layers: int = 2, num_heads: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        _check_heads(out_dim, num_heads)
        self.in_dim, self.out_dim, self.num_tokens = in_dim, out_dim, num_tokens
        self.num_layers, self.num_heads = num_layers, num_heads
        self.proj_in = nn.Linear(in_dim, out_dim)
        self.latents = nn.Parameter(torch.randn(num_tokens, out_dim) * 0.02)  # (M, H)
        self.layers = nn.ModuleList(PerceiverLayer(out_dim, num_heads, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(out_dim)

    @classmethod
    def from_config(cls, cfg, in_dim: int, out_dim: int) -> "PerceiverResampler":
        p = cfg.projection
        return cls(in_dim, out_dim, num_tokens=p.num_tokens, num_layers=p.num_layers, num_heads=p.num_heads,
                   dropout=cfg.dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        media = self.proj_in(tokens)  # (B, N, H)
        lat = self.latents.unsqueeze(0).expand(tokens.shape[0], -1, -1).to(media.dtype)  # (B, M, H)
        for layer in self.layers:
            lat = layer(media, lat)  # (B, M, H)
        return self.norm(lat)  # (B, M, H)
