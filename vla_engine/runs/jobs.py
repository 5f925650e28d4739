"""What a job process does, given its run folder: train, evaluate or generate data.

The CLI's foreground commands and the background runner both come here, so a run started from
the browser and one started from a shell are the same run.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from .run_dir import RunDir, RunError
from .schema import DatagenJobConfig, EvalJobConfig, first_line

log = logging.getLogger("vla_engine")


# ------------------------------------------------------------------------------------------------
# Building blocks shared with the Python API and the CLI.
# ------------------------------------------------------------------------------------------------
def prepare_datasets(cfg, run: RunDir | None = None, progress: bool = True):
    """Train (and validation) datasets of a run config, generated with the task's expert when missing.

    Observation history and chunk length are the model's, so data and model agree.
    """
    from ..data import build_datasets

    ds_cfg = cfg.dataset

    def on_episode(i: int, n: int) -> None:
        if run is not None and (i % 10 == 0 or i + 1 == n):
            run.write_status(phase="datagen", datagen_done=i + 1, datagen_total=n)

    if run is not None and ds_cfg.root and not (Path(ds_cfg.root) / "meta" / "info.json").exists():
        run.log(f"dataset {ds_cfg.root} not found: generating {ds_cfg.episodes} episodes of '{ds_cfg.task}'")
    return build_datasets(ds_cfg, n_obs_steps=cfg.model.n_obs_steps, chunk_size=cfg.model.chunk_size,
                          progress=progress, on_episode=on_episode)


def build_model_for(model_cfg, dataset):
    """A fresh VLAModel for ``dataset``: ``model.state_dim: 0`` in a run config takes the data's.

    Mismatched action/state sizes are reported by the trainer's data check, naming the field.
    """
    from ..models import MultiSensorVLA, VLAModel

    if dataset is not None and model_cfg.state_dim == 0:
        model_cfg = model_cfg.replace(state_dim=dataset.state_dim)
    return MultiSensorVLA(model_cfg) if model_cfg.sensors is not None else VLAModel(model_cfg)


def resolve_checkpoint(ref: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A checkpoint folder from a run id, a run folder, a checkpoint folder or ``shipped:<name>``."""
    from ..pretrained import is_shipped_ref, shipped_checkpoint

    if is_shipped_ref(str(ref)):
        try:
            return shipped_checkpoint(str(ref))
        except FileNotFoundError as e:
            raise RunError(str(e)) from None
    p = Path(ref)
    candidates = [p, Path(runs_dir) / str(ref)]
    for c in candidates:
        if (c / "model.safetensors").exists():
            return c
        if (c / "config.yaml").exists():
            last = RunDir(c).last_checkpoint()
            if last is None:
                raise RunError(f"run {c} has no checkpoint yet; train it first or wait for its first save")
            return last
    raise RunError(f"{ref} is neither a checkpoint folder nor a run (looked in {runs_dir}); `vla runs` lists runs")


def run_task_of(ckpt: Path) -> str | None:
    """The task a checkpoint's run was trained/evaluated on, from the run's config.yaml."""
    for parent in ckpt.parents:
        cfg = parent / "config.yaml"
        if cfg.exists():
            import yaml

            data = yaml.safe_load(cfg.read_text()) or {}
            return (data.get("eval") or {}).get("task") or (data.get("dataset") or {}).get("task")
    return None


# ------------------------------------------------------------------------------------------------
# Jobs.
# ------------------------------------------------------------------------------------------------
def train_job(run: RunDir, progress: bool = True) -> dict:
    from ..config.run_config import RunConfig
    from ..eval.evaluator import evaluate_policy
    from ..train.methods import get_trainer

    data = run.read_config()
    data.pop("job", None)
    cfg = RunConfig.from_dict(data)
    trainer_cls = get_trainer(cfg.method)  # says clearly if the method is not built yet
    if hasattr(trainer_cls, "run_job"):
        # a trainer that gathers its own experience (RL, DAgger, GAIL) builds its env, model and data from
        # the run config itself: run_job(cfg, run, progress) -> the job's summary
        return trainer_cls.run_job(cfg, run, progress=progress)
    dataset, val = prepare_datasets(cfg, run, progress=progress)
    run.write_status(phase="train")
    model = build_model_for(cfg.model, dataset)
    trainer = trainer_cls(model, config=cfg.training, run_dir=run, progress=progress)
    result = trainer.train(dataset)
    out: dict[str, Any] = {"state": result.state, "step": result.step, "final_loss": result.final_loss,
                           "checkpoint": str(result.checkpoint) if result.checkpoint else None}
    if result.state == "done" and val is not None:
        from ..data import create_lerobot_dataloader
        from ..eval.metrics import action_errors

        errs = action_errors(model, create_lerobot_dataloader(val, batch_size=64, shuffle=False, drop_last=False))
        errs = {k.replace("eval/", "val/"): v for k, v in errs.items()}
        run.log_metrics(result.step, errs)
        out.update(errs)
    task = cfg.eval.task or cfg.dataset.task
    if result.state == "done" and cfg.eval.after_training and task:
        run.write_status("running", phase="eval")
        ev = evaluate_policy(model, task, episodes=cfg.eval.episodes, seed_start=cfg.eval.seed_start,
                             num_videos=cfg.eval.num_videos, video_dir=run.videos_dir,
                             max_episode_steps=cfg.eval.max_episode_steps, progress=progress)
        run.log_metrics(result.step, ev.summary)
        run.log(ev.format())
        out["eval"] = ev.summary
        run.write_status("done", phase="done", eval=ev.summary)
    return out


def eval_job(run: RunDir, progress: bool = True) -> dict:
    from ..envs.metaworld_tasks import is_suite
    from ..eval.evaluator import evaluate_policy
    from ..models import VLAModel

    cfg = EvalJobConfig.from_dict({k: v for k, v in run.read_config().items() if k != "job"})
    ckpt = resolve_checkpoint(cfg.checkpoint, cfg.runs_dir)
    task = cfg.task or run_task_of(ckpt)
    if not task:
        raise RunError("no task given and the checkpoint's run names none; pass --task")
    model = VLAModel.from_pretrained(ckpt)
    if cfg.inference:  # e.g. {"n_action_steps": 4}: how the trained model acts (vla eval --set)
        model.configure_inference(**cfg.inference)
    run.write_status("running", phase="eval", checkpoint=str(ckpt), task=task)
    if is_suite(task):
        return _eval_suite_job(run, cfg, model, task, progress)

    def on_episode(i: int, n: int, row: dict) -> None:
        run.write_status(step=i + 1, total_steps=n)
        run.log(f"episode {i}: seed {row['seed']} success={row['success']} return={row['return']:.2f}")

    ev = evaluate_policy(model, task, episodes=cfg.episodes, seed_start=cfg.seed_start,
                         num_videos=cfg.num_videos, video_dir=run.videos_dir,
                         max_episode_steps=cfg.max_episode_steps, instruction=cfg.instruction,
                         progress=progress, on_episode=on_episode, record_actions=True)
    run.log_metrics(cfg.episodes, ev.summary)
    run.log(ev.format())
    (run.path / "eval.json").write_text(json.dumps({**ev.to_dict(), "inference": cfg.inference}, indent=1))
    run.write_status(eval=ev.summary)
    return {"eval": ev.summary}


def _eval_suite_job(run: RunDir, cfg, model, suite: str, progress: bool) -> dict:
    """A Meta-World suite: every task on the same held-out seeds, then the mean (per-task rows in eval.json).

    The status and metrics carry the pooled ``eval/...`` summary (the mean success over tasks, the Wilson
    interval of all episodes), so the Runs table and the Benchmark tab read it like any evaluation."""
    from ..envs.metaworld.suite import evaluate_suite

    def on_task(i: int, n: int, task: str, s: dict) -> None:
        run.write_status(step=i + 1, total_steps=n)
        run.log(f"{task}: success {s['eval/success_rate']:.0%} over {s['eval/episodes']} episodes")

    res = evaluate_suite(model, suite, episodes_per_task=cfg.episodes, seed_start=cfg.seed_start,
                         num_videos=min(cfg.num_videos, 1), video_dir=run.videos_dir, progress=progress,
                         max_episode_steps=cfg.max_episode_steps, on_task=on_task)
    s = res.summary
    pooled = {"eval/success_rate": s["suite/mean_success_rate"], "eval/episodes": s["suite/episodes"],
              "eval/successes": s["suite/successes"],
              "eval/success_ci_low": s["suite/success_ci_low"], "eval/success_ci_high": s["suite/success_ci_high"]}
    summary = {**pooled, **s}
    run.log_metrics(cfg.episodes, summary)
    run.log(res.format())
    (run.path / "eval.json").write_text(json.dumps({**res.to_dict(), "inference": cfg.inference}, indent=1))
    run.write_status(eval=summary)
    return {"eval": summary}


def datagen_job(run: RunDir, progress: bool = True) -> dict:
    from ..data import generate_dataset

    cfg = DatagenJobConfig.from_dict({k: v for k, v in run.read_config().items() if k != "job"})

    def on_episode(i: int, total: int) -> None:
        if i % 5 == 0 or i + 1 == total:
            run.write_status(step=i + 1, total_steps=total)

    run.write_status("running", phase="datagen", step=0, total_steps=cfg.episodes)
    out = generate_dataset(cfg.task, cfg.episodes, cfg.out, seed=cfg.seed, image_size=cfg.image_size,
                           progress=progress, on_episode=on_episode, overwrite=cfg.overwrite,
                           action_noise=cfg.action_noise, targets_per_layout=cfg.targets_per_layout,
                           plan_horizon=cfg.plan_horizon)
    run.log(f"wrote {cfg.episodes} episodes of '{cfg.task}' to {out}")
    return {"dataset": str(out)}


JOBS = {"train": train_job, "eval": eval_job, "datagen": datagen_job}


def run_job(run_path: str | Path, progress: bool = True, detached: bool = False) -> int:
    """Run the job described by ``run_path/config.yaml``; record the outcome in status.json.

    ``detached``: this process was started by the JobRunner as the leader of its own process group,
    so a stop may signal the whole group (its data workers too); a foreground run is signalled alone.
    """
    run = RunDir(run_path)
    job = run.read_config().get("job", "train")
    if job not in JOBS:
        run.write_status("failed", error=f"unknown job kind {job!r}")
        return 2
    run.write_status("running", phase=job, error=None, own_group=detached)
    try:
        out = JOBS[job](run, progress=progress)
    except KeyboardInterrupt:
        run.write_status("stopped")
        return 130
    except Exception as e:  # the job's own errors are one line; anything else gets its traceback in log.txt
        msg = first_line(e)
        run.log("".join(traceback.format_exception(e)))
        run.write_status("failed", error=msg)
        print(f"error: {msg}", file=sys.stderr)
        return 1
    if run.read_status().state == "running":
        run.write_status("done", phase="done", result=out)
    return 0 if run.read_status().state in ("done", "stopped") else 1
