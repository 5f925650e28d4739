"""Meta-World suites: the scripted experts' success per task, a policy's success per task with the mean, and
suite datasets (one LeRobot v3 dataset holding every task's demonstrations, each with its instruction).

    scripted_success("metaworld/push-v3", episodes=20)             -> {"success_rate": ..., "ci": ..., ...}
    evaluate_suite(policy, "mt10", episodes_per_task=50)            -> SuiteResult (per task + mean, Wilson CIs)
    generate_suite_dataset("mt10", episodes_per_task=100, out="datasets/metaworld-mt10")
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...config.run_config import EVAL_SEED_START
from ..metaworld_tasks import PREFIX, suite_tasks


def _wilson(successes: int, n: int) -> tuple[float, float]:
    from ...eval.metrics import wilson_interval

    return wilson_interval(successes, n)


def scripted_success(task: str, episodes: int = 20, seed_start: int = 0, action_noise: float = 0.0) -> dict[str, Any]:
    """Success of ``metaworld.policies``' expert of ``task`` on seeds ``seed_start ..`` (no rendering).

    ``action_noise`` adds N(0, sigma^2) to the executed actions (as data generation's DART noise does)."""
    from .env import MetaWorldEnv

    env = MetaWorldEnv(task, render_images=False)
    expert = env.make_expert()
    rng = np.random.default_rng(seed_start)
    wins, lengths = 0, []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed_start + k)
        n, success = 0, False
        while True:
            a = expert(obs)
            if action_noise > 0:
                a = np.clip(a + rng.normal(0.0, action_noise, a.shape), -1, 1)
            obs, _, term, trunc, info = env.step(a)
            n += 1
            success = success or info["is_success"]
            if term or trunc:
                break
        wins += success
        lengths.append(n)
    env.close()
    lo, hi = _wilson(wins, episodes)
    return {"task": env.task_name, "episodes": episodes, "success_rate": wins / episodes, "ci_low": lo,
            "ci_high": hi, "mean_length": float(np.mean(lengths))}


@dataclass
class SuiteResult:
    suite: str
    per_task: dict[str, dict[str, Any]]  # task -> the evaluator's summary
    summary: dict[str, Any]
    videos: list[str] = field(default_factory=list)

    def format(self) -> str:
        rows = [f"{'task':32s} success  95% CI"]
        for task, s in self.per_task.items():
            rows.append(f"{task:32s} {s['eval/success_rate']:6.0%}   {s['eval/success_ci_low']:.0%}-"
                        f"{s['eval/success_ci_high']:.0%}")
        s = self.summary
        rows.append(f"{'mean over ' + str(s['suite/num_tasks']) + ' tasks':32s} {s['suite/mean_success_rate']:6.0%}   "
                    f"{s['suite/success_ci_low']:.0%}-{s['suite/success_ci_high']:.0%} (all "
                    f"{s['suite/episodes']} episodes pooled)")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return {"suite": self.suite, "per_task": self.per_task, "summary": self.summary, "videos": self.videos}


def evaluate_suite(policy, suite: str, episodes_per_task: int = 50, seed_start: int = EVAL_SEED_START,
                   num_videos: int = 1, video_dir: str | Path | None = None, progress: bool = True,
                   max_episode_steps: int | None = None,
                   on_task: Callable[[int, int, str, dict], None] | None = None) -> SuiteResult:
    """Each task of ``suite`` with the workbench's evaluator (held-out seeds, videos), then the mean.

    The mean success is the average of the per-task rates (every task weighs the same, as Meta-World reports
    it); its interval is the Wilson interval of all episodes pooled (equal episodes per task)."""
    from ...eval.evaluator import evaluate_policy

    tasks = suite_tasks(suite)
    per_task, videos = {}, []
    if video_dir is not None:
        (Path(video_dir) / PREFIX.rstrip("/")).mkdir(parents=True, exist_ok=True)  # task names hold a '/'
    for i, task in enumerate(tasks):
        ev = evaluate_policy(policy, task, episodes=episodes_per_task, seed_start=seed_start,
                             num_videos=num_videos, video_dir=video_dir, progress=progress,
                             max_episode_steps=max_episode_steps)
        per_task[task] = ev.summary
        videos += ev.videos
        if on_task is not None:
            on_task(i, len(tasks), task, ev.summary)
    wins = sum(round(s["eval/success_rate"] * s["eval/episodes"]) for s in per_task.values())
    n = sum(s["eval/episodes"] for s in per_task.values())
    lo, hi = _wilson(wins, n)
    summary = {"suite/mean_success_rate": float(np.mean([s["eval/success_rate"] for s in per_task.values()])),
               "suite/success_ci_low": lo, "suite/success_ci_high": hi, "suite/episodes": n, "suite/successes": wins,
               "suite/num_tasks": len(tasks)}
    summary.update({f"suite/{t[len(PREFIX):]}/success_rate": s["eval/success_rate"] for t, s in per_task.items()})
    return SuiteResult(PREFIX + suite.split("/")[-1].lower(), per_task, summary, videos)


def generate_suite_dataset(suite: str, episodes_per_task: int, out: str | Path, *, seed: int = 0,
                           image_size: int = 96, repo_id: str | None = None, overwrite: bool = False,
                           action_noise: float = 0.0, progress: bool = True,
                           on_task: Callable[[int, int, str], None] | None = None) -> Path:
    """One LeRobot v3 dataset with ``episodes_per_task`` successful scripted episodes of every task of the
    suite (each episode's ``task`` is its instruction): per-task datasets merged by lerobot's own
    ``aggregate_datasets``."""
    from lerobot.datasets.aggregate import aggregate_datasets

    from ...data.datagen import generate_dataset
    from ...data.lerobot_io import check_output_dir, quiet_datasets, read_sidecar, write_sidecar

    tasks = suite_tasks(suite)
    out = check_output_dir(out, overwrite=overwrite, remove=False)
    name = suite.split("/")[-1].lower()
    repo_id = repo_id or f"local/metaworld-{name}"
    parts_dir = out.parent / f".{out.name}.parts"
    if parts_dir.exists():
        shutil.rmtree(parts_dir)
    roots, sidecars = [], {}
    try:
        for i, task in enumerate(tasks):
            root = parts_dir / task[len(PREFIX):]
            generate_dataset(task, episodes_per_task, root, seed=seed, image_size=image_size,
                             repo_id=f"local/{task[len(PREFIX):]}", progress=progress, action_noise=action_noise,
                             workers=0)
            roots.append(root)
            sidecars[task] = read_sidecar(root) or {}
            if on_task is not None:
                on_task(i, len(tasks), task)
        if out.exists():
            shutil.rmtree(out)
        with quiet_datasets():
            aggregate_datasets([f"local/{t[len(PREFIX):]}" for t in tasks], repo_id, roots=roots, aggr_root=out)
        first = next(iter(sidecars.values()))
        write_sidecar(out, {
            "generator": "vla_engine.envs.metaworld.suite", "task": PREFIX + name, "repo_id": repo_id,
            "suite_tasks": tasks, "image_size": image_size, "camera": "front", "fps": first.get("fps"),
            "action_dim": 4, "state_dim": 4, "max_episode_steps": first.get("max_episode_steps"),
            "episodes_per_task": episodes_per_task, "action_noise": action_noise, "seed_start": seed,
            "num_episodes": sum(s.get("num_episodes", 0) for s in sidecars.values()),
            "instructions": [s.get("instructions", [None])[0] for s in sidecars.values()],
            "expert": {t: s.get("expert") for t, s in sidecars.items()},
            "eval_seed_start": EVAL_SEED_START, "use_videos": False,
        })
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    return out
