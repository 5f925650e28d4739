"""DAgger: dataset aggregation with an expert in the loop (Ross, Gordon and Bagnell, 2011).

    D <- D0 (optional warm-start demonstrations);  pi_1 <- BC on D0
    for i = 0 .. N-1:
        beta_i <- schedule(i)                       linear 1 -> 0, exponential beta^i, constant beta
        roll out K episodes: at each step the expert labels the state, a* = expert(o);
            the env executes a* with probability beta_i, else the learner's action pi_i(o)
        D <- D + {(o, a*) for every visited o}      appended on disk as a LeRobot v3 dataset
        pi_{i+1} <- train on D                       (fine-tune pi_i, or from scratch)
        log: expert labels so far, rollout success, the learner's own success on held-out seeds

Call shape: ``DAgger(model, env, expert_policy, ILConfig(beta_schedule="linear", num_iterations=10,
rollouts_per_iteration=100)).train()``. ``expert_policy`` is any callable ``obs -> action`` (the tabletop
and Meta-World scripted experts are). ``env`` returns ``{"pixels", "agent_pos"}`` observations and has
``unwrapped.instruction`` (our task families do). The training budget of each iteration is the config's
``max_steps`` (or ``num_epochs`` over the current aggregate).

The aggregate grows through lerobot's own writer: the first episodes create the dataset, later ones reopen
it the way lerobot resumes a recording, so the folder can be opened at any time with ``LeRobotDataset``
or browsed in the Datasets tab; ``meta/vla_engine.json`` records each iteration's beta, episodes and labels.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import ConcatDataset

from ...config.run_config import EVAL_SEED_START
from ...config.training_config import ILConfig
from ...data.lerobot_io import (ACTION_KEY, IMAGE_KEY, STATE_KEY, LeRobotWriter, make_features, quiet_datasets,
                                read_sidecar, write_sidecar)
from ...eval.metrics import wilson_interval
from ...runs.run_dir import RunDir, atomic_write_text
from ..loop import TrainingError, TrainLoop, save_weights
from ..supervised import check_data_fits_model, load_init_weights

DAGGER_SEED_START = 500_000  # rollout seeds: above the demonstrations' small seeds, below the evaluation seeds


def beta_schedule(kind: str, iteration: int, num_iterations: int, beta: float = 0.5) -> float:
    """The expert's share of iteration ``iteration`` (0-based): linear 1 -> 0 over the iterations,
    exponential ``beta ** i``, constant ``beta``."""
    if kind == "linear":
        return 1.0 if num_iterations <= 1 else 1.0 - iteration / (num_iterations - 1)
    if kind == "exponential":
        return float(beta) ** iteration
    if kind == "constant":
        return float(beta)
    raise ValueError(f"beta_schedule {kind!r} is not allowed; choose one of: linear, exponential, constant")


# ------------------------------------------------------------------------------------------------
# The aggregate on disk.
# ------------------------------------------------------------------------------------------------
class AggregatedDataset:
    """A LeRobot v3 dataset that grows by whole episodes (lerobot's writer, reopened to append)."""

    def __init__(self, root: str | Path, repo_id: str = "local/dagger", fps: int = 10):
        self.root, self.repo_id, self.fps = Path(root), repo_id, int(fps)

    def exists(self) -> bool:
        return (self.root / "meta" / "info.json").is_file()

    @property
    def sidecar(self) -> dict:
        return read_sidecar(self.root) or {}

    @property
    def num_frames(self) -> int:
        return int(self.sidecar.get("num_frames", 0))

    def append(self, episodes: list[dict], iteration_info: dict | None = None, base_sidecar: dict | None = None) -> int:
        """Write ``episodes`` (``{IMAGE_KEY, STATE_KEY, ACTION_KEY: (T, ...), "task": str}``); frames added."""
        if not episodes:
            return 0
        first = episodes[0]
        h, w = np.asarray(first[IMAGE_KEY]).shape[1:3]
        s_dim, a_dim = np.asarray(first[STATE_KEY]).shape[-1], np.asarray(first[ACTION_KEY]).shape[-1]
        n_new = int(sum(len(ep[ACTION_KEY]) for ep in episodes))
        if not self.exists():
            writer = LeRobotWriter(self.root, self.repo_id, self.fps, make_features((h, w), s_dim, a_dim),
                                   image_writer_threads=1)
            try:
                for ep in episodes:
                    writer.add_episode({k: ep[k] for k in writer.features}, ep["task"])
            except BaseException:
                writer.abort()
                raise
            writer.finalize()
            side = {**(base_sidecar or {}), "image_size": int(h), "state_dim": int(s_dim),
                    "action_dim": int(a_dim), "fps": self.fps, "num_episodes": 0, "num_frames": 0, "iterations": []}
        else:
            from lerobot.datasets.lerobot_dataset import LeRobotDataset

            with quiet_datasets():  # lerobot's resume path: new episodes go to new data files
                ds = LeRobotDataset(self.repo_id, root=self.root)
                ds.start_image_writer(num_processes=0, num_threads=1)
                try:
                    for ep in episodes:
                        n = len(ep[ACTION_KEY])
                        for t in range(n):
                            ds.add_frame({IMAGE_KEY: np.asarray(ep[IMAGE_KEY][t], dtype=np.uint8),
                                          STATE_KEY: np.asarray(ep[STATE_KEY][t], dtype=np.float32),
                                          ACTION_KEY: np.asarray(ep[ACTION_KEY][t], dtype=np.float32),
                                          "task": ep["task"]})
                        ds.save_episode()
                finally:
                    ds.finalize()
                    ds.stop_image_writer()
            side = self.sidecar
        side["num_episodes"] = int(side.get("num_episodes", 0)) + len(episodes)
        side["num_frames"] = int(side.get("num_frames", 0)) + n_new
        side["instructions"] = sorted(set(side.get("instructions", [])) | {ep["task"] for ep in episodes})
        if iteration_info is not None:
            side.setdefault("iterations", []).append(iteration_info)
        write_sidecar(self.root, side)
        return n_new

    def dataset(self, n_obs_steps: int = 1, chunk_size: int = 1, chunk_labels: str = "recorded"):
        from ...data.vla_dataset import LeRobotVLADataset

        with quiet_datasets():
            return LeRobotVLADataset(self.repo_id, root=self.root, n_obs_steps=n_obs_steps, chunk_size=chunk_size,
                                     chunk_labels=chunk_labels)


# ------------------------------------------------------------------------------------------------
# The trainer.
# ------------------------------------------------------------------------------------------------
@dataclass
class DAggerResult:
    state: str  # done | stopped
    iterations: int
    expert_labels: int
    history: list[dict] = field(default_factory=list)  # one row per iteration
    dataset_dir: Path | None = None
    checkpoint: Path | None = None


class DAgger:
    """DAgger over any policy with ``forward`` / ``select_action`` / ``prepare_observation`` / ``reset``."""

    config_class = ILConfig

    def __init__(self, model: torch.nn.Module, env: Any, expert_policy: Callable[[Any], Any],
                 config: ILConfig | None = None, *, run_dir: RunDir | str | Path | None = None,
                 dataset_dir: str | Path | None = None, initial_dataset: Any = None, progress: bool = True,
                 eval_env: Any = None):
        self.model, self.env, self.expert = model, env, expert_policy
        self.config = config if config is not None else ILConfig(algorithm="dagger")
        self.run = RunDir(run_dir) if isinstance(run_dir, (str, Path)) else run_dir
        if dataset_dir is None:
            dataset_dir = (self.run.path / "dataset") if self.run is not None else tempfile.mkdtemp(prefix="dagger-")
        self.aggregate = AggregatedDataset(dataset_dir, fps=int(getattr(env.unwrapped, "fps", 10)))
        self.initial = initial_dataset
        self.progress = progress
        self.eval_env = eval_env
        self.history: list[dict] = []
        self.global_step = 0
        self._stop = False
        self._loop: TrainLoop | None = None
        if self.config.init_from:  # start from a pretrained policy (its normalisation re-fitted to the data)
            load_init_weights(model, self.config.init_from)
        self._init_state = copy.deepcopy(model.state_dict()) if self.config.retrain == "scratch" else None

    # -- acting ---------------------------------------------------------------------------------
    def _learner_action(self, obs: Any, text: str) -> np.ndarray:
        batch = self.model.prepare_observation(obs, text)
        return self.model.select_action(batch)[0].float().cpu().numpy()  # (A,)

    @torch.no_grad()
    def rollout(self, env: Any, seed: int, beta: float, record: bool = True) -> dict:
        """One episode of the mixture policy; with ``record``, the visited states with the expert's labels."""
        obs, info = env.reset(seed=int(seed))
        u = env.unwrapped
        text = str(getattr(u, "instruction", ""))
        if hasattr(self.expert, "reset"):
            self.expert.reset()
        self.model.eval()
        self.model.reset()
        rng = np.random.default_rng([int(seed), 0xDA66])
        frames, states, labels = [], [], []
        success, learner_steps, length = bool(info.get("is_success", False)), 0, 0
        while True:
            label = np.asarray(self.expert(obs), dtype=np.float32) if (record or beta > 0) else None
            act = label
            if beta < 1.0:
                learner = self._learner_action(obs, text)  # queried every step: keeps a chunking policy's queue in step
                if label is None or rng.random() >= beta:
                    act, learner_steps = learner, learner_steps + 1
            if record:
                frames.append(np.array(obs["pixels"], dtype=np.uint8, copy=True))
                states.append(np.asarray(obs["agent_pos"], dtype=np.float32).copy())
                labels.append(label)
            obs, _, terminated, truncated, info = env.step(act)
            length += 1
            success = success or bool(info.get("is_success", False))
            if terminated or truncated or (record and length >= (self.config.rollout_max_steps or length + 1)):
                break
        out = {"seed": int(seed), "success": success, "length": length, "learner_steps": learner_steps, "task": text}
        if record:
            out.update({IMAGE_KEY: np.stack(frames), STATE_KEY: np.stack(states), ACTION_KEY: np.stack(labels)})
        return out

    def evaluate_learner(self, episodes: int, seed_start: int = EVAL_SEED_START) -> dict[str, float]:
        """The learner alone (beta = 0) on held-out seeds: success rate with its 95% Wilson interval."""
        env = self.eval_env or self.env
        wins = sum(self.rollout(env, seed_start + k, 0.0, record=False)["success"] for k in range(episodes))
        lo, hi = wilson_interval(wins, episodes)
        return {"dagger/learner_success_rate": wins / episodes, "dagger/learner_success_ci_low": lo,
                "dagger/learner_success_ci_high": hi}

    # -- training -------------------------------------------------------------------------------
    def _training_data(self):
        cfg = getattr(self.model, "config", None)
        n_obs, chunk = getattr(cfg, "n_obs_steps", 1), getattr(cfg, "chunk_size", 1)
        parts = []
        if self.initial is not None:
            parts.append(self.initial)
        if self.aggregate.exists():
            parts.append(self.aggregate.dataset(n_obs, chunk))
        for p in parts:
            if hasattr(p, "build_cache"):
                p.build_cache()  # decode the frames once (the aggregate's cache is rebuilt as it grows)
        return parts

    def fit(self, iteration: int) -> dict:
        """Train on everything aggregated so far; returns the last logged training row."""
        parts = self._training_data()
        if not parts:
            raise TrainingError("DAgger has no data to train on yet; roll out with the expert first")
        check_data_fits_model(self.model, parts[0])
        if self._init_state is not None:
            self.model.load_state_dict(self._init_state)  # retrain: scratch (normalisation set again below)
        if hasattr(self.model, "has_normalization") and not self.model.has_normalization():
            self.model.set_normalization(parts[0].stats)  # from the first data, then kept fixed
        data = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        from ...data.collate import collate_batch

        loader = torch.utils.data.DataLoader(data, batch_size=self.config.batch_size, shuffle=True,
                                             collate_fn=collate_batch, drop_last=len(data) >= self.config.batch_size)
        config = self.config.replace(seed=self.config.seed + max(0, iteration + 1))
        def log(step: int, row: dict) -> None:  # the fit's rows stream into the run as they come (live curves)
            if self.run is not None:
                self.run.log_metrics(self.global_step + step, row | {"dagger/iteration": iteration + 1})
                self.run.write_status(step=self.global_step + step)

        self._loop = TrainLoop(self.model, config, None, progress=self.progress, on_log=log)
        try:
            res = self._loop.fit(loader, resume=False)
        finally:
            self._loop = None
        self.global_step += res.step
        if res.state == "stopped":
            self._stop = True
        return res.history[-1] if res.history else {}

    def _on_sigterm(self, signum, frame) -> None:
        self._stop = True
        if self._loop is not None:
            self._loop.request_stop()

    def _save(self, iteration: int, labels: int) -> Path | None:
        if self.run is None:
            return None
        final = self.run.checkpoints_dir / f"step-{self.global_step}"
        tmp = self.run.checkpoints_dir / f".tmp-step-{self.global_step}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        save_weights(self.model, tmp)
        atomic_write_text(tmp / "trainer_state.json", json.dumps(
            {"step": self.global_step, "dagger_iteration": iteration, "expert_labels": labels,
             "dataset": str(self.aggregate.root), "config": self.config.to_dict(), "time": time.time()}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in self.run.checkpoints()[:-self.config.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def _resume(self) -> tuple[int, int]:
        """(first iteration to run, expert labels so far) from the run's last checkpoint, if any."""
        ckpt = self.run.last_checkpoint() if self.run is not None else None
        if ckpt is None or not (ckpt / "trainer_state.json").exists():
            return 0, 0
        from ..loop import load_weights

        state = json.loads((ckpt / "trainer_state.json").read_text())
        load_weights(self.model, ckpt / "model.safetensors")
        self.global_step = int(state["step"])
        self.run.prepare_resume(self.global_step)
        self.run.log(f"resumed DAgger after iteration {state['dagger_iteration']} from {ckpt.name}")
        return int(state["dagger_iteration"]), self.aggregate.num_frames

    def train(self) -> DAggerResult:
        c = self.config
        if c.num_threads:
            torch.set_num_threads(c.num_threads)
        start, labels = self._resume()
        old = None
        if self.run is not None:
            try:
                old = signal.signal(signal.SIGTERM, self._on_sigterm)
            except ValueError:  # not the main thread
                old = None
        if start == 0 and self.initial is not None:  # warm start: BC on the demonstrations
            self.fit(-1)
            self._save(0, 0)
        trained = start > 0 or self.initial is not None
        ckpt = None
        try:
            for i in range(start, c.num_iterations):
                if self._stop:
                    break
                beta = beta_schedule(c.beta_schedule, i, c.num_iterations, c.beta)
                if not trained:
                    beta = 1.0  # an untrained learner's actions carry nothing: the expert alone acts first
                if self.run is not None:
                    self.run.write_status("running", phase=f"dagger {i + 1}/{c.num_iterations}: rollouts",
                                          step=self.global_step, dagger_iteration=i + 1)
                eps = [self.rollout(self.env, DAGGER_SEED_START + i * c.rollouts_per_iteration + k, beta)
                       for k in range(c.rollouts_per_iteration)]
                roll_success = float(np.mean([e["success"] for e in eps]))
                learner_share = sum(e["learner_steps"] for e in eps) / max(1, sum(e["length"] for e in eps))
                info = {"iteration": i + 1, "beta": beta, "episodes": len(eps),
                        "frames": int(sum(e["length"] for e in eps)), "rollout_success_rate": roll_success}
                labels += self.aggregate.append(eps, info, base_sidecar=self._sidecar_base())
                if self.run is not None:
                    self.run.write_status(phase=f"dagger {i + 1}/{c.num_iterations}: training")
                last = self.fit(i)
                trained = True
                row = {"dagger/iteration": i + 1, "dagger/beta": beta, "dagger/expert_labels": labels,
                       "dagger/dataset_frames": labels + (len(self.initial) if self.initial is not None else 0),
                       "dagger/rollout_success_rate": roll_success, "dagger/learner_action_share": learner_share,
                       "train/loss": last.get("train/loss")}
                if c.eval_episodes_per_iteration > 0 and not self._stop:
                    row.update(self.evaluate_learner(c.eval_episodes_per_iteration))
                self.history.append(row)
                ckpt = self._save(i + 1, labels) or ckpt
                if self.run is not None:
                    self.run.log_metrics(self.global_step, row)
                    self.run.log(" ".join(f"{k.split('/')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('/')[-1]}={v}"
                                          for k, v in row.items() if v is not None))
        finally:
            if self.run is not None and old is not None:
                signal.signal(signal.SIGTERM, old)
        state = "stopped" if self._stop else "done"
        return DAggerResult(state, len(self.history) + start, labels, self.history, self.aggregate.root, ckpt)

    def _sidecar_base(self) -> dict:
        u = self.env.unwrapped
        return {"generator": "vla_engine.train.il.dagger", "task": getattr(u, "task_name", None),
                "repo_id": self.aggregate.repo_id, "camera": "front", "eval_seed_start": EVAL_SEED_START,
                "max_episode_steps": int(getattr(u, "max_episode_steps", 0) or 0), "use_videos": False,
                "dagger": {"beta_schedule": self.config.beta_schedule, "num_iterations": self.config.num_iterations,
                           "rollouts_per_iteration": self.config.rollouts_per_iteration}}

    # -- a background job -------------------------------------------------------------------------
    @classmethod
    def run_job(cls, cfg, run: RunDir, progress: bool = True) -> dict:
        """``vla train il-dagger``: env and expert of ``dataset.task`` (or ``eval.task``), warm start on the
        dataset when ``dataset.root`` is set, the aggregate in ``<run>/dataset``, a final evaluation."""
        from ...envs import make_env, make_expert, task_info
        from ...eval.evaluator import evaluate_policy
        from ...runs.jobs import build_model_for, prepare_datasets

        task = cfg.dataset.task or cfg.eval.task
        if not task:
            raise TrainingError("DAgger needs a task with a scripted expert: set dataset.task (e.g. push)")
        initial = None
        if cfg.dataset.root:
            initial, _ = prepare_datasets(cfg, run, progress=progress)
        meta = task_info(task)
        model_cfg = cfg.model if cfg.model.state_dim else cfg.model.replace(state_dim=int(meta["state_dim"]))
        model = build_model_for(model_cfg, initial)
        size = initial.image_shape[1] if initial is not None else cfg.dataset.image_size
        env = make_env(task, image_size=size)
        trainer = cls(model, env, make_expert(env), cfg.training, run_dir=run, initial_dataset=initial,
                      progress=progress)
        res = trainer.train()
        out: dict[str, Any] = {"state": res.state, "step": trainer.global_step, "iterations": res.iterations,
                               "expert_labels": res.expert_labels, "dataset": str(res.dataset_dir),
                               "checkpoint": str(res.checkpoint) if res.checkpoint else None}
        if res.state == "stopped":
            run.write_status("stopped", step=trainer.global_step, checkpoint=out["checkpoint"])
            return out
        if cfg.eval.after_training:
            run.write_status("running", phase="eval")
            ev = evaluate_policy(model, cfg.eval.task or task, episodes=cfg.eval.episodes,
                                 seed_start=cfg.eval.seed_start, num_videos=cfg.eval.num_videos,
                                 video_dir=run.videos_dir, max_episode_steps=cfg.eval.max_episode_steps,
                                 progress=progress)
            run.log_metrics(trainer.global_step, ev.summary)
            run.log(ev.format())
            out["eval"] = ev.summary
        run.write_status(step=trainer.global_step, checkpoint=out["checkpoint"], eval=out.get("eval"))
        return out  # the job runner marks the run done with this summary
