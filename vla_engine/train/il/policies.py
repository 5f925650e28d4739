"""A small state-based policy for the offline BC datasets and the state-based gymnasium tasks.

``StateMLPPolicy`` has the policy interface the trainers and the evaluator use (``forward(batch) ->
(loss, info)``, ``select_action``, ``predict_action_chunk``, ``reset``) over ``observation.state`` only:
an MLP from the normalised state to the normalised action, trained by mean squared error. It saves as
``config.json`` + ``model.safetensors`` like the VLA models.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

STATE_KEY = "observation.state"
ACTION_KEY = "action"


@dataclass
class StatePolicyConfig:
    state_dim: int
    action_dim: int
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])  # widths of the hidden layers
    activation: str = "relu"  # relu | tanh


class StateMLPPolicy(nn.Module):
    """MLP state -> action with state / action normalisation from the dataset's statistics."""

    def __init__(self, config: StatePolicyConfig | Mapping[str, Any] | None = None, **kw: Any):
        super().__init__()
        cfg = config if isinstance(config, StatePolicyConfig) else StatePolicyConfig(**{**dict(config or {}), **kw})
        if cfg.activation not in ("relu", "tanh"):
            raise ValueError(f"activation {cfg.activation!r} is not allowed; choose one of: relu, tanh")
        self.config = cfg
        act = nn.ReLU if cfg.activation == "relu" else nn.Tanh
        layers: list[nn.Module] = []
        d = cfg.state_dim
        for h in cfg.hidden_sizes:
            layers += [nn.Linear(d, h), act()]
            d = h
        layers.append(nn.Linear(d, cfg.action_dim))
        self.net = nn.Sequential(*layers)
        for name, dim in (("state", cfg.state_dim), ("action", cfg.action_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))
        self.register_buffer("norm_set", torch.zeros((), dtype=torch.bool))

    # -- normalisation -------------------------------------------------------------------------
    def set_normalization(self, stats: Mapping[str, Mapping[str, Any]]) -> None:
        for key, name in ((STATE_KEY, "state"), (ACTION_KEY, "action")):
            if key in stats:
                getattr(self, f"{name}_mean").copy_(torch.as_tensor(stats[key]["mean"], dtype=torch.float32))
                std = torch.as_tensor(stats[key]["std"], dtype=torch.float32)
                getattr(self, f"{name}_std").copy_(torch.clamp(std, min=1e-3))
        self.norm_set.fill_(True)

    def has_normalization(self) -> bool:
        return bool(self.norm_set)

    @property
    def device(self) -> torch.device:
        return self.state_mean.device

    # -- the policy interface --------------------------------------------------------------------
    def _state(self, batch: Any) -> torch.Tensor:
        s = batch[STATE_KEY] if isinstance(batch, Mapping) else batch
        s = torch.as_tensor(np.asarray(s, dtype=np.float32) if not isinstance(s, torch.Tensor) else s)
        s = s.to(self.device, torch.float32)
        if s.shape[-1] != self.config.state_dim:
            raise ValueError(f"the state has {s.shape[-1]} values but the policy's state_dim is "
                             f"{self.config.state_dim}; build the policy for this task's observations")
        return s.reshape(-1, self.config.state_dim)  # (B, S)

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean squared error of the normalised actions."""
        s = (self._state(batch) - self.state_mean) / self.state_std  # (B, S)
        a = batch[ACTION_KEY].to(self.device, torch.float32).reshape(-1, self.config.action_dim)  # (B, A)
        target = (a - self.action_mean) / self.action_std  # (B, A)
        loss = ((self.net(s) - target) ** 2).mean()
        return loss, {"loss": float(loss.detach())}

    @torch.no_grad()
    def predict_action_chunk(self, obs: Any) -> torch.Tensor:
        s = (self._state(obs) - self.state_mean) / self.state_std  # (B, S)
        return (self.net(s) * self.action_std + self.action_mean).unsqueeze(1)  # (B, 1, A)

    @torch.no_grad()
    def select_action(self, obs: Any) -> torch.Tensor:
        return self.predict_action_chunk(obs)[:, 0]  # (B, A)

    def reset(self) -> None:
        """Stateless: nothing to forget between episodes."""

    def as_callable(self):
        """``obs (S,) -> action (A,)`` as numpy, for rollouts and minari's collectors."""
        self.eval()

        def act(obs: Any) -> np.ndarray:
            if isinstance(obs, Mapping):
                obs = obs.get("agent_pos", obs.get(STATE_KEY))
            return self.select_action(np.asarray(obs, dtype=np.float32)[None])[0].cpu().numpy()

        return act

    # -- save / load -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        from safetensors.torch import save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps({"type": "state_mlp", **asdict(self.config)}, indent=1))
        save_model(self, str(d / "model.safetensors"))
        return d

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu") -> "StateMLPPolicy":
        from safetensors.torch import load_model

        d = Path(directory)
        cfg = json.loads((d / "config.json").read_text())
        cfg.pop("type", None)
        model = cls(StatePolicyConfig(**cfg))
        load_model(model, str(d / "model.safetensors"), strict=True, device=map_location)
        return model
