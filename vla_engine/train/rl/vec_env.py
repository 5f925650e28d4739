"""The vector-env runner: N gymnasium envs stepped in one process, observations batched for one forward.

Why in-process: on 2 cores a MuJoCo locomotion step costs ~0.1 ms, far less than shipping arrays
through pipes to worker processes (gymnasium's ``AsyncVectorEnv``), and gymnasium's ``SyncVectorEnv``
adds its own per-step bookkeeping (autoreset modes, info dict merging). Hopper, Walker2d and HalfCheetah
step through :mod:`.fast_mujoco` (the same arithmetic without gymnasium's Python around ``mj_step``). ``benchmarks/bench_rl.py --envs``
measures all three side by side; the figures are in docs/benchmarks.md.

Auto-reset happens inside ``step`` (the Stable-Baselines3 convention): a finished env is reset at once,
the returned observation is the new episode's first, and the finished episode's last observation is in
``final_obs`` so a truncated episode can still be bootstrapped. Each finished episode's return, length and
success are reported in ``episodes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gymnasium
import numpy as np
import torch

from .fast_mujoco import fast_step_for


_NO_INFO: dict = {}  # a fast step's info: the runner reads only is_success, which these envs never set


@dataclass
class EpisodeStats:
    env_index: int
    episodic_return: float
    length: int
    success: bool


class BatchedVecEnv:
    """N envs in one process with batched (N, D) float32 observations and same-step auto-reset."""

    def __init__(self, env_fns: list[Callable[[], gymnasium.Env]], success_return: float | None = None):
        self.envs = [fn() for fn in env_fns]
        self.num_envs = len(self.envs)
        # step the bare envs under gymnasium's wrappers (order check, env checker, time limit): their python
        # overhead is a third of a Hopper step; the time limit is counted here instead
        self._limits = [_time_limit(e) for e in self.envs]
        self._bare = [e.unwrapped if lim is not None else e for e, lim in zip(self.envs, self._limits)]
        # Hopper / Walker2d / HalfCheetah: the same step without gymnasium's Python around mj_step (fast_mujoco)
        self._fast = [fast_step_for(b) if lim is not None else None for b, lim in zip(self._bare, self._limits)]
        e0 = self.envs[0]
        self.single_observation_space = e0.observation_space
        self.single_action_space = e0.action_space
        self.obs_dim = int(np.prod(e0.observation_space.shape))
        self.action_dim = int(np.prod(e0.action_space.shape))
        self.action_low = np.asarray(e0.action_space.low, np.float32)
        self.action_high = np.asarray(e0.action_space.high, np.float32)
        self.success_return = success_return
        n = self.num_envs
        self._obs = np.zeros((n, self.obs_dim), np.float32)
        self._rew = np.zeros(n, np.float32)
        self._term = np.zeros(n, bool)
        self._trunc = np.zeros(n, bool)
        self._ep_return = np.zeros(n, np.float64)
        self._ep_len = np.zeros(n, np.int64)
        self._ep_success = np.zeros(n, bool)

    def reset(self, seed: int | None = None) -> np.ndarray:
        for i, env in enumerate(self.envs):
            obs, _ = env.reset(seed=None if seed is None else seed + i)
            self._obs[i] = obs
        if seed is not None:
            for i, env in enumerate(self.envs):
                env.action_space.seed(seed + i)
        self._ep_return[:] = 0
        self._ep_len[:] = 0
        self._ep_success[:] = False
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                  dict[int, np.ndarray], list[EpisodeStats]]:
        """Step every env with ``actions`` (N, A), clipped to the action bounds.

        Returns (obs, rewards, terminated, truncated, final_obs, episodes): ``final_obs`` maps the index of
        each env whose episode ended to its last observation.
        """
        actions = np.clip(actions, self.action_low, self.action_high)
        final_obs: dict[int, np.ndarray] = {}
        episodes: list[EpisodeStats] = []
        for i, env in enumerate(self._bare):
            fast = self._fast[i]
            if fast is not None:
                (obs, r, term), trunc, info = fast(actions[i]), False, _NO_INFO
            else:
                obs, r, term, trunc, info = env.step(actions[i])
            self._ep_return[i] += r
            self._ep_len[i] += 1
            limit = self._limits[i]
            trunc = bool(trunc) or (limit is not None and self._ep_len[i] >= limit and not term)
            self._rew[i], self._term[i], self._trunc[i] = r, term, trunc
            self._ep_success[i] |= bool(info.get("is_success", False))
            if term or trunc:
                final_obs[i] = np.asarray(obs, np.float32)
                ret = float(self._ep_return[i])
                success = bool(self._ep_success[i]) or (self.success_return is not None and ret >= self.success_return)
                episodes.append(EpisodeStats(i, ret, int(self._ep_len[i]), success))
                self._ep_return[i], self._ep_len[i], self._ep_success[i] = 0.0, 0, False
                obs, _ = self.envs[i].reset()
            self._obs[i] = obs
        return self._obs.copy(), self._rew.copy(), self._term.copy(), self._trunc.copy(), final_obs, episodes

    def sample_actions(self) -> np.ndarray:
        return np.stack([env.action_space.sample() for env in self.envs]).astype(np.float32)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _time_limit(env: gymnasium.Env) -> int | None:
    """The step limit of ``env``'s TimeLimit wrapper (None when it has none: the env is stepped as it is)."""
    e = env
    while isinstance(e, gymnasium.Wrapper):
        if isinstance(e, gymnasium.wrappers.TimeLimit):
            return int(e._max_episode_steps)
        e = e.env
    return None


def resolve_gym_id(task: str) -> tuple[str, float | None, int | None]:
    """(gymnasium id, success return, registered max steps) of a ``gym/<id>`` task or a raw gymnasium id."""
    from ...envs import gym_tasks  # noqa: F401  (registers the gym/ tasks)
    from ...envs.gym_tasks import gym_env_id
    from ...registry import TASKS

    if task in TASKS:
        meta = TASKS.meta(task)
        if not meta.get("state_based"):
            raise ValueError(f"task '{task}' is not a state-based gymnasium task; the MLP trainers take gym/<id> "
                             f"tasks (e.g. gym/Hopper-v5); image tasks use the VLA actor")
        return meta["gym_id"], meta.get("reward_threshold"), meta.get("max_episode_steps")
    env_id = gym_env_id(task)
    if env_id not in gymnasium.registry:
        raise ValueError(f"'{task}' is neither a task nor a gymnasium id; e.g. gym/Hopper-v5 or Pendulum-v1")
    spec = gymnasium.spec(env_id)
    return env_id, spec.reward_threshold, spec.max_episode_steps


def make_vec_env(task: str, num_envs: int, seed: int = 0, max_episode_steps: int | None = None,
                 kind: str = "batched", **env_kw: Any):
    """``num_envs`` envs of ``task`` (``gym/<id>`` or a gymnasium id) as a vector env.

    ``kind``: ``batched`` (this module's in-process runner, the default), ``sync`` or ``async`` (gymnasium's,
    for the benchmark).
    """
    env_id, success_return, _ = resolve_gym_id(task)
    kw = dict(env_kw)
    if max_episode_steps:
        kw["max_episode_steps"] = max_episode_steps
    fns = [(lambda: gymnasium.make(env_id, **kw)) for _ in range(num_envs)]
    if kind == "batched":
        venv = BatchedVecEnv(fns, success_return=success_return)
    elif kind == "sync":
        venv = gymnasium.vector.SyncVectorEnv(fns, autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
    elif kind == "async":
        venv = gymnasium.vector.AsyncVectorEnv(fns, autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
    else:
        raise ValueError(f"vector env kind {kind!r} is not allowed; choose one of: batched, sync, async")
    return venv


class StateRunner:
    """The trainers' view of a state-based vector env: observations as normalised tensors ``{"state": (N, S)}``.

    The policy's observation normaliser is updated with every batch of raw observations while training
    (``update=True``), so the statistics saved with the policy are the ones it was trained with.
    """

    def __init__(self, venv: BatchedVecEnv, obs_rms, device: torch.device | str = "cpu"):
        self.venv, self.obs_rms, self.device = venv, obs_rms, device
        self.num_envs, self.action_dim = venv.num_envs, venv.action_dim
        self.update = True
        self._stats: list[np.ndarray] | None = None  # numpy copy of the statistics while collecting

    def begin(self) -> None:
        """Before a rollout: the statistics to numpy (updated there per step, cheaply)."""
        r = self.obs_rms
        self._stats = [r.mean.cpu().numpy().copy(), r.var.cpu().numpy().copy(), float(r.count)]

    def end(self) -> None:
        """After a rollout: the statistics back into the policy's buffers (saved with it)."""
        if self._stats is not None:
            mean, var, count = self._stats
            self.obs_rms.mean.copy_(torch.from_numpy(mean))
            self.obs_rms.var.copy_(torch.from_numpy(var))
            self.obs_rms.count.fill_(count)
            self._stats = None

    def _norm(self, obs: np.ndarray, update: bool) -> dict[str, torch.Tensor]:
        if not bool(self.obs_rms.enabled):
            return {"state": torch.from_numpy(obs).to(self.device)}
        if self._stats is None:  # outside a rollout: the torch module
            x = torch.from_numpy(obs).to(self.device)
            if update:
                self.obs_rms.update(x)
            return {"state": self.obs_rms(x)}
        mean, var, count = self._stats
        if update:  # the parallel-variance update of RunningMeanStd, in numpy
            if obs.shape[0] == 1:  # one env: the batch mean is the observation, its variance 0 (np.var ~10 us)
                b_mean, b_var, b = obs[0], 0.0, 1
            else:
                b_mean, b_var, b = obs.mean(0), obs.var(0), obs.shape[0]
            delta, tot = b_mean - mean, count + b
            mean = mean + delta * b / tot
            var = (var * count + b_var * b + delta ** 2 * count * b / tot) / tot
            self._stats = [mean, var, tot]
        y = np.clip((obs - mean) / np.sqrt(var + 1e-8), -self.obs_rms.clip, self.obs_rms.clip)
        return {"state": torch.from_numpy(y.astype(np.float32)).to(self.device)}

    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        return self._norm(self.venv.reset(seed), self.update)

    def step(self, actions: torch.Tensor):
        """(obs, rewards, terminated, truncated, final_obs, episodes); ``final_obs`` maps an env index to its
        episode's last observation, normalised, as a (1, S) batch."""
        obs, rew, term, trunc, final, eps = self.venv.step(actions.detach().cpu().numpy())
        final_t = {i: self._norm(o[None], False) for i, o in final.items()}
        return self._norm(obs, self.update), rew, term, trunc, final_t, eps

    def close(self) -> None:
        self.venv.close()
