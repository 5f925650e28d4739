"""Experience buffers: the on-policy ``RolloutBuffer`` (with GAE) and the off-policy ``ReplayBuffer``.

Both are preallocated once (no per-step allocation in the hot loop). The replay buffer saves to a
``.npz`` file read back with ``allow_pickle=False``, so a resumed SAC run continues with the same data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor,
                last_done: torch.Tensor, gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a rollout of T steps and N envs.

    ``dones[t]`` is 1 when the observation of step t began a new episode (so step t-1's value does not
    bootstrap from it); ``last_done`` says the same of the observation after the rollout. Truncated
    episodes are bootstrapped by the caller (their final value is folded into the reward).
    Returns (advantages, returns), each (T, N).
    """
    # the backward recursion runs in numpy: T small steps, each far cheaper there than as torch ops
    r, v, d = (x.detach().cpu().double().numpy() for x in (rewards, values, dones))
    lv, ld = last_value.detach().cpu().double().numpy(), last_done.detach().cpu().double().numpy()
    T = r.shape[0]
    adv = np.zeros_like(r)  # (T, N)
    last_gae = np.zeros_like(lv)  # (N,)
    for t in reversed(range(T)):
        if t == T - 1:
            next_nonterminal, next_value = 1.0 - ld, lv
        else:
            next_nonterminal, next_value = 1.0 - d[t + 1], v[t + 1]
        delta = r[t] + gamma * next_value * next_nonterminal - v[t]
        last_gae = delta + gamma * gae_lambda * next_nonterminal * last_gae
        adv[t] = last_gae
    adv_t = torch.from_numpy(adv).to(rewards.device, rewards.dtype)
    return adv_t, adv_t + values


class RolloutBuffer:
    """T steps x N envs of (obs, action, log-prob, reward, done, value), preallocated as tensors."""

    def __init__(self, num_steps: int, num_envs: int, obs_shape: tuple[int, ...], action_dim: int,
                 device: torch.device | str = "cpu"):
        self.T, self.N = num_steps, num_envs
        self.obs = torch.zeros((num_steps, num_envs, *obs_shape), device=device)  # (T, N, D)
        self.actions = torch.zeros((num_steps, num_envs, action_dim), device=device)  # (T, N, A)
        self.logprobs = torch.zeros((num_steps, num_envs), device=device)
        self.rewards = torch.zeros((num_steps, num_envs), device=device)
        self.dones = torch.zeros((num_steps, num_envs), device=device)
        self.values = torch.zeros((num_steps, num_envs), device=device)
        self.advantages = torch.zeros((num_steps, num_envs), device=device)
        self.returns = torch.zeros((num_steps, num_envs), device=device)

    def compute_returns(self, last_value: torch.Tensor, last_done: torch.Tensor, gamma: float,
                        gae_lambda: float) -> None:
        self.advantages, self.returns = compute_gae(self.rewards, self.values, self.dones, last_value,
                                                    last_done, gamma, gae_lambda)

    def flat(self) -> dict[str, torch.Tensor]:
        """The rollout as (T*N, ...) tensors for minibatching."""
        n = self.T * self.N
        return {"obs": self.obs.reshape(n, *self.obs.shape[2:]), "actions": self.actions.reshape(n, -1),
                "logprobs": self.logprobs.reshape(n), "advantages": self.advantages.reshape(n),
                "returns": self.returns.reshape(n), "values": self.values.reshape(n)}


class ReplayBuffer:
    """A ring buffer of transitions (obs, action, reward, next_obs, done), sampled uniformly.

    ``ReplayBuffer(capacity=1_000_000)`` as in the seed; the shapes are fixed by the first ``add`` (or
    given up front). ``done`` is 1 only for true terminations: a time-limit truncation still bootstraps.
    """

    def __init__(self, capacity: int = 1_000_000, obs_dim: int | None = None, action_dim: int | None = None,
                 seed: int = 0):
        if capacity < 1:
            raise ValueError(f"ReplayBuffer capacity is {capacity}; give at least 1 (e.g. 1_000_000)")
        self.capacity = int(capacity)
        self.pos, self.size = 0, 0
        self.rng = np.random.default_rng(seed)
        self.obs = self.next_obs = self.actions = self.rewards = self.dones = None
        if obs_dim is not None and action_dim is not None:
            self._allocate(obs_dim, action_dim)

    def _allocate(self, obs_dim: int, action_dim: int) -> None:
        c = self.capacity
        self.obs = np.zeros((c, obs_dim), np.float32)
        self.next_obs = np.zeros((c, obs_dim), np.float32)
        self.actions = np.zeros((c, action_dim), np.float32)
        self.rewards = np.zeros((c,), np.float32)
        self.dones = np.zeros((c,), np.float32)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward, next_obs, done) -> None:
        """Add a batch of transitions (leading dimension: envs) or a single one."""
        obs = np.asarray(obs, np.float32).reshape(-1, np.shape(obs)[-1])
        action = np.asarray(action, np.float32).reshape(len(obs), -1)
        if self.obs is None:
            self._allocate(obs.shape[1], action.shape[1])
        n = len(obs)
        idx = (self.pos + np.arange(n)) % self.capacity
        self.obs[idx] = obs
        self.actions[idx] = action
        self.rewards[idx] = np.asarray(reward, np.float32).reshape(n)
        self.next_obs[idx] = np.asarray(next_obs, np.float32).reshape(n, -1)
        self.dones[idx] = np.asarray(done, np.float32).reshape(n)
        self.pos = int((self.pos + n) % self.capacity)
        self.size = int(min(self.size + n, self.capacity))

    def sample_indices(self, batch_size: int) -> np.ndarray:
        if self.size == 0:
            raise ValueError("the replay buffer is empty; add transitions before sampling")
        return self.rng.integers(0, self.size, size=batch_size)

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        i = self.sample_indices(batch_size)
        return {"obs": torch.from_numpy(self.obs[i]).to(device),
                "actions": torch.from_numpy(self.actions[i]).to(device),
                "rewards": torch.from_numpy(self.rewards[i]).to(device),
                "next_obs": torch.from_numpy(self.next_obs[i]).to(device),
                "dones": torch.from_numpy(self.dones[i]).to(device)}

    # -- save / load ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the filled part (and the ring position and sampler state) to ``path`` (.npz)."""
        path = Path(path)
        n = self.size
        tmp = path.with_name(path.name + ".tmp.npz")
        arrays = {} if self.obs is None else {
            "obs": self.obs[:n], "next_obs": self.next_obs[:n], "actions": self.actions[:n],
            "rewards": self.rewards[:n], "dones": self.dones[:n]}
        rng_state = np.frombuffer(repr(self.rng.bit_generator.state).encode(), np.uint8)
        np.savez(tmp, pos=np.int64(self.pos), size=np.int64(n), capacity=np.int64(self.capacity),
                 rng=rng_state, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, capacity: int | None = None) -> "ReplayBuffer":
        """Read a buffer written by ``save`` (no pickle); ``capacity`` may grow it."""
        import ast

        with np.load(Path(path), allow_pickle=False) as f:
            cap = int(capacity or f["capacity"])
            buf = cls(max(cap, int(f["size"])))
            if "obs" in f.files:
                n = int(f["size"])
                buf._allocate(f["obs"].shape[1], f["actions"].shape[1])
                for k in ("obs", "next_obs", "actions", "rewards", "dones"):
                    getattr(buf, k)[:n] = f[k]
                buf.size = n
                buf.pos = int(f["pos"]) % buf.capacity if n == buf.capacity else n  # full: same ring slot
            buf.rng.bit_generator.state = ast.literal_eval(bytes(f["rng"]).decode())
        return buf
