"""Offline behaviour cloning on a Minari dataset (the D4RL successor): method ``offline-bc``.

    OfflineBC("vla/pendulum/expert-v0", ILConfig(max_steps=3000), root="datasets/minari").train()
    vla train il-bc-minari [--set training.weighting=return --set dataset.minari_id=vla/pendulum/mixed-v0]

    data = every transition of the dataset                     (BCDataset)
         | the episodes with the top filter_top_percent % returns, or a return >= return_threshold
                                                                (FilteredBCDataset)
         | every transition with a weight w from its episode's return or its advantage, at a temperature
                                                                (WeightedBCDataset)
    repeat max_steps times:  batch (s, a*) ~ data  (drawn in proportion to w with weighted_sampling, else
                             uniformly with each step's loss scaled by w: advantage-weighted regression)
        loss = mean_B  w * mean_A ((pi(s) - a*) / std(a*))^2      pi(s) = MLP(normalise(s))
    then: the policy in the dataset's env on held-out seeds: mean return and the D4RL-style normalised
          score (0 = the random policy's return, 100 = the expert's; the dataset's reference scores)

The policy is the actor of PPO's actor-critic (``MLPActorCritic``) with the dataset's state statistics as
its observation normaliser, so its checkpoints are ``rl_mlp`` folders: ``vla eval <run>`` loads them like
a PPO or SAC checkpoint, and ``vla train rl-ppo-pendulum --set training.init_from=<run>`` fine-tunes the
clone by PPO. Only the actor trains here; the critic keeps its initial weights, and the Gaussian's log-std
follows the clone's residual per action dimension (a running mean), so a PPO warm start explores about as
far as the clone errs. Updates, checkpoints, resume, Stop, metrics.jsonl and TensorBoard are the shared
loop's (``train/loop.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...config.training_config import ILConfig
from ...runs.run_dir import RunDir
from ..loop import TrainingError, TrainLoop
from ..rl.policies import MLPActorCritic, RLPolicyConfig

STATE_KEY, ACTION_KEY, IMAGE_KEY = "observation.state", "action", "observation.images.front"
LOG_STD_MOMENTUM = 0.01  # weight of each batch in the running mean of the residual variance


class BCActor(MLPActorCritic):
    """PPO's actor-critic trained by regression of the dataset's actions through its actor only.

    Saved and loaded as the PPO policy it is (``load_rl_policy`` rebuilds an ``MLPActorCritic``).
    ``forward(batch, loss_weights)`` is the BC loss; ``action_scale`` (the data's action std) only
    scales that loss, so it is not part of the checkpoint."""

    def __init__(self, config: RLPolicyConfig):
        super().__init__(config)
        self.critic.requires_grad_(False)  # not trained here (a PPO warm start learns it)
        self.actor_logstd.requires_grad_(False)  # set from the residual, not by gradient
        self.action_scale = torch.ones(config.action_dim)

    def set_normalization(self, stats: dict, count: int = 1) -> None:
        """Observation normaliser = the dataset's state mean / std, as if measured on ``count`` states (so a PPO
        warm start's running update moves it only as much as that many states would); loss scale = action std."""
        s, a = stats[STATE_KEY], stats[ACTION_KEY]
        std = np.maximum(np.asarray(s["std"], dtype=np.float64), 1e-3)
        self.obs_rms.mean.copy_(torch.as_tensor(s["mean"], dtype=torch.float64))
        self.obs_rms.var.copy_(torch.as_tensor(std ** 2))
        self.obs_rms.count.fill_(float(max(1, count)))
        self.obs_rms.enabled.fill_(True)
        a_std = torch.as_tensor(np.maximum(np.asarray(a["std"], dtype=np.float32), 1e-3))
        self.action_scale = a_std
        self.actor_logstd.data.copy_(a_std.log())  # an untrained clone errs by about the data's spread

    def forward(self, batch: dict, loss_weights: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.obs_rms(batch[STATE_KEY].float())  # (B, S) normalised
        a = batch[ACTION_KEY].float().reshape(len(s), -1)  # (B, A)
        resid = self.actor_mean(s) - a  # (B, A)
        per_step = (resid / self.action_scale.to(resid.device)).pow(2).mean(-1)  # (B,)
        if loss_weights and "weight" in batch:
            loss = (per_step * batch["weight"].to(per_step)).mean()  # weights have mean 1 over the dataset
        else:
            loss = per_step.mean()
        with torch.no_grad():  # running residual variance per action dimension -> the Gaussian's log-std
            var = torch.exp(2 * self.actor_logstd)
            var.mul_(1 - LOG_STD_MOMENTUM).add_(LOG_STD_MOMENTUM * resid.detach().float().pow(2).mean(0))
            self.actor_logstd.copy_(0.5 * var.clamp_min(1e-12).log())
        return loss, {"loss": float(loss.detach()), "action_mae": float(resid.detach().abs().mean())}


def build_bc_dataset(ref: Any, config: ILConfig, root: str | Path | None = None):
    """The BC dataset the config asks for: plain, filtered (top % / return threshold) or weighted."""
    from ...data.bc_datasets import BCDataset, FilteredBCDataset, WeightedBCDataset

    if isinstance(ref, BCDataset):
        return ref
    if config.weighting != "none":
        return WeightedBCDataset(ref, root=root, weighting=config.weighting, temperature=config.temperature)
    if config.filter_top_percent is not None or config.return_threshold is not None:
        return FilteredBCDataset(ref, root=root, top_percent=config.filter_top_percent,
                                 return_threshold=config.return_threshold)
    return BCDataset(ref, root=root)


def dataset_task(ds: Any) -> str | None:
    """The workbench task a Minari dataset was recorded in (its env spec's id), or None if not one of ours."""
    import vla_engine.envs  # noqa: F401  (registers the task families)
    from ...registry import TASKS

    spec = getattr(ds.minari, "env_spec", None)
    env_id = getattr(spec, "id", None)
    if not env_id:
        return None
    if f"gym/{env_id}" in TASKS:
        return f"gym/{env_id}"
    for name in TASKS.names():
        if TASKS.meta(name).get("gym_id") == env_id:  # our tasks collect through their gymnasium ids
            return name
    return None


class OfflineBC:
    """``OfflineBC(dataset, config).train()``: a state MLP policy cloned from a Minari dataset (see module doc).

    ``dataset``: a Minari id or folder, or a ``BCDataset`` / ``FilteredBCDataset`` / ``WeightedBCDataset``.
    """

    config_class = ILConfig

    def __init__(self, dataset: Any, config: ILConfig | None = None, *, model: BCActor | None = None,
                 run_dir: RunDir | str | Path | None = None, progress: bool = True,
                 root: str | Path | None = None, task: str | None = None):
        self.config = c = config if config is not None else ILConfig(algorithm="offline-bc")
        self.dataset = build_bc_dataset(dataset, c, root)
        ds = self.dataset
        if ds.state_dim == 0:
            raise TrainingError(f"Minari dataset '{ds.ref}' has no state observations; offline-bc trains a state "
                                f"MLP (record 'observation', 'state' or 'agent_pos')")
        self.task = task or dataset_task(ds)
        if model is None:
            low, high = ds.stats[ACTION_KEY]["min"], ds.stats[ACTION_KEY]["max"]
            space = getattr(ds.minari, "action_space", None)  # the env's bounds, where the dataset records them
            if space is not None and hasattr(space, "low") and np.all(np.isfinite(space.low)):
                low, high = np.asarray(space.low).reshape(-1), np.asarray(space.high).reshape(-1)
            torch.manual_seed(c.seed)
            model = BCActor(RLPolicyConfig(
                kind="ppo", state_dim=ds.state_dim, action_dim=ds.action_dim, hidden_sizes=list(c.policy_hidden_sizes),
                activation=c.policy_activation, action_low=[float(x) for x in low],
                action_high=[float(x) for x in high], task=self.task))
        elif model.config.state_dim != ds.state_dim or model.config.action_dim != ds.action_dim:
            raise TrainingError(f"the policy takes {model.config.state_dim}-D states / gives {model.config.action_dim}"
                                f"-D actions but '{ds.ref}' has {ds.state_dim} / {ds.action_dim}; build it for this data")
        model.set_normalization(ds.stats, count=len(ds))
        self.model = model
        self.run = RunDir(run_dir) if isinstance(run_dir, (str, Path)) else run_dir
        self.progress = progress

    def data_summary(self) -> dict[str, float]:
        """What is trained on: episodes, transitions, their mean return (and its normalised score)."""
        ds = self.dataset
        rets = ds.episode_returns[ds.episodes]
        row = {"data/episodes": int(len(ds.episodes)), "data/transitions": int(len(ds)),
               "data/mean_return": float(rets.mean())}
        if ds.ref_min_score is not None and ds.ref_max_score is not None:
            row["data/normalized_score"] = float(ds.normalized_score(rets).mean())
        return row

    def train(self, max_steps: int | None = None, resume: bool = True) -> dict:
        from ...data.bc_datasets import create_bc_dataloader

        c = self.config if max_steps is None else self.config.replace(max_steps=max_steps)
        if c.num_threads == 0:
            c = c.replace(num_threads=1)  # a small MLP trains fastest on one CPU thread
        ds = self.dataset
        sampled = c.weighted_sampling and ds.weights is not None
        loader = create_bc_dataloader(ds, batch_size=c.batch_size, weighted_sampling=sampled, seed=c.seed,
                                      num_workers=c.num_workers)
        if self.run is not None:
            self.run.log(f"offline BC on {ds.ref}: {type(ds).__name__}, {len(ds.episodes)} episodes, {len(ds)} "
                         f"transitions" + (f", weighting {ds.weighting} T={ds.temperature} "
                                           f"({'sampled' if sampled else 'loss weights'})" if ds.weights is not None
                                           else ""))
            if IMAGE_KEY in ds[0]:  # the tabletop tasks' sets: camera + effector state
                self.run.log("the dataset has camera images: offline-bc's MLP reads only observation.state (a policy "
                             "that sees the images is il-bc's VLA on a LeRobot dataset)")
            if self.run.last_checkpoint() is None:
                self.run.log_metrics(0, self.data_summary())
        loss_weights = ds.weights is not None and not sampled
        loop = TrainLoop(self.model, c, self.run, loss_fn=lambda m, b: m(b, loss_weights), progress=self.progress)
        res = loop.fit(loader, resume=resume)
        return {"state": res.state, "step": res.step, "final_loss": res.final_loss, "first_loss": res.first_loss,
                "checkpoint": str(res.checkpoint) if res.checkpoint else None, "history": res.history}

    def evaluate(self, task: str | None = None, episodes: int = 10, **kw: Any) -> Any:
        """The policy in ``task`` (default: the dataset's env) on held-out seeds; the evaluator's result with
        ``eval/normalized_score`` added when the dataset has reference scores."""
        from ...eval.evaluator import evaluate_policy

        task = task or self.task
        if task is None:
            raise TrainingError(f"no task to evaluate in: the env of '{self.dataset.ref}' is not a workbench task; "
                                f"set eval.task (e.g. gym/Hopper-v5)")
        self.check_task(task)
        ev = evaluate_policy(self.model, task, episodes=episodes, **kw)
        ds = self.dataset
        if ds.ref_min_score is not None and ds.ref_max_score is not None:
            scores = ds.normalized_score([row["return"] for row in ev.episodes])
            ev.summary["eval/normalized_score"] = float(scores.mean())
            ev.summary["eval/normalized_score_std"] = float(scores.std())
        return ev

    def check_task(self, task: str) -> None:
        import vla_engine.envs  # noqa: F401
        from ...registry import TASKS

        if task in TASKS:
            dim = TASKS.meta(task).get("state_dim")
            if dim is not None and dim != self.dataset.state_dim:
                raise TrainingError(f"eval.task {task} has {dim}-D states but '{self.dataset.ref}' has "
                                    f"{self.dataset.state_dim}-D ones; evaluate in the env the data was recorded in")

    def eval_policy(self) -> BCActor:
        return self.model

    @classmethod
    def run_job(cls, cfg: Any, run: RunDir, progress: bool = True) -> dict:
        """``vla train il-bc-minari``: make the dataset if missing and makeable offline, train, then evaluate in
        ``eval.task`` (else the dataset's env, else ``dataset.task``)."""
        from ...config.base import ConfigError
        from ...data.minari_levels import ensure_minari_dataset

        d = cfg.dataset
        if not d.minari_id:
            raise ConfigError("dataset.minari_id: offline-bc reads a Minari dataset; set it to an id such as "
                              "vla/pendulum/expert-v0 (with dataset.minari_root) or a dataset folder")
        run.write_status("running", phase="datagen")
        ensure_minari_dataset(d.minari_id, d.minari_root, task=[d.task, cfg.eval.task], episodes=d.episodes,
                              seed=cfg.training.seed, log=run.log)
        run.write_status("running", phase="train")
        trainer = cls(d.minari_id, cfg.training, run_dir=run, progress=progress, root=d.minari_root,
                      task=cfg.eval.task)
        if trainer.task is None and d.task:
            trainer.task = d.task
        trainer.model.config.task = trainer.task  # vla eval's default task, saved with every checkpoint
        out = trainer.train()
        out.pop("history", None)
        if out["state"] == "done" and cfg.eval.after_training:
            run.write_status("running", phase="eval")
            ev = trainer.evaluate(episodes=cfg.eval.episodes, seed_start=cfg.eval.seed_start,
                                  num_videos=cfg.eval.num_videos, video_dir=run.videos_dir,
                                  max_episode_steps=cfg.eval.max_episode_steps, progress=progress)
            run.log_metrics(out["step"], ev.summary)
            score = ev.summary.get("eval/normalized_score")
            run.log(ev.format() + (f", normalised score {score:.1f}" if score is not None else ""))
            out["eval"] = ev.summary
            run.write_status("done", phase="done", eval=ev.summary)
        return out
