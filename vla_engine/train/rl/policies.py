"""MLP policies for state-based tasks, saved as checkpoints ``vla eval`` loads like a VLA's.

* ``MLPActorCritic`` (PPO): a Gaussian actor with a state-independent log-std and a separate critic.
* ``SACPolicy`` (SAC): a tanh-squashed Gaussian actor and twin Q networks fused into one batched MLP
  (``EnsembleLinear``: both critics in one ``baddbmm`` per layer instead of two forward passes).

Both hold the observation normaliser (running mean / variance, buffers saved in ``model.safetensors``)
and the action bounds, and have the policy interface the evaluator uses: ``prepare_observation(obs,
instruction)``, ``select_action(batch) -> (B, A)`` (deterministic: the mean action), ``reset()``.
A checkpoint folder holds ``config.json`` (``"type": "rl_mlp"``) and ``model.safetensors``;
``load_rl_policy(folder)`` rebuilds it (``VLAModel.from_pretrained`` dispatches to it by that type).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT_TYPE = "rl_mlp"
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # SAC: log-std bounds of the squashed Gaussian


@dataclass
class RLPolicyConfig:
    kind: str  # ppo | sac
    state_dim: int
    action_dim: int
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    log_std_init: float = 0.0
    ortho_init: bool = True
    action_low: list[float] | None = None
    action_high: list[float] | None = None
    task: str | None = None  # the task it was trained on (vla eval's default)
    image_size: int = 96  # the size of the frames the evaluator renders for videos


class RunningMeanStd(nn.Module):
    """Running mean / variance of observations (parallel-variance update), applied as (x - mean) / std."""

    def __init__(self, dim: int, clip: float = 10.0):
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.register_buffer("enabled", torch.tensor(False))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, self.mean.shape[0]).to(torch.float64)
        b_mean, b_var, b = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, tot = b_mean - self.mean, self.count + b
        self.mean += delta * b / tot
        m2 = self.var * self.count + b_var * b + delta.pow(2) * self.count * b / tot
        self.var.copy_(m2 / tot)
        self.count.copy_(tot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.enabled):
            return x
        y = (x - self.mean.to(x.dtype)) / torch.sqrt(self.var.to(x.dtype) + 1e-8)
        return y.clamp(-self.clip, self.clip)


def mlp(sizes: list[int], activation: str, out_gain: float | None = None, ortho: bool = True) -> nn.Sequential:
    act = nn.Tanh if activation == "tanh" else nn.ReLU
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        if ortho:  # CleanRL / SB3: orthogonal weights, sqrt(2) hidden gain, small output gain
            nn.init.orthogonal_(lin.weight, out_gain if last and out_gain is not None else math.sqrt(2))
            nn.init.zeros_(lin.bias)
        layers.append(lin)
        if not last:
            layers.append(act())
    return nn.Sequential(*layers)


def _state_of(obs: torch.Tensor | Mapping) -> torch.Tensor:
    """The normalised state of a trainer's observation dict (``{"state": (B, S)}``) or a bare tensor."""
    return obs["state"] if isinstance(obs, Mapping) else obs


class _PolicyBase(nn.Module):
    """What both MLP policies share: config, normaliser, bounds, the evaluator's interface, save/load."""

    def __init__(self, config: RLPolicyConfig):
        super().__init__()
        self.config = config
        self.obs_rms = RunningMeanStd(config.state_dim)
        low = torch.tensor(config.action_low if config.action_low is not None else [-1.0] * config.action_dim)
        high = torch.tensor(config.action_high if config.action_high is not None else [1.0] * config.action_dim)
        self.register_buffer("action_low", low.float())
        self.register_buffer("action_high", high.float())

    @property
    def device(self) -> torch.device:
        return self.action_low.device

    # -- the evaluator's interface ---------------------------------------------------------------
    def prepare_observation(self, obs: Any, instruction: str | None = None) -> dict[str, torch.Tensor]:
        state = obs["agent_pos"] if isinstance(obs, Mapping) else obs
        s = torch.as_tensor(np.asarray(state, dtype=np.float32), device=self.device)
        return {"observation.state": s.reshape(-1, self.config.state_dim)}  # (B, S)

    def _state(self, batch: Any) -> torch.Tensor:
        s = batch["observation.state"] if isinstance(batch, Mapping) else batch
        s = torch.as_tensor(s, dtype=torch.float32, device=self.device)
        if s.shape[-1] != self.config.state_dim:
            raise ValueError(f"the observation has {s.shape[-1]} values but the policy takes "
                             f"{self.config.state_dim}; evaluate it on the task it was trained on")
        return s.reshape(-1, self.config.state_dim)

    @torch.no_grad()
    def select_action(self, batch: Any) -> torch.Tensor:
        """The deterministic action (B, A) for raw (unnormalised) states."""
        return self.act(self.obs_rms(self._state(batch)), deterministic=True)[0]

    @torch.no_grad()
    def predict_action_chunk(self, batch: Any) -> torch.Tensor:
        return self.select_action(batch).unsqueeze(1)  # (B, 1, A)

    def reset(self) -> None:
        """Stateless: nothing to forget between episodes."""

    def configure_inference(self, **settings: Any) -> None:
        if settings:
            raise ValueError(f"an RL MLP policy has no inference settings ({', '.join(settings)}); drop --set")

    # -- save / load -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps({"type": CHECKPOINT_TYPE, **asdict(self.config)}, indent=1))
        # copies: a trainer may have made the weights views of one flat tensor (common.flatten_parameters),
        # and safetensors refuses tensors that share storage
        tensors = {k: v.detach().clone() for k, v in self.state_dict().items()}
        save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
        return d

    def load_state_for_resume(self, checkpoint: str | Path) -> None:
        """Load a run checkpoint's weights in place (copied into the tensors, so flat views stay views)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from ...errors import CheckpointError

        path = Path(checkpoint) / "model.safetensors"
        try:
            self.load_state_dict(load_file(str(path), device=str(self.device)), strict=True)
        except (SafetensorError, OSError, RuntimeError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(f"checkpoint file {path} is missing, corrupt or does not match the policy "
                                  f"({first}); delete {path.parent} to resume from the previous checkpoint") from None


class MLPActorCritic(_PolicyBase):
    """PPO's actor-critic: Gaussian actor (mean MLP + a free log-std per action dimension), separate critic."""

    def __init__(self, config: RLPolicyConfig):
        super().__init__(config)
        h, s, a, o = config.hidden_sizes, config.state_dim, config.action_dim, config.ortho_init
        self.actor_mean = mlp([s, *h, a], config.activation, out_gain=0.01, ortho=o)
        self.critic = mlp([s, *h, 1], config.activation, out_gain=1.0, ortho=o)
        self.actor_logstd = nn.Parameter(torch.full((a,), float(config.log_std_init)))

    def value(self, obs: torch.Tensor | dict) -> torch.Tensor:
        return self.critic(_state_of(obs)).squeeze(-1)  # (B,)

    def dist_params(self, obs: torch.Tensor | dict) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.actor_mean(_state_of(obs))  # (B, A)
        return mean, self.actor_logstd.expand_as(mean)

    @staticmethod
    def log_prob(mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Sum over action dimensions of the diagonal Gaussian's log-density (no Distribution objects)."""
        z = (action - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    @staticmethod
    def entropy(log_std: torch.Tensor) -> torch.Tensor:
        return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(action, log-prob, value) for normalised observations (B, S)."""
        mean, log_std = self.dist_params(obs)
        action = mean if deterministic else mean + torch.randn_like(mean) * log_std.exp()
        return action, self.log_prob(mean, log_std, action), self.value(obs)

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-prob, entropy, value) of ``action`` under the current policy."""
        mean, log_std = self.dist_params(obs)
        return self.log_prob(mean, log_std, action), self.entropy(log_std), self.value(obs)

    # -- the rollout's fast path -----------------------------------------------------------------
    def snapshot(self, seed: int) -> None:
        """Copy the weights to numpy for ``act_numpy`` (the weights do not change during a rollout)."""
        def layers(seq: nn.Sequential) -> list:
            return [(m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy())
                    for m in seq if isinstance(m, nn.Linear)]

        self._np = (layers(self.actor_mean), layers(self.critic), self.actor_logstd.detach().cpu().numpy().copy())
        self._np_rng = np.random.default_rng(seed)

    def act_numpy(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``act`` for small batches of normalised states (N, S) in numpy: at batch sizes of a few envs a
        forward through torch modules costs ~10x the arithmetic in dispatch overhead."""
        actor, critic, log_std = self._np
        relu = self.config.activation == "relu"

        def run(layers: list, h: np.ndarray) -> np.ndarray:
            for i, (w, b) in enumerate(layers):
                h = h @ w + b
                if i < len(layers) - 1:
                    h = np.maximum(h, 0.0) if relu else np.tanh(h)
            return h

        x = x.astype(np.float32, copy=False)
        mean, value = run(actor, x), run(critic, x)[:, 0]
        noise = self._np_rng.standard_normal(mean.shape, dtype=np.float32)
        action = mean + noise * np.exp(log_std)
        logp = (-0.5 * noise ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return action, logp.astype(np.float32), value


class EnsembleLinear(nn.Module):
    """K independent linear layers applied as one batched matmul: input (K, B, I) -> (K, B, O)."""

    def __init__(self, k: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, d_in, d_out))
        self.bias = nn.Parameter(torch.empty(k, 1, d_out))
        bound = 1 / math.sqrt(d_in)  # nn.Linear's default init, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class TwinQ(nn.Module):
    """Two Q networks Q(s, a) evaluated together: returns (2, B)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: list[int], activation: str):
        super().__init__()
        sizes = [state_dim + action_dim, *hidden, 1]
        self.layers = nn.ModuleList(EnsembleLinear(2, sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1))
        self.act = nn.Tanh() if activation == "tanh" else nn.ReLU()

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], -1).unsqueeze(0).expand(2, -1, -1)  # (2, B, S+A)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x.squeeze(-1).float()  # (2, B), float32 also under bf16 autocast


class SACPolicy(_PolicyBase):
    """SAC's actor (tanh-squashed Gaussian, scaled to the action bounds) and twin critics."""

    def __init__(self, config: RLPolicyConfig):
        super().__init__(config)
        h, s, a = config.hidden_sizes, config.state_dim, config.action_dim
        self.actor = mlp([s, *h, 2 * a], config.activation, ortho=False)
        self.q = TwinQ(s, a, h, config.activation)
        self.register_buffer("action_scale", (self.action_high - self.action_low) / 2)
        self.register_buffer("action_bias", (self.action_high + self.action_low) / 2)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(action in the env's bounds, log-prob) for normalised observations (B, S)."""
        # float32 from here on, also when the actor ran under bf16 autocast (log-probs need the precision)
        mean, log_std = self.actor(_state_of(obs)).float().chunk(2, dim=-1)  # (B, A) each
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        u = mean if deterministic else mean + torch.randn_like(mean) * log_std.exp()
        y = torch.tanh(u)
        z = (u - mean) * torch.exp(-log_std)
        logp = (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # change of variables through tanh and the affine scale (numerically stable form of log(1 - tanh^2))
        logp = logp - (2 * (math.log(2) - u - nn.functional.softplus(-2 * u))).sum(-1) \
            - torch.log(self.action_scale).sum()
        return y * self.action_scale + self.action_bias, logp


POLICY_CLASSES = {"ppo": MLPActorCritic, "sac": SACPolicy}


def build_policy(kind: str, state_dim: int, action_dim: int, action_low, action_high, cfg: Any,
                 task: str | None = None) -> _PolicyBase:
    """A fresh MLP policy for ``kind`` from the RLConfig's network fields."""
    pc = RLPolicyConfig(kind=kind, state_dim=state_dim, action_dim=action_dim, hidden_sizes=list(cfg.hidden_sizes),
                        activation=cfg.activation, log_std_init=0.0 if cfg.log_std_init is None else cfg.log_std_init,
                        ortho_init=cfg.ortho_init,
                        action_low=[float(x) for x in np.asarray(action_low).reshape(-1)],
                        action_high=[float(x) for x in np.asarray(action_high).reshape(-1)], task=task)
    policy = POLICY_CLASSES[kind](pc)
    policy.obs_rms.enabled.fill_(bool(cfg.normalize_observations))
    return policy


def is_rl_policy_config(data: Any) -> bool:
    return isinstance(data, dict) and data.get("type") == CHECKPOINT_TYPE


def load_rl_policy(directory: str | Path, cls: Any = None, map_location: str | torch.device = "cpu") -> _PolicyBase:
    """Rebuild an MLP policy saved by ``save_pretrained`` (in eval mode)."""
    from safetensors.torch import load_model

    from ...errors import CheckpointError

    d = Path(directory)
    data = json.loads((d / "config.json").read_text())
    data.pop("type", None)
    try:
        cfg = RLPolicyConfig(**data)
        policy = POLICY_CLASSES[cfg.kind](cfg)
        load_model(policy, str(d / "model.safetensors"), strict=True, device=str(map_location))
    except (TypeError, KeyError, RuntimeError, OSError) as e:
        raise CheckpointError(f"RL policy checkpoint {d} does not load ({str(e).splitlines()[0]}); "
                              f"use another checkpoint of the run") from None
    return policy.eval()
