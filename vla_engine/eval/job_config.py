"""The config of an eval job, checked before the job starts: the evaluation settings, the checkpoint's
action size against the task's, and inference settings against the checkpoint's model config.

The app's Rollouts and Benchmark tabs and :class:`~vla_engine.eval.benchmark_queue.BenchmarkQueue` start
eval jobs with it; the job itself is ``vla_engine.runs.jobs.eval_job``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config.base import ConfigError
from ..config.model_config import ModelConfig
from ..config.run_config import EVAL_SEED_START
from ..runs.schema import EvalJobConfig


def checkpoint_model_config(checkpoint: str | Path) -> dict:
    """The model config (``config.json``) of a checkpoint folder; ConfigError when it is missing or broken."""
    ckpt = Path(checkpoint)
    try:
        return json.loads((ckpt / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise ConfigError(f"checkpoint {ckpt.name} has no readable config.json; it is incomplete") from None


def check_inference(checkpoint: str | Path, inference: dict[str, Any] | None) -> dict[str, Any]:
    """``inference`` (e.g. ``{"n_action_steps": 4}``) if the checkpoint's model config accepts it; the
    config's own ConfigError (naming the field) otherwise."""
    inference = dict(inference or {})
    if inference:
        ModelConfig.from_dict(checkpoint_model_config(checkpoint)).replace(**inference)
    return inference


def eval_job_config(checkpoint: str | Path, task: str, episodes: Any = 50, num_videos: Any = 4,
                    seed_start: Any = EVAL_SEED_START, max_episode_steps: Any = None,
                    instruction: str | None = None, inference: dict[str, Any] | None = None,
                    runs_dir: str | Path = "runs") -> dict:
    """The eval job config (:class:`~vla_engine.runs.schema.EvalJobConfig` as a dict) for ``checkpoint``
    (a checkpoint folder) on ``task``, validated before any job starts.

    Numbers are checked by the config, so a bad one is reported with the field's name; a policy whose
    action size does not fit the task is refused, and so are inference settings its model config rejects.
    """
    from ..envs import task_info  # gymnasium and the tasks: loaded when a job is configured

    if not task:
        raise ConfigError("eval.task is empty; choose the task to evaluate on")
    cfg = EvalJobConfig.from_dict({"checkpoint": str(checkpoint), "task": task, "episodes": episodes,
                                   "num_videos": num_videos, "seed_start": seed_start,
                                   "max_episode_steps": max_episode_steps,
                                   "instruction": (instruction or "").strip() or None, "runs_dir": str(runs_dir),
                                   "inference": check_inference(checkpoint, inference)})
    a = checkpoint_model_config(checkpoint).get("action_dim")
    want = task_info(cfg.task)["action_dim"]
    if a is not None and a != want:
        raise ConfigError(f"this policy predicts {a}-D actions but task '{cfg.task}' takes {want}-D actions; "
                          f"evaluate it on the task it was trained for")
    return cfg.to_dict()


__all__ = ["checkpoint_model_config", "check_inference", "eval_job_config"]
