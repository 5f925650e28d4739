"""GAIL for the VLA on an image task (the tabletop suite): the discriminator over (observation features, action).

    trainer = VLAGAIL("push", VLAModel.from_pretrained(...), expert_dataset, ILConfig(algorithm="gail"))
    trainer.train()

The same algorithm as ``gail.py`` (the same ``Discriminator``, loss with gradient penalty, reward
``-log(1 - D)`` and the workbench's unchanged ``PPOTrainer``), with two differences:

- the policy is the VLA as a Gaussian actor with a value head (``VLAActorCritic``: its ``gaussian`` head, or a
  learned std around a regression head's prediction), acting in N tabletop envs (``TabletopRunner``);
- the discriminator cannot read pixels cheaply, so it reads features: a frozen copy of the VLA the run starts
  from turns each observation (camera image, instruction, state) into its action-query feature (B, H). Expert
  pairs are the features of the demonstrations' frames (a LeRobot dataset of the task's scripted expert) with
  their actions; policy pairs are the features of the frames the policy saw with the actions it executed (env
  units, clipped to the action space as the env clips them).

Warm-started from a BC checkpoint (``training.init_from``), PPO first trains its value head alone
(``value_warmup_updates``), so that the cloned actor is not moved by an untrained critic.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...config.training_config import ILConfig, RLConfig
from ...runs.run_dir import RunDir
from ..rl.vla_actor import TabletopRunner, VLAActorCritic
from .gail import GAIL


class FeatureGAILRunner(TabletopRunner):
    """The VLA actor's tabletop runner whose reward is the discriminator's, on the features of each step's
    observation and the action taken there."""

    def __init__(self, task: str, num_envs: int, actor: VLAActorCritic, gail: "VLAGAIL", **kwargs: Any):
        super().__init__(task, num_envs, actor, **kwargs)
        self.gail = gail

    def step(self, actions: torch.Tensor):
        feats = self.gail.features(self.observe())  # (N, H) of the observation the actions answer
        raw = np.clip(self.actor.env_action(actions), -1.0, 1.0)  # (N, A) as the env executes them
        obs, _, term, trunc, final, episodes = super().step(actions)  # the env's reward is not the signal
        reward = self.gail.observe(feats, raw)
        return obs, reward, term, trunc, final, episodes


@torch.no_grad()
def expert_features(encoder: torch.nn.Module, dataset: Any, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, H), actions (N, A)) of every frame of a LeRobot demonstration dataset, through ``encoder``
    (a VLAModel's ``features``)."""
    from torch.utils.data import DataLoader

    from ...data.collate import collate_batch

    feats, acts = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batch):
        f = encoder.features(batch).float()  # (B, H)
        feats.append(f.cpu().numpy())
        acts.append(batch["action"].reshape(len(f), -1, encoder.config.action_dim)[:, 0].float().numpy())
    return np.concatenate(feats), np.concatenate(acts).astype(np.float32)


class VLAGAIL(GAIL):
    """``VLAGAIL(task, vla, expert_dataset, config).train()``: GAIL with the VLA as the PPO policy."""

    def __init__(self, task: str, model: torch.nn.Module, expert_dataset: Any, config: ILConfig | None = None, *,
                 run_dir: RunDir | str | Path | None = None, progress: bool = True):
        from ..rl.common import setup_torch

        self.config = c = config if config is not None else ILConfig(algorithm="gail")
        self.task = task
        self.rl = self.ppo_config()
        self.device = setup_torch(self.rl)
        vla = model.vla if isinstance(model, VLAActorCritic) else model
        # the frozen feature extractor: the VLA as the run starts (a BC clone reads the scene already)
        self.encoder = copy.deepcopy(vla).to(self.device).eval().requires_grad_(False)
        self.policy = model if isinstance(model, VLAActorCritic) else VLAActorCritic(vla)
        self.policy.to(self.device)
        s, a = expert_features(self.encoder, expert_dataset)
        self.expert_return = float("nan")  # demonstrations from a scripted expert: success, not a return, matters
        self.runner = FeatureGAILRunner(task, c.num_envs, self.policy, self, seed=c.seed,
                                        image_size=vla.config.image_size)
        self._setup_discriminator(s, a, run_dir, progress)

    def ppo_config(self) -> RLConfig:
        """GAIL's PPO settings with a VLA's scale: fewer, larger minibatches, a value warm-up, no observation
        statistics (the VLA normalises its own inputs)."""
        return super().ppo_config().replace(update_epochs=2, num_minibatches=4, value_warmup_updates=2,
                                            normalize_observations=False, max_grad_norm=1.0)

    @torch.no_grad()
    def features(self, obs: dict[str, torch.Tensor]) -> np.ndarray:
        return self.encoder.features(self.policy.batch(obs)).float().cpu().numpy()  # (N, H)

    def eval_policy(self):
        return self.policy.vla

    @classmethod
    def run_job(cls, cfg, run: RunDir, progress: bool = True) -> dict:
        """``vla train il-gail-push``: the demonstrations are ``dataset.root`` (generated by the task's scripted
        expert when missing), the policy ``training.init_from`` (or a fresh model of the run's ``model``)."""
        from ...runs.jobs import prepare_datasets
        from ..rl.common import finish_job, rl_task_of
        from ..rl.setup import model_for_job

        task = rl_task_of(cfg)
        model = model_for_job(cfg, run)
        expert, _ = prepare_datasets(cfg.replace(model=model.config), run, progress=progress)
        if not model.has_normalization():  # a fresh model: the demonstrations' action / state scale
            model.set_normalization(expert.stats)
        trainer = cls(task, model, expert, cfg.training, run_dir=run, progress=progress)
        out = trainer.train()
        out.pop("history", None)
        return finish_job(trainer, cfg, run, out, progress)
