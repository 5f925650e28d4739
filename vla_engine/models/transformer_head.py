"""An ACT-style transformer action head (Zhao et al. 2023).

``chunk_size`` learned query tokens (plus fixed sinusoidal positions, plus the projected action-query
feature vector, so the decoder starts from what an MLP head sees) go through a
``torch.nn.TransformerDecoder``: self-attention among the queries, cross-attention to a memory made
of the action-query feature vector and the LM's whole final hidden sequence (``context``, padding
masked out). One pass predicts the whole chunk (B, chunk, A), as in ACT.

With ``causal=True`` (the default) the query of step ``k`` attends only to the queries of steps
``<= k`` (a causal self-attention mask): the chunk is produced left to right in structure while still
computed in one pass. ``causal=False`` is ACT's bidirectional decoder.

Without context (``context=None``, e.g. standalone use) the memory is the feature vector alone.
The loss is MSE by default, as for the other heads: ACT's L1 (``action_loss="l1"``) scored 23% against
MSE's 85% on push at the same budget (benchmarks/bench_heads.py, README). ``chunk_loss_decay`` < 1 weighs
chunk step k by ``decay ** k``. At inference ACT's temporal ensembling is the model's job
(``ModelConfig.temporal_ensemble_coeff``, see ``ensemble.py``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .configuration_heads import TransformerHeadConfig
from .heads import ActionHead, HeadError, masked_action_loss


def sinusoidal_positions(n: int, dim: int) -> torch.Tensor:
    """Fixed sine/cosine position table (n, dim) (Vaswani et al. 2017)."""
    pos = torch.arange(n, dtype=torch.float32).unsqueeze(1)  # (n, 1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (ceil(dim/2),)
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return table  # (n, dim)


class TransformerActionHead(ActionHead):
    """Learned chunk queries cross-attending to the LM context; see the module docstring."""

    name = "transformer"
    config_class = TransformerHeadConfig
    capabilities = TransformerHeadConfig.capabilities

    def __init__(self, action_dim: int = 7, chunk_size: int = 16, num_layers: int = 4, hidden_dim: int = 256,
                 num_heads: int = 8, dropout: float = 0.1, input_dim: int | None = None, causal: bool = True,
                 action_loss: str = "mse", chunk_loss_decay: float = 1.0):
        if num_layers < 1:
            raise HeadError(f"TransformerActionHead num_layers must be >= 1, got {num_layers}")
        if hidden_dim < 1 or num_heads < 1 or hidden_dim % num_heads:
            raise HeadError(f"TransformerActionHead hidden_dim ({hidden_dim}) must be a positive multiple of "
                            f"num_heads ({num_heads}); e.g. hidden_dim={max(1, num_heads) * 32}")
        if not 0.0 <= dropout < 1.0:
            raise HeadError(f"TransformerActionHead dropout must be in [0, 1), got {dropout}")
        self.num_layers, self.hidden_dim, self.num_heads, self.dropout = num_layers, hidden_dim, num_heads, dropout
        self.causal = bool(causal)
        super().__init__(action_dim, chunk_size, input_dim, action_loss, chunk_loss_decay)

    def _build(self, input_dim: int) -> None:
        h = self.hidden_dim
        self.queries = nn.Parameter(torch.randn(self.chunk_size, h) * 0.02)  # (chunk, H) learned
        self.register_buffer("query_pos", sinusoidal_positions(self.chunk_size, h), persistent=False)  # (chunk, H)
        self.feature_proj = nn.Linear(input_dim, h)
        self.context_proj = nn.Linear(input_dim, h)
        self.feature_type = nn.Parameter(torch.zeros(1, 1, h))  # tells the feature token from context tokens
        layer = nn.TransformerDecoderLayer(h, self.num_heads, 4 * h, self.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, self.num_layers, norm=nn.LayerNorm(h))
        self.action_out = nn.Linear(h, self.action_dim)
        causal = torch.triu(torch.ones(self.chunk_size, self.chunk_size, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", causal, persistent=False)  # (chunk, chunk): True = may not attend

    @classmethod
    def from_config(cls, cfg: Any, input_dim: int | None = None) -> "TransformerActionHead":
        h = cfg.head
        return cls(action_dim=cfg.action_dim, chunk_size=cfg.chunk_size, num_layers=h.num_layers,
                   hidden_dim=h.hidden_dim, num_heads=h.num_heads, dropout=cfg.dropout,
                   input_dim=input_dim, causal=h.causal, action_loss=cfg.action_loss,
                   chunk_loss_decay=h.chunk_loss_decay)

    def config_fields(self) -> dict[str, Any]:
        return {**super().config_fields(), "dropout": self.dropout}

    def head_settings(self) -> dict[str, Any]:
        return {"hidden_dim": self.hidden_dim, "num_layers": self.num_layers, "num_heads": self.num_heads,
                "causal": self.causal, "chunk_loss_decay": self.chunk_loss_decay}

    def forward(self, features: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        self._check_ready(features)
        b = features.shape[0]
        memory = self.feature_proj(features).unsqueeze(1) + self.feature_type  # (B, 1, H)
        pad = None
        if context is not None:
            if context.ndim != 3 or context.shape[0] != b or context.shape[-1] != self.input_dim:
                raise HeadError(f"TransformerActionHead context must be (B={b}, N, {self.input_dim}), "
                                f"got {tuple(context.shape)}")
            memory = torch.cat([memory, self.context_proj(context.to(memory.dtype))], dim=1)  # (B, 1 + N, H)
            if context_mask is not None:
                if tuple(context_mask.shape) != tuple(context.shape[:2]):
                    raise HeadError(f"TransformerActionHead context_mask must be (B, N) = {tuple(context.shape[:2])}, "
                                    f"got {tuple(context_mask.shape)}")
                keep = torch.ones(b, 1, dtype=torch.bool, device=context_mask.device)  # the feature token
                pad = ~torch.cat([keep, context_mask.bool()], dim=1)  # (B, 1 + N): True = padding, ignored
        # each query also starts from the action-query feature, so the decoder's output has a direct path
        # to it (as an MLP head does) and cross-attention refines it; with bare learned queries the
        # gradient reaches the policy only through near-uniform attention early in training
        tgt = (self.queries + self.query_pos).unsqueeze(0).to(memory.dtype) + memory[:, :1]  # (B, chunk, H)
        out = self.decoder(tgt, memory, tgt_mask=self.causal_mask if self.causal else None,
                           tgt_is_causal=self.causal, memory_key_padding_mask=pad)  # (B, chunk, H)
        return self.action_out(out)  # (B, chunk, A)

    def predict(self, features: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self(features, context, context_mask).float()  # (B, chunk, A)

    def compute_loss(self, features: torch.Tensor, actions: torch.Tensor, action_is_pad: torch.Tensor | None = None,
                     context: torch.Tensor | None = None,
                     context_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        if actions.ndim != 3 or tuple(actions.shape[1:]) != (self.chunk_size, self.action_dim):
            raise HeadError(f"TransformerActionHead expects actions of shape (B, {self.chunk_size}, "
                            f"{self.action_dim}), got {tuple(actions.shape)}")
        pred = self(features, context, context_mask).float()  # (B, chunk, A)
        loss = masked_action_loss(pred, actions.float(), action_is_pad, self.action_loss, self.chunk_loss_decay)
        with torch.no_grad():
            l1 = masked_action_loss(pred, actions.float(), action_is_pad, "l1")
        return loss, {"action_l1": float(l1)}

    def extra_repr(self) -> str:
        return (f"input_dim={self.input_dim}, hidden_dim={self.hidden_dim}, num_layers={self.num_layers}, "
                f"num_heads={self.num_heads}, action_dim={self.action_dim}, chunk_size={self.chunk_size}, "
                f"causal={self.causal}, action_loss={self.action_loss}")
