"""GAIL: generative adversarial imitation learning (Ho and Ermon, 2016) with a gradient penalty.

    D(s, a) = sigmoid(f(s, a)): the probability that (s, a) is the expert's
    repeat:
        roll out the policy for one PPO rollout; each step's reward is r(s, a) = -log(1 - D(s, a))
        (= softplus(f(s, a)), positive and larger where the policy looks like the expert)
        update D for ``discriminator_steps`` epochs: binary cross-entropy, expert pairs -> 1, policy pairs -> 0,
            + gp_weight * E[(|grad_x f(x_hat)| - 1)^2] on x_hat between expert and policy pairs (the penalty
            keeps D smooth so its reward stays informative; Gulrajani et al. 2017, Kostrikov et al. 2019)
        PPO update of the policy on the rollout with those rewards

The PPO is the workbench's ``PPOTrainer`` (vla_engine.train.rl.ppo) unchanged: GAIL gives it a runner whose
``step`` returns the discriminator's reward instead of the env's, and trains the discriminator when a
rollout is complete. So the rewards of a rollout come from the discriminator of the rollout before (one
update behind; the PPO loop stays as the RL trainer wrote it). The env's own return is still what
``charts/episodic_return`` shows: the measure of imitation, never the training signal.

Expert demonstrations: a Minari dataset (``BCDataset``; ``training.expert_dataset``), its first
``expert_episodes`` episodes. Works on state-based tasks (``gym/Hopper-v5``, gymnasium ids); on an image task
(the tabletop suite) the job runs ``gail_vla.VLAGAIL``: the VLA as the policy, the discriminator on features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...config.training_config import ILConfig, RLConfig
from ...runs.run_dir import RunDir
from ..rl.vec_env import StateRunner


class Discriminator(nn.Module):
    """An MLP logit f(s, a) over expert-normalised states and actions."""

    def __init__(self, state_dim: int, action_dim: int, hidden_sizes: list[int] = (64, 64),
                 state_mean: np.ndarray | None = None, state_std: np.ndarray | None = None):
        super().__init__()
        layers, d = [], state_dim + action_dim
        for h in hidden_sizes:
            layers += [nn.Linear(d, h), nn.Tanh()]
            d = h
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)
        mean = np.zeros(state_dim) if state_mean is None else state_mean
        std = np.ones(state_dim) if state_std is None else np.maximum(state_std, 1e-3)
        self.register_buffer("state_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("state_std", torch.as_tensor(std, dtype=torch.float32))

    def inputs(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.cat([(states - self.state_mean) / self.state_std, actions], dim=-1)  # (B, S + A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # (B,) logits

    @torch.no_grad()
    def reward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """-log(1 - D(s, a)) = softplus(f(s, a))."""
        return F.softplus(self(self.inputs(states, actions)))


def discriminator_loss(disc: Discriminator, expert_x: torch.Tensor, policy_x: torch.Tensor,
                       gp_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE (expert -> 1, policy -> 0) plus the gradient penalty on interpolates; (loss, metrics)."""
    e_logit, p_logit = disc(expert_x), disc(policy_x)
    bce = F.binary_cross_entropy_with_logits(e_logit, torch.ones_like(e_logit)) + \
        F.binary_cross_entropy_with_logits(p_logit, torch.zeros_like(p_logit))
    gp = torch.zeros(())
    if gp_weight > 0:
        eps = torch.rand(len(expert_x), 1, device=expert_x.device)
        x_hat = (eps * expert_x + (1 - eps) * policy_x).requires_grad_(True)  # (B, S + A)
        grad = torch.autograd.grad(disc(x_hat).sum(), x_hat, create_graph=True)[0]
        gp = ((grad.norm(dim=-1) - 1.0) ** 2).mean()
    loss = bce + gp_weight * gp
    return loss, {"gail/disc_loss": float(bce.detach()), "gail/grad_penalty": float(gp.detach()),
                  "gail/expert_acc": float((e_logit > 0).float().mean()),
                  "gail/policy_acc": float((p_logit < 0).float().mean())}


def load_expert_pairs(ref: str | Path, episodes: int | None = None, root: str | Path | None = None):
    """(states (N, S), actions (N, A), mean episode return) of the first ``episodes`` episodes of a Minari dataset."""
    from ...data.bc_datasets import FilteredBCDataset

    ds = FilteredBCDataset(ref, root=root, top_percent=100.0)
    keep = np.arange(ds.num_episodes if episodes is None else min(episodes, ds.num_episodes))
    ds._select(keep)  # the first episodes, in order
    return ds.observations.astype(np.float32), ds.actions.astype(np.float32), float(ds.episode_returns[keep].mean())


class GAILRunner(StateRunner):
    """The PPO trainer's state runner with the discriminator's reward, training the discriminator once per rollout."""

    def __init__(self, venv, obs_rms, device, gail: "GAIL"):
        super().__init__(venv, obs_rms, device)
        self.gail = gail
        self._raw: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        self._raw = self.venv.reset(seed).copy()  # the vector env reuses its observation buffer
        return self._norm(self._raw, self.update)

    def step(self, actions: torch.Tensor):
        a = np.clip(actions.detach().cpu().numpy(), self.venv.action_low, self.venv.action_high)
        obs, _, term, trunc, final, eps = self.venv.step(a)  # the env's reward is not used for training
        reward = self.gail.observe(self._raw, a)  # (N,) from the current discriminator
        self._raw = obs.copy()
        final_t = {i: self._norm(o[None], False) for i, o in final.items()}
        return self._norm(obs, self.update), reward, term, trunc, final_t, eps


class GAIL:
    """``GAIL(env, expert_dataset, config).train()``: a PPO policy trained on the discriminator's reward."""

    config_class = ILConfig

    def __init__(self, env: str, expert_dataset: str | Path | None = None, config: ILConfig | None = None, *,
                 model: Any = None, run_dir: RunDir | str | Path | None = None, progress: bool = True,
                 expert_root: str | Path | None = None):
        from ..rl.common import setup_torch
        from ..rl.policies import build_policy
        from ..rl.vec_env import make_vec_env

        self.config = c = config if config is not None else ILConfig(algorithm="gail")
        ref = expert_dataset or c.expert_dataset
        if not ref:
            from ..loop import TrainingError

            raise TrainingError("GAIL needs expert demonstrations: set training.expert_dataset to a Minari dataset "
                                "(make one with python -m vla_engine.data.minari_io --levels expert --expert ...)")
        self.task = env
        self.rl = self.ppo_config()
        self.device = setup_torch(self.rl)
        s, a, self.expert_return = load_expert_pairs(ref, c.expert_episodes, expert_root)
        venv = make_vec_env(env, c.num_envs, seed=c.seed)
        if venv.obs_dim != s.shape[1] or venv.action_dim != a.shape[1]:
            from ..loop import TrainingError

            raise TrainingError(f"the expert data has {s.shape[1]}-D states / {a.shape[1]}-D actions but {env} has "
                                f"{venv.obs_dim} / {venv.action_dim}; give demonstrations of this task")
        self.policy = model or build_policy("ppo", venv.obs_dim, venv.action_dim, venv.action_low, venv.action_high,
                                            self.rl, env)
        self.policy.to(self.device)
        self.runner = GAILRunner(venv, self.policy.obs_rms, self.device, self)
        self._setup_discriminator(s, a, run_dir, progress)

    def _setup_discriminator(self, s: np.ndarray, a: np.ndarray, run_dir: Any, progress: bool) -> None:
        """The expert pairs (inputs ``s`` (N, D) and actions ``a`` (N, A)), the discriminator over them, its
        optimiser, the run folder and the rollout buffers the discriminator trains on."""
        c = self.config
        self.expert_states = torch.as_tensor(s, device=self.device)
        self.expert_actions = torch.as_tensor(a, device=self.device)
        self.disc = Discriminator(s.shape[1], a.shape[1], list(c.disc_hidden_sizes), s.mean(0), s.std(0))
        self.disc.to(self.device)
        self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=c.discriminator_lr)
        self.run = RunDir(run_dir) if isinstance(run_dir, (str, Path)) else run_dir
        self.progress = progress
        self._states: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []
        self._env_steps = 0
        self.disc_history: list[dict] = []

    def ppo_config(self) -> RLConfig:
        """The PPO settings: the IL config's learning rate, schedule of rollouts and seed, PPO's defaults else."""
        c = self.config
        return RLConfig(algorithm="ppo", learning_rate=c.learning_rate, total_timesteps=c.total_timesteps,
                        num_envs=c.num_envs, steps_per_update=c.steps_per_update, seed=c.seed,
                        num_threads=c.num_threads, device=c.device, save_every=c.save_every, keep_last=c.keep_last,
                        gamma=0.99, gae_lambda=0.95, entropy_coef=0.0, update_epochs=10, num_minibatches=32,
                        normalize_rewards=True, normalize_observations=True, max_grad_norm=0.5)

    # -- called by the runner at every env step ---------------------------------------------------------
    def observe(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The discriminator's reward of this step's (s, a) pairs; trains D when a rollout is complete."""
        self._states.append(states.copy())
        self._actions.append(actions.astype(np.float32))
        s = torch.as_tensor(states, device=self.device)
        a = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        reward = self.disc.reward(s, a).cpu().numpy()
        self._env_steps += len(states)
        if len(self._states) >= self.config.steps_per_update:
            # the runner is stepped inside PPO's inference_mode rollout: the discriminator trains outside it
            with torch.inference_mode(False), torch.enable_grad():
                self.update_discriminator(np.concatenate(self._states), np.concatenate(self._actions))
            self._states, self._actions = [], []
        return reward

    def update_discriminator(self, states: np.ndarray, actions: np.ndarray) -> dict:
        """``discriminator_steps`` epochs over the rollout's pairs against as many expert pairs."""
        c, dev = self.config, self.device
        p_x = self.disc.inputs(torch.as_tensor(states, device=dev), torch.as_tensor(actions, device=dev))
        e_x = self.disc.inputs(self.expert_states, self.expert_actions)
        n, bs = len(p_x), min(c.batch_size, len(p_x), len(e_x))
        rows = []
        for _ in range(c.discriminator_steps):
            order = torch.randperm(n, device=dev)
            for start in range(0, n - bs + 1, bs):
                mb = order[start:start + bs]
                eb = torch.randint(0, len(e_x), (bs,), device=dev)
                loss, m = discriminator_loss(self.disc, e_x[eb], p_x[mb], c.gp_weight)
                self.disc_opt.zero_grad(set_to_none=True)
                loss.backward()
                self.disc_opt.step()
                rows.append(m)
        row = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}
        row["gail/mean_reward"] = float(self.disc.reward(torch.as_tensor(states, device=dev),
                                                         torch.as_tensor(actions, device=dev)).mean())
        self.disc_history.append({"step": self._env_steps, **row})
        if self.run is not None:
            self.run.log_metrics(self._env_steps, row)
        return row

    def eval_policy(self):
        return self.policy

    def train(self, total_timesteps: int | None = None) -> dict:
        from ..rl.ppo import PPOTrainer

        ppo = PPOTrainer(self.policy, self.runner, self.rl, run_dir=self.run, progress=self.progress, task=self.task)
        out = ppo.train(total_timesteps)
        out["expert_return"] = self.expert_return
        out["discriminator"] = self.disc_history[-1] if self.disc_history else {}
        if self.run is not None:
            self.run.close()
        return out

    @classmethod
    def run_job(cls, cfg, run: RunDir, progress: bool = True) -> dict:
        """``vla train il-gail``: GAIL in ``eval.task`` (or ``dataset.task``) from ``training.expert_dataset``,
        then the run config's evaluation."""
        from ..rl.common import finish_job, rl_task_of
        from ..rl.setup import is_state_task

        if not is_state_task(rl_task_of(cfg)):  # an image task: the VLA as the policy (gail_vla.py)
            from .gail_vla import VLAGAIL

            return VLAGAIL.run_job(cfg, run, progress)
        trainer = cls(rl_task_of(cfg), None, cfg.training, run_dir=run, progress=progress)
        out = trainer.train()
        out.pop("history", None)
        return finish_job(trainer, cfg, run, out, progress)
