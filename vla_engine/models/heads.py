"""Action heads: a feature vector (B, D) -> an action chunk (B, chunk, A).

Every head follows one small interface, so the VLA model, the trainers and later heads
(diffusion, transformer, Gaussian) plug in the same way:

- ``compute_loss(features (B, D), actions (B, chunk, A), action_is_pad (B, chunk) | None) -> (loss, info)``
  with targets already normalised; padded steps do not count.
- ``predict(features (B, D)) -> (B, chunk, A)`` (normalised units; the model un-normalises).
- ``input_dim`` may be ``None`` until ``set_input_dim`` (the model calls it with its LM hidden size).
- a head declares what it needs as data, ``capabilities`` (a ``HeadCapabilities``, the one of its config class,
  ``models/configuration_heads.py``): heads with ``inputs="tokens"`` also get the keyword arguments
  ``context`` (B, N, D), the LM's final hidden sequence, and ``context_mask`` (B, N) bool (True = real token).
- ``config_class`` is the head's settings class (registered with it); ``from_config(cfg, input_dim)`` builds the
  head from a ``ModelConfig`` (its ``head`` holds those settings); ``config_fields()`` gives the ``ModelConfig``
  values that rebuild it (so a head passed in by hand is saved and reloaded exactly).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_heads import HeadCapabilities, MLPHeadConfig

ACTION_LOSSES = ("mse", "l1", "smooth_l1")


class HeadError(ValueError):
    """An action head was used or configured wrongly. One-line message."""


def masked_action_loss(pred: torch.Tensor, target: torch.Tensor, action_is_pad: torch.Tensor | None,
                       kind: str = "mse", step_decay: float = 1.0) -> torch.Tensor:
    """Mean ``kind`` loss over the non-padded steps of (B, chunk, A) predictions and targets.

    ``step_decay`` < 1 weighs chunk step k by ``step_decay ** k`` (a weighted mean: the first step counts most)."""
    if kind == "mse":
        per = F.mse_loss(pred, target, reduction="none")  # (B, C, A)
    elif kind == "l1":
        per = F.l1_loss(pred, target, reduction="none")  # (B, C, A)
    elif kind == "smooth_l1":
        per = F.smooth_l1_loss(pred, target, reduction="none")  # (B, C, A)
    else:
        raise HeadError(f"action_loss {kind!r} is not known; choose one of: {', '.join(ACTION_LOSSES)}")
    if action_is_pad is None and step_decay == 1.0:
        return per.mean()
    b, c, a = per.shape
    valid = torch.ones(b, c, 1, dtype=per.dtype, device=per.device) if action_is_pad is None \
        else (~action_is_pad.bool()).unsqueeze(-1).to(per.dtype)  # (B, C, 1)
    if step_decay != 1.0:
        valid = valid * (step_decay ** torch.arange(c, dtype=per.dtype, device=per.device))[None, :, None]  # (B, C, 1)
    denom = (valid.sum() * a).clamp_min(1e-12 if step_decay != 1.0 else 1.0)
    return (per * valid).sum() / denom


class ActionHead(nn.Module, abc.ABC):
    """Base of the action heads (the interface above). Subclasses build layers in ``_build``."""

    name: str = "head"
    config_class: ClassVar[type | None] = None  # the head's settings (a HeadConfig); None: it has none
    capabilities: ClassVar[HeadCapabilities] = HeadCapabilities()  # what the head needs from the model

    @property
    def uses_context(self) -> bool:
        """Whether compute_loss / predict also take ``context`` (B, N, D) and ``context_mask`` (B, N)."""
        return self.capabilities.inputs == "tokens"

    @property
    def sampling_settings(self) -> tuple[str, ...]:
        """What ``configure_sampling`` changes (the heads that sample noise at inference)."""
        return self.capabilities.sampling_settings

    def __init__(self, action_dim: int, chunk_size: int = 1, input_dim: int | None = None,
                 action_loss: str = "mse", chunk_loss_decay: float = 1.0):
        super().__init__()
        if not 0.0 < chunk_loss_decay <= 1.0:
            raise HeadError(f"chunk_loss_decay must be in (0, 1], got {chunk_loss_decay}; 1 weighs every chunk step "
                            f"the same, 0.5 halves each next step's weight")
        self.chunk_loss_decay = float(chunk_loss_decay)
        if action_dim < 1:
            raise HeadError(f"action_dim must be >= 1, got {action_dim}")
        if chunk_size < 1:
            raise HeadError(f"chunk_size must be >= 1, got {chunk_size}")
        if action_loss not in ACTION_LOSSES:
            raise HeadError(f"action_loss {action_loss!r} is not known; choose one of: {', '.join(ACTION_LOSSES)}")
        self.action_dim, self.chunk_size, self.action_loss = action_dim, chunk_size, action_loss
        self.input_dim: int | None = None
        if input_dim is not None:
            self.set_input_dim(input_dim)

    # -- the interface -----------------------------------------------------------------------
    def set_input_dim(self, input_dim: int) -> None:
        if self.input_dim is not None:
            if self.input_dim != input_dim:
                raise HeadError(f"{type(self).__name__} was built for {self.input_dim}-d features but the model gives "
                                f"{input_dim}-d; build the head with input_dim=None and the model sets it")
            return
        self.input_dim = int(input_dim)
        self._build(self.input_dim)

    @abc.abstractmethod
    def _build(self, input_dim: int) -> None:
        """Create the layers that read ``input_dim``-d features."""

    def _check_ready(self, features: torch.Tensor) -> None:
        if self.input_dim is None:
            raise HeadError(f"{type(self).__name__}.input_dim is not set; pass input_dim=... or attach the head "
                            f"to a VLAModel, which sets it")
        if features.shape[-1] != self.input_dim:
            raise HeadError(f"{type(self).__name__} expects {self.input_dim}-d features, got {features.shape[-1]}")

    @abc.abstractmethod
    def compute_loss(self, features: torch.Tensor, actions: torch.Tensor,
                     action_is_pad: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on normalised targets (B, chunk, A); padded steps masked out."""

    @abc.abstractmethod
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """An action chunk (B, chunk, A) in normalised units."""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, cfg: Any, input_dim: int | None = None) -> "ActionHead":
        """The head a ``ModelConfig`` describes."""

    def config_fields(self) -> dict[str, Any]:
        """The ``ModelConfig`` values of this head: the model-level ones and ``head`` (its settings)."""
        fields = {"action_head": self.name, "action_dim": self.action_dim, "chunk_size": self.chunk_size}
        if self.capabilities.regression_loss:
            fields["action_loss"] = self.action_loss
        return {**fields, "head": self.head_settings()}

    def head_settings(self) -> dict[str, Any]:
        """This head's ``model.head`` values (its config class's fields)."""
        return {}

    def configure_sampling(self, **settings: Any) -> None:
        """Change how ``predict`` samples (names in ``sampling_settings``, e.g. ``num_inference_steps``)."""
        raise HeadError(f"{', '.join(settings)} applies to sampling heads (diffusion, flow), not {self.name!r}; "
                        f"leave it out")


class MLPActionHead(ActionHead):
    """An MLP regressing the whole chunk at once: (B, D) -> (B, chunk, A).

    ``num_layers`` counts linear layers (1 = a single linear map); GELU and dropout between them.
    """

    name = "mlp"
    config_class = MLPHeadConfig
    capabilities = MLPHeadConfig.capabilities

    def __init__(self, hidden_dim: int = 1024, action_dim: int = 7, num_layers: int = 3,
                 input_dim: int | None = None, chunk_size: int = 1, dropout: float = 0.0,
                 action_loss: str = "mse", chunk_loss_decay: float = 1.0):
        if num_layers < 1:
            raise HeadError(f"MLPActionHead num_layers must be >= 1, got {num_layers}")
        if hidden_dim < 1:
            raise HeadError(f"MLPActionHead hidden_dim must be >= 1, got {hidden_dim}")
        if not 0.0 <= dropout < 1.0:
            raise HeadError(f"MLPActionHead dropout must be in [0, 1), got {dropout}")
        self.hidden_dim, self.num_layers, self.dropout = hidden_dim, num_layers, dropout
        super().__init__(action_dim, chunk_size, input_dim, action_loss, chunk_loss_decay)

    def _build(self, input_dim: int) -> None:
        dims = [input_dim] + [self.hidden_dim] * (self.num_layers - 1) + [self.chunk_size * self.action_dim]
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(nn.GELU())
                if self.dropout > 0:
                    layers.append(nn.Dropout(self.dropout))
        self.net = nn.Sequential(*layers)

    @classmethod
    def from_config(cls, cfg: Any, input_dim: int | None = None) -> "MLPActionHead":
        h = cfg.head
        return cls(hidden_dim=h.hidden_dim, action_dim=cfg.action_dim, num_layers=h.num_layers,
                   input_dim=input_dim, chunk_size=cfg.chunk_size, dropout=cfg.dropout, action_loss=cfg.action_loss,
                   chunk_loss_decay=h.chunk_loss_decay)

    def config_fields(self) -> dict[str, Any]:
        return {**super().config_fields(), "dropout": self.dropout}

    def head_settings(self) -> dict[str, Any]:
        return {"hidden_dim": self.hidden_dim, "num_layers": self.num_layers, "chunk_loss_decay": self.chunk_loss_decay}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self._check_ready(features)
        out = self.net(features)  # (B, chunk * A)
        return out.view(features.shape[0], self.chunk_size, self.action_dim)  # (B, chunk, A)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self(features)  # (B, chunk, A)

    def compute_loss(self, features: torch.Tensor, actions: torch.Tensor,
                     action_is_pad: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        pred = self(features)  # (B, chunk, A)
        loss = masked_action_loss(pred, actions, action_is_pad, self.action_loss, self.chunk_loss_decay)
        with torch.no_grad():
            l1 = masked_action_loss(pred, actions, action_is_pad, "l1")
        return loss, {"action_l1": float(l1)}

    def extra_repr(self) -> str:
        return (f"input_dim={self.input_dim}, hidden_dim={self.hidden_dim}, num_layers={self.num_layers}, "
                f"action_dim={self.action_dim}, chunk_size={self.chunk_size}, action_loss={self.action_loss}")
