"""Online reinforcement learning: ``PPOTrainer``, ``SACTrainer``, ``GRPOTrainer`` (one readable file each).

Shared parts: ``buffers.py`` (``RolloutBuffer`` with GAE, ``ReplayBuffer``), ``vec_env.py`` (the batched
in-process vector env), ``policies.py`` (MLP actor-critics and the loadable ``RLPolicy`` checkpoint),
``vla_actor.py`` (the VLA with its Gaussian head as an actor, with a value head), ``common.py`` (observation
and reward normalisation, checkpoints, resume, Stop, metrics). Light on import: each name loads its module
on first use.

    >>> from vla_engine.train.rl import PPOTrainer
    >>> from vla_engine.config import RLConfig
    >>> trainer = PPOTrainer(None, "gym/InvertedPendulum-v5", RLConfig(algorithm="ppo", num_envs=4))
    >>> trainer.train(total_timesteps=20_000)
"""

from __future__ import annotations

import importlib

_LAZY = {
    "PPOTrainer": ".ppo",
    "SACTrainer": ".sac",
    "GRPOTrainer": ".grpo",
    "ReplayBuffer": ".buffers",
    "RolloutBuffer": ".buffers",
    "compute_gae": ".buffers",
    "BatchedVecEnv": ".vec_env",
    "make_vec_env": ".vec_env",
    "MLPActorCritic": ".policies",
    "SACPolicy": ".policies",
    "VLAActorCritic": ".vla_actor",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
