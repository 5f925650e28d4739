"""Building what a trainer acts with: the policy (MLP or VLA actor) and the env runner, from the trainer's
arguments or a run config.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import torch

from ...config.base import ConfigError
from .policies import _PolicyBase, build_policy, is_rl_policy_config, load_rl_policy
from .vec_env import BatchedVecEnv, StateRunner, make_vec_env, resolve_gym_id


def is_state_task(task: str) -> bool:
    from ... import envs  # noqa: F401  (registers the task families)
    from ...registry import TASKS

    if task in TASKS:
        return bool(TASKS.meta(task).get("state_based"))
    return True  # a raw gymnasium id


def build_actor_and_runner(kind: str, model: Any, env: Any, config: Any, device: torch.device,
                           task: str | None = None) -> tuple[Any, Any, str]:
    """(policy, runner, task name) for ``kind`` (ppo | sac | grpo).

    ``env``: a task name, a ``BatchedVecEnv``, a single gymnasium env, or a runner built elsewhere.
    ``model``: None (a fresh MLP for state tasks), an MLP policy, or a VLA (image tasks).
    """
    from ...models import VLAModel

    vla = isinstance(model, VLAModel) or type(model).__name__ == "VLAActorCritic"
    if isinstance(env, str) and not vla and is_state_task(env):
        task = env
        env = make_vec_env(env, config.num_envs, seed=config.seed, max_episode_steps=config.max_episode_steps)
    elif isinstance(env, gymnasium.Env):
        single = env
        env = BatchedVecEnv([lambda: single])
    if isinstance(env, BatchedVecEnv):
        if model is None:
            model = build_policy(kind, env.obs_dim, env.action_dim, env.action_low, env.action_high, config, task)
        if not isinstance(model, _PolicyBase):
            raise ConfigError(f"model: a {type(model).__name__} cannot act in a state-based task; give model=None "
                              f"(an MLP policy is built) or an RL MLP policy")
        if model.config.state_dim != env.obs_dim or model.config.action_dim != env.action_dim:
            raise ConfigError(f"model: the policy takes {model.config.state_dim}-D states and gives "
                              f"{model.config.action_dim}-D actions but the env has {env.obs_dim} / {env.action_dim}; "
                              f"build the policy for this task")
        model.to(device)
        return model, StateRunner(env, model.obs_rms, device), task or "env"
    if isinstance(env, str):  # an image task (tabletop): the VLA acts
        from .vla_actor import build_vla_actor_and_runner

        return build_vla_actor_and_runner(kind, model, env, config, device)
    if hasattr(env, "step") and hasattr(env, "num_envs"):  # a runner built by the caller
        if model is None:
            raise ConfigError("model: give the policy that acts in this runner")
        return model.to(device), env, task or "env"
    raise ConfigError(f"env: {type(env).__name__} is not a task name, gymnasium env or vector env; "
                      f"e.g. env='gym/Hopper-v5'")


def model_for_job(cfg: Any, run: Any = None) -> Any:
    """The model a run config's RL job starts from: ``training.init_from`` (an RL MLP checkpoint or a VLA one,
    e.g. ``shipped:push-tiny``), else None for a state task (a fresh MLP) or the run's model config for an
    image task."""
    from ...runs.jobs import resolve_checkpoint
    from .common import rl_task_of

    c, task = cfg.training, rl_task_of(cfg)
    if c.init_from:
        import json

        ckpt = resolve_checkpoint(c.init_from)
        if is_rl_policy_config(json.loads((ckpt / "config.json").read_text())):
            return load_rl_policy(ckpt).train()
        from ...models import VLAModel

        if run is not None:
            run.log(f"warm start from {ckpt}")
        return VLAModel.from_pretrained(ckpt).train()
    if is_state_task(task):
        resolve_gym_id(task)  # a clear error for an unknown id
        return None
    from ...models import VLAModel
    from ...envs import task_info

    model_cfg = cfg.model
    if model_cfg.state_dim == 0:
        model_cfg = model_cfg.replace(state_dim=task_info(task)["state_dim"])
    return VLAModel(model_cfg)
