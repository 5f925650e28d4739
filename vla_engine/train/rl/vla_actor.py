"""The VLA as an RL actor: images + instruction + state in, a Gaussian over the next action out, with a
value head for PPO.

``VLAActorCritic(vla)`` wraps a ``VLAModel``. With the ``gaussian`` action head the head's own mean and
state-dependent std are the policy; with a deterministic head (e.g. the ``mlp`` head of the shipped
``push-tiny`` BC checkpoint) the head's prediction is the mean and a learned state-independent log-std
(``init_log_std``) explores around it, so a BC checkpoint of any regression head warm-starts RL. Actions
are sampled and scored in the model's normalised action space; the env gets them un-normalised. The value
head is a small MLP on the VLA's action-query feature (detached: the critic does not move the features).

``TabletopRunner`` steps N tabletop envs in one process and hands the trainers batched observations
``{"image": (N, H, W, 3) uint8, "state": (N, S), "task_id": (N,)}``; ``task_id`` indexes the runner's table
of instruction strings (kept out of the tensors so rollouts store them cheaply).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ...config.base import ConfigError
from .vec_env import EpisodeStats


class VLAActorCritic(nn.Module):
    """A VLAModel (chunk size 1, one observation step) as a Gaussian actor with a value head."""

    def __init__(self, vla: nn.Module, init_log_std: float = math.log(0.3), texts: list[str] | None = None):
        super().__init__()
        cfg = vla.config
        if cfg.n_obs_steps != 1:
            raise ConfigError(f"model.n_obs_steps: the RL actor takes one observation step (the checkpoint has "
                              f"{cfg.n_obs_steps}); warm-start from a model with n_obs_steps: 1")
        self.vla = vla
        self.config = cfg
        self.action_dim = cfg.action_dim
        self.gaussian_head = hasattr(vla.action_head, "distribution")
        self.log_std = None if self.gaussian_head else nn.Parameter(torch.full((cfg.action_dim,), init_log_std))
        h = vla.action_query.shape[-1] if hasattr(vla, "action_query") else cfg.llm_hidden_size
        self.value_head = nn.Sequential(nn.Linear(h, 128), nn.Tanh(), nn.Linear(128, 1))
        self.texts: list[str] = texts if texts is not None else []

    @property
    def device(self) -> torch.device:
        return self.vla.device

    def train(self, mode: bool = True) -> "VLAActorCritic":
        """The VLA stays in eval mode (no image augmentation, no dropout) even while it learns: the
        log-probabilities of an update must be those the rollout sampled with."""
        super().train(mode)
        self.vla.eval()
        return self

    # -- observations -> a VLA batch ---------------------------------------------------------------
    def batch(self, obs: dict[str, torch.Tensor]) -> dict[str, Any]:
        from ...models.inputs import image_batch

        b = {self.config.image_keys[0]: image_batch(obs["image"]).to(self.device),
             "task": [self.texts[int(i)] for i in obs["task_id"]]}
        if self.config.state_dim > 0:
            b["observation.state"] = obs["state"].to(self.device)
        return b

    def dist_params(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean (B, A), log-std (B, A), feature (B, H)) in the normalised action space."""
        feats = self.vla.features(self.batch(obs))  # (B, H)
        head = self.vla.action_head
        if self.gaussian_head:
            mean, std = head(feats)  # (B, chunk, A) each
            return mean[:, 0], std[:, 0].log(), feats
        mean = head.predict(feats)[:, 0].float()  # (B, A)
        return mean, self.log_std.expand_as(mean), feats

    @staticmethod
    def log_prob(mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        z = (action - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def value(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.value_head(self.vla.features(self.batch(obs)).detach().float()).squeeze(-1)

    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = False):
        """(normalised action, log-prob, value), each batched over envs."""
        mean, log_std, feats = self.dist_params(obs)
        action = mean if deterministic else mean + torch.randn_like(mean) * log_std.exp()
        value = self.value_head(feats.detach().float()).squeeze(-1)
        return action, self.log_prob(mean, log_std, action), value

    def evaluate(self, obs: dict[str, torch.Tensor], action: torch.Tensor):
        """(log-prob, entropy, value) of normalised ``action``."""
        mean, log_std, feats = self.dist_params(obs)
        entropy = (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)
        return self.log_prob(mean, log_std, action), entropy, self.value_head(feats.detach().float()).squeeze(-1)

    def env_action(self, action: torch.Tensor) -> np.ndarray:
        """Normalised actions (N, A) -> the env's units (the model's action statistics)."""
        raw = self.vla.action_normalizer.unnormalize(action.unsqueeze(1).float())[:, 0]  # (N, A)
        return raw.detach().cpu().numpy()

    def save_pretrained(self, directory: Any):
        """The VLA itself (loadable by ``vla eval``); the value head and log-std go to ``rl_heads.safetensors``."""
        from safetensors.torch import save_file

        path = self.vla.save_pretrained(directory)
        extra = {f"value_head.{k}": v.contiguous() for k, v in self.value_head.state_dict().items()}
        if self.log_std is not None:
            extra["log_std"] = self.log_std.detach().contiguous()
        save_file(extra, str(path / "rl_heads.safetensors"))
        return path

    def load_rl_heads(self, directory: Any) -> None:
        from safetensors.torch import load_file

        f = load_file(str(directory / "rl_heads.safetensors"))
        prefix = "value_head."
        self.value_head.load_state_dict({k[len(prefix):]: v for k, v in f.items() if k.startswith(prefix)})
        if self.log_std is not None and "log_std" in f:
            self.log_std.data.copy_(f["log_std"])

    def load_state_for_resume(self, ckpt: Any) -> None:
        from ...models.checkpoint import load_weights

        load_weights(self.vla, ckpt / "model.safetensors")
        self.load_rl_heads(ckpt)


class TabletopRunner:
    """N tabletop envs in one process; auto-reset; the runner's ``step`` takes normalised actions."""

    def __init__(self, task: str, num_envs: int, actor: VLAActorCritic, seed: int = 0, image_size: int = 96,
                 max_episode_steps: int | None = None):
        from ...envs import make_env

        self.envs = [make_env(task, image_size=image_size, max_episode_steps=max_episode_steps)
                     for _ in range(num_envs)]
        self.num_envs, self.action_dim, self.actor = num_envs, actor.action_dim, actor
        self.seed, self.episode_seeds = seed, 0
        self.update = False
        self._ret = np.zeros(num_envs)
        self._len = np.zeros(num_envs, np.int64)
        self._ids = [0] * num_envs
        self._obs: list[Any] = [None] * num_envs

    def _text_id(self, text: str) -> int:
        texts = self.actor.texts
        if text not in texts:
            texts.append(text)
        return texts.index(text)

    def reset_env(self, i: int, seed: int | None = None) -> None:
        if seed is None:
            seed = self.seed * 1_000_003 + self.episode_seeds
            self.episode_seeds += 1
        obs, info = self.envs[i].reset(seed=int(seed))
        self._obs[i], self._ids[i] = obs, self._text_id(self.envs[i].unwrapped.instruction)
        self._ret[i], self._len[i] = 0.0, 0

    def observe(self) -> dict[str, torch.Tensor]:
        return {"image": torch.from_numpy(np.stack([o["pixels"] for o in self._obs])),
                "state": torch.from_numpy(np.stack([o["agent_pos"] for o in self._obs]).astype(np.float32)),
                "task_id": torch.tensor(self._ids)}

    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        if seed is not None:
            self.seed = seed
        for i in range(self.num_envs):
            self.reset_env(i)
        return self.observe()

    def step(self, actions: torch.Tensor):
        raw = self.actor.env_action(actions)
        n = self.num_envs
        rew, term, trunc = np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool)
        final, episodes = {}, []
        for i, env in enumerate(self.envs):
            obs, r, te, tr, info = env.step(raw[i])
            rew[i], term[i], trunc[i] = r, te, tr
            self._ret[i] += r
            self._len[i] += 1
            self._obs[i] = obs
            if te or tr:
                final[i] = {k: v[i:i + 1] for k, v in self.observe().items()}
                episodes.append(EpisodeStats(i, float(self._ret[i]), int(self._len[i]),
                                             bool(info.get("is_success", False))))
                self.reset_env(i)
        return self.observe(), rew, term, trunc, final, episodes

    def close(self) -> None:
        for env in self.envs:
            env.close()


def build_vla_actor_and_runner(kind: str, model: Any, task: str, config: Any, device: torch.device):
    """(VLAActorCritic, TabletopRunner, task) for PPO / GRPO on an image task."""
    from ...models import VLAModel

    if kind == "sac":
        raise ConfigError("method: SAC takes state-based tasks (gym/<id>); for the VLA on an image task use ppo "
                          "or grpo")
    if model is None:
        raise ConfigError(f"model: task '{task}' is an image task; give a VLAModel (e.g. VLAModel.from_pretrained"
                          f"(...)) or set training.init_from (e.g. shipped:push-tiny)")
    std = {} if getattr(config, "log_std_init", None) is None else {"init_log_std": float(config.log_std_init)}
    actor = model if isinstance(model, VLAActorCritic) else VLAActorCritic(model, **std) \
        if isinstance(model, VLAModel) else None
    if actor is None:
        raise ConfigError(f"model: a {type(model).__name__} cannot act in image task '{task}'; give a VLAModel")
    actor.to(device)
    if config.freeze_vision:
        actor.vla.freeze_vision(True)
    runner = TabletopRunner(task, config.num_envs, actor, seed=config.seed,
                            image_size=actor.config.image_size, max_episode_steps=config.max_episode_steps)
    return actor, runner, task
