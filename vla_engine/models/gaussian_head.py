"""A Gaussian action head: an MLP gives the mean and a state-dependent std of every action in the chunk.

Supervised training maximises the likelihood of the demonstrated actions (Gaussian negative
log-likelihood over the non-padded steps); ``predict`` returns the mean. The RL trainers use
``sample`` (reparameterised, so SAC can back-propagate through it), ``log_prob`` and ``entropy``;
all three treat the chunk's ``chunk * A`` values as independent Normals (a diagonal Gaussian).

The std is squashed into ``[min_std, max_std]`` with a sigmoid, so it can neither collapse to zero
(NaN log-probabilities) nor explode early in RL.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributions import Normal

from .configuration_heads import GaussianHeadConfig
from .heads import ActionHead, HeadError, masked_action_loss


class GaussianMLPActionHead(ActionHead):
    """(B, D) features -> Normal(mean (B, chunk, A), std (B, chunk, A)).

    ``num_layers`` counts linear layers from the features to the mean (1 = a linear map), as in
    ``MLPActionHead``; the mean and std share the hidden layers and have one output layer each.
    """

    name = "gaussian"
    config_class = GaussianHeadConfig
    capabilities = GaussianHeadConfig.capabilities

    def __init__(self, input_dim: int | None = None, action_dim: int = 7, hidden_dim: int = 512,
                 min_std: float = 0.01, max_std: float = 1.0, num_layers: int = 2, chunk_size: int = 1,
                 dropout: float = 0.0, action_loss: str = "mse"):
        if num_layers < 1:
            raise HeadError(f"GaussianMLPActionHead num_layers must be >= 1, got {num_layers}")
        if hidden_dim < 1:
            raise HeadError(f"GaussianMLPActionHead hidden_dim must be >= 1, got {hidden_dim}")
        if not 0.0 < min_std < max_std:
            raise HeadError(f"GaussianMLPActionHead needs 0 < min_std < max_std, got min_std={min_std}, "
                            f"max_std={max_std}")
        if not 0.0 <= dropout < 1.0:
            raise HeadError(f"GaussianMLPActionHead dropout must be in [0, 1), got {dropout}")
        self.hidden_dim, self.num_layers, self.dropout = hidden_dim, num_layers, dropout
        self.min_std, self.max_std = float(min_std), float(max_std)
        # action_loss is kept for the config round trip; the training loss is the Gaussian NLL
        super().__init__(action_dim, chunk_size, input_dim, action_loss)

    def _build(self, input_dim: int) -> None:
        layers: list[nn.Module] = []
        d = input_dim
        for _ in range(self.num_layers - 1):
            layers += [nn.Linear(d, self.hidden_dim), nn.GELU()]
            if self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
            d = self.hidden_dim
        self.trunk = nn.Sequential(*layers)  # empty when num_layers == 1
        out = self.chunk_size * self.action_dim
        self.mean_layer = nn.Linear(d, out)
        self.std_layer = nn.Linear(d, out)
        # start at a moderate std (sigmoid(0) = 0.5 of the range) that does not depend on the input much
        nn.init.zeros_(self.std_layer.bias)
        nn.init.normal_(self.std_layer.weight, std=1e-3)

    @classmethod
    def from_config(cls, cfg: Any, input_dim: int | None = None) -> "GaussianMLPActionHead":
        h = cfg.head
        return cls(input_dim=input_dim, action_dim=cfg.action_dim, hidden_dim=h.hidden_dim,
                   min_std=h.min_std, max_std=h.max_std, num_layers=h.num_layers,
                   chunk_size=cfg.chunk_size, dropout=cfg.dropout, action_loss=cfg.action_loss)

    def config_fields(self) -> dict[str, Any]:
        return {**super().config_fields(), "dropout": self.dropout}

    def head_settings(self) -> dict[str, Any]:
        return {"hidden_dim": self.hidden_dim, "num_layers": self.num_layers, "min_std": self.min_std,
                "max_std": self.max_std}

    # -- the distribution --------------------------------------------------------------------
    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)``, each (B, chunk, A), in float32."""
        self._check_ready(features)
        h = self.trunk(features)  # (B, hidden) or (B, D)
        shape = (features.shape[0], self.chunk_size, self.action_dim)
        mean = self.mean_layer(h).float().view(shape)  # (B, chunk, A)
        squash = torch.sigmoid(self.std_layer(h).float()).view(shape)  # (B, chunk, A) in (0, 1)
        std = self.min_std + (self.max_std - self.min_std) * squash  # (B, chunk, A)
        return mean, std

    def distribution(self, features: torch.Tensor) -> Normal:
        """The per-element Normal over the chunk (batch shape (B, chunk, A))."""
        mean, std = self(features)
        return Normal(mean, std)

    def _check_actions(self, actions: torch.Tensor) -> torch.Tensor:
        if actions.ndim == 2 and self.chunk_size == 1:
            actions = actions.unsqueeze(1)  # (B, 1, A)
        if actions.ndim != 3 or tuple(actions.shape[1:]) != (self.chunk_size, self.action_dim):
            raise HeadError(f"{type(self).__name__} expects actions of shape (B, {self.chunk_size}, "
                            f"{self.action_dim}), got {tuple(actions.shape)}")
        return actions

    def sample(self, features: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(action (B, chunk, A), log_prob (B,))``; reparameterised (gradients flow through the sample).

        ``deterministic=True`` returns the mean and its log-probability.
        """
        dist = self.distribution(features)
        action = dist.mean if deterministic else dist.rsample()  # (B, chunk, A)
        return action, dist.log_prob(action).sum(dim=(1, 2))  # (B, chunk, A), (B,)

    def log_prob(self, features: torch.Tensor, actions: torch.Tensor,
                 action_is_pad: torch.Tensor | None = None) -> torch.Tensor:
        """Log-density (B,) of ``actions`` (B, chunk, A), summed over the non-padded steps."""
        actions = self._check_actions(actions)
        lp = self.distribution(features).log_prob(actions.float())  # (B, chunk, A)
        if action_is_pad is not None:
            lp = lp * (~action_is_pad.bool()).unsqueeze(-1).to(lp.dtype)  # (B, chunk, A)
        return lp.sum(dim=(1, 2))  # (B,)

    def entropy(self, features: torch.Tensor) -> torch.Tensor:
        """Entropy (B,) of the chunk's diagonal Gaussian."""
        return self.distribution(features).entropy().sum(dim=(1, 2))  # (B,)

    # -- the head interface ------------------------------------------------------------------
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        mean, _ = self(features)
        return mean  # (B, chunk, A)

    def compute_loss(self, features: torch.Tensor, actions: torch.Tensor,
                     action_is_pad: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        actions = self._check_actions(actions).float()
        mean, std = self(features)  # (B, chunk, A) each
        nll = -Normal(mean, std).log_prob(actions)  # (B, chunk, A)
        if action_is_pad is None:
            loss = nll.mean()
        else:
            valid = (~action_is_pad.bool()).unsqueeze(-1).to(nll.dtype)  # (B, chunk, 1)
            loss = (nll * valid).sum() / (valid.sum() * nll.shape[-1]).clamp_min(1.0)
        with torch.no_grad():
            l1 = masked_action_loss(mean, actions, action_is_pad, "l1")
            ent = Normal(mean, std).entropy().sum(dim=(1, 2)).mean()  # mean over the batch of (B,)
        return loss, {"action_l1": float(l1), "entropy": float(ent), "std": float(std.detach().mean())}

    def extra_repr(self) -> str:
        return (f"input_dim={self.input_dim}, hidden_dim={self.hidden_dim}, num_layers={self.num_layers}, "
                f"action_dim={self.action_dim}, chunk_size={self.chunk_size}, std=[{self.min_std}, {self.max_std}]")
