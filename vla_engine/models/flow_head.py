"""A flow-matching action expert (as in pi0 and SmolVLA): a small transformer that turns noise into an
action chunk by integrating a learned velocity field, attending to the VLM's hidden states.

Training (rectified flow, SmolVLA's convention): for a chunk ``a`` (B, C, A), noise ``e`` and a time
``t ~ Beta(1.5, 1) * 0.999 + 0.001``, the noisy chunk is ``x_t = t * e + (1 - t) * a`` and the expert
regresses the velocity ``u = e - a``. Inference: start at ``x_1 = e`` and take ``num_steps`` Euler
steps ``x <- x - dt * v(x, t)`` down to t = 0.

The expert: the C noisy actions become C tokens (linear + time embedding); ``num_layers`` blocks of
self-attention over them and cross-attention to the LM context (``capabilities.inputs == "tokens"``), then a linear map
back to actions. Without context (a bare feature vector), the feature is the one context token.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .configuration_heads import FlowHeadConfig
from .heads import ActionHead, HeadError, masked_action_loss


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1]: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half, 1))
    ang = t.float()[:, None] * 1000.0 * freqs[None]  # (B, half)
    emb = torch.cat([ang.sin(), ang.cos()], dim=-1)  # (B, 2*half)
    return nn.functional.pad(emb, (0, dim - emb.shape[-1]))  # (B, dim)


class FlowMatchingActionHead(ActionHead):
    """Flow-matching action expert over a chunk (see the module docstring).

    Args: ``action_dim``, ``chunk_size``, ``hidden_dim`` (expert width), ``num_layers``, ``num_heads``,
    ``num_steps`` (Euler steps at inference, SmolVLA uses 10), ``dropout``.
    """

    name = "flow"
    config_class = FlowHeadConfig
    capabilities = FlowHeadConfig.capabilities

    def __init__(self, action_dim: int = 7, chunk_size: int = 16, hidden_dim: int = 256, num_layers: int = 2,
                 num_heads: int = 4, num_steps: int = 10, dropout: float = 0.0, input_dim: int | None = None):
        if hidden_dim < 2 or hidden_dim % num_heads:
            raise HeadError(f"FlowMatchingActionHead hidden_dim ({hidden_dim}) must be even and divisible by "
                            f"num_heads ({num_heads})")
        if num_layers < 1 or num_steps < 1:
            raise HeadError(f"FlowMatchingActionHead needs num_layers >= 1 and num_steps >= 1, got {num_layers}, "
                            f"{num_steps}")
        self.hidden_dim, self.num_layers, self.num_heads = hidden_dim, num_layers, num_heads
        self.num_steps, self.dropout = num_steps, dropout
        super().__init__(action_dim, chunk_size, input_dim)

    def configure_sampling(self, num_inference_steps: int | None = None) -> None:
        """Euler steps of ``predict`` (training is unchanged)."""
        if num_inference_steps is not None:
            if int(num_inference_steps) < 1:
                raise HeadError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
            self.num_steps = int(num_inference_steps)

    def _build(self, input_dim: int) -> None:
        h = self.hidden_dim
        self.action_in = nn.Linear(self.action_dim, h)
        self.time_mlp = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h))
        self.pos = nn.Parameter(torch.randn(self.chunk_size, h) * 0.02)  # (C, H)
        self.ctx_in = nn.Linear(input_dim, h)
        layer = nn.TransformerDecoderLayer(h, self.num_heads, 4 * h, self.dropout, batch_first=True, norm_first=True,
                                           activation="gelu")
        self.blocks = nn.TransformerDecoder(layer, self.num_layers)
        self.norm = nn.LayerNorm(h)
        self.action_out = nn.Linear(h, self.action_dim)

    @classmethod
    def from_config(cls, cfg: Any, input_dim: int | None = None) -> "FlowMatchingActionHead":
        h = cfg.head
        return cls(action_dim=cfg.action_dim, chunk_size=cfg.chunk_size, hidden_dim=h.hidden_dim,
                   num_layers=h.num_layers, num_heads=h.num_heads, num_steps=h.num_inference_steps,
                   dropout=cfg.dropout, input_dim=input_dim)

    def config_fields(self) -> dict[str, Any]:
        return {**super().config_fields(), "dropout": self.dropout}

    def head_settings(self) -> dict[str, Any]:
        return {"hidden_dim": self.hidden_dim, "num_layers": self.num_layers, "num_heads": self.num_heads,
                "num_inference_steps": self.num_steps}

    # -- the velocity field ----------------------------------------------------------------------
    def velocity(self, x: torch.Tensor, t: torch.Tensor, features: torch.Tensor,
                 context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """v(x_t, t | observation): x (B, C, A), t (B,) -> (B, C, A)."""
        self._check_ready(features)
        mem = features.unsqueeze(1) if context is None else context  # (B, N, D)
        mem = self.ctx_in(mem.to(self.ctx_in.weight.dtype))  # (B, N, H)
        pad = None if context_mask is None or context is None else ~context_mask.bool()  # (B, N) True = ignore
        tok = self.action_in(x) + self.pos  # (B, C, H)
        tok = tok + self.time_mlp(time_embedding(t, self.hidden_dim)).unsqueeze(1)  # (B, C, H)
        out = self.blocks(tok, mem, memory_key_padding_mask=pad)  # (B, C, H)
        return self.action_out(self.norm(out))  # (B, C, A)

    def compute_loss(self, features: torch.Tensor, actions: torch.Tensor, action_is_pad: torch.Tensor | None = None,
                     context: torch.Tensor | None = None,
                     context_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        b = actions.shape[0]
        noise = torch.randn_like(actions)  # (B, C, A)
        t = torch.distributions.Beta(1.5, 1.0).sample((b,)).to(actions.device) * 0.999 + 0.001  # (B,)
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions  # (B, C, A)
        v = self.velocity(x_t, t, features, context, context_mask)  # (B, C, A)
        loss = masked_action_loss(v, noise - actions, action_is_pad, "mse")
        return loss, {"flow_mse": float(loss.detach())}

    @torch.no_grad()
    def sample(self, features: torch.Tensor, context: torch.Tensor | None = None,
               context_mask: torch.Tensor | None = None, num_steps: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Euler integration from noise (t = 1) to an action chunk (t = 0): (B, C, A) normalised."""
        n = int(num_steps or self.num_steps)
        b = features.shape[0]
        x = torch.randn(b, self.chunk_size, self.action_dim, generator=generator, device=features.device
                        if generator is None else generator.device).to(features.device)  # (B, C, A)
        dt = 1.0 / n
        for i in range(n):
            t = torch.full((b,), 1.0 - i * dt, device=features.device)  # (B,)
            x = x - dt * self.velocity(x, t, features, context, context_mask)  # (B, C, A)
        return x

    def predict(self, features: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.sample(features, context, context_mask)

    def extra_repr(self) -> str:
        return (f"action_dim={self.action_dim}, chunk_size={self.chunk_size}, hidden_dim={self.hidden_dim}, "
                f"num_layers={self.num_layers}, num_steps={self.num_steps}")
