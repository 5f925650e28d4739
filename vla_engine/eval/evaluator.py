"""Closed-loop evaluation: run the policy in a built-in MuJoCo task on held-out seeds.

Seeds start at ``EVAL_SEED_START`` (1,000,000) so they never overlap the training demonstrations,
whose seeds are small integers. Writes mp4 videos of the first episodes and a JSON of results.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..config.run_config import EVAL_SEED_START
from .metrics import summarize_episodes


class EvalError(ValueError):
    """Evaluation cannot run as asked (bad checkpoint, mismatched task). One-line message."""


@dataclass
class EvalResult:
    task: str
    episodes: list[dict]
    summary: dict[str, Any]
    videos: list[str] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.summary["eval/success_rate"]

    def to_dict(self) -> dict:
        return {"task": self.task, "summary": self.summary, "episodes": self.episodes, "videos": self.videos}

    def format(self) -> str:
        s = self.summary
        return (f"{self.task}: success {s['eval/success_rate']:.0%} "
                f"[95% CI {s['eval/success_ci_low']:.0%}-{s['eval/success_ci_high']:.0%}] over "
                f"{s['eval/episodes']} episodes, mean return {s['eval/mean_return']:.2f}, "
                f"mean length {s['eval/mean_length']:.1f}")


def write_video(frames: list[np.ndarray], path: Path, fps: int) -> None:
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.stack(frames)  # (T, H, W, 3) uint8
    # H.264 needs even sizes; pad by one row/col when odd
    pad_h, pad_w = arr.shape[1] % 2, arr.shape[2] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    iio.imwrite(path, arr, fps=fps, codec="libx264", plugin="pyav", out_pixel_format="yuv420p")


@torch.no_grad()
def evaluate_policy(policy: torch.nn.Module, task: str, episodes: int = 50, seed_start: int = EVAL_SEED_START,
                    num_videos: int = 4, video_dir: str | Path | None = None,
                    max_episode_steps: int | None = None, instruction: str | None = None,
                    image_size: int | None = None, progress: bool = True,
                    on_episode: Callable[[int, int, dict], None] | None = None,
                    record_actions: bool = False) -> EvalResult:
    """Run ``episodes`` closed-loop episodes of ``policy`` on ``task`` and summarise them.

    ``instruction`` replaces the task's own instruction (free text), e.g. to probe grounding.
    """
    from ..envs import make_env

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise EvalError(f"episodes is {episodes!r}; evaluate at least 1 episode (e.g. 50)")
    if num_videos < 0:
        raise EvalError(f"num_videos is {num_videos}; give 0 (no videos) or more")
    cfg = getattr(policy, "config", None)
    size = image_size or getattr(cfg, "image_size", 96)
    env = make_env(task, image_size=size, max_episode_steps=max_episode_steps)
    uenv = env.unwrapped
    want_a = getattr(cfg, "action_dim", uenv.action_dim)
    if want_a != uenv.action_dim:
        raise EvalError(
            f"the policy predicts {want_a}-D actions but task '{task}' takes {uenv.action_dim}-D actions; "
            f"evaluate it on the task it was trained for"
        )
    policy.eval()
    results, videos = [], []
    video_dir = Path(video_dir) if video_dir is not None else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=episodes, desc=f"eval {task}", dynamic_ncols=True)
    successes = 0
    for ep in range(episodes):
        seed = seed_start + ep
        obs, info = env.reset(seed=seed)
        text = instruction or uenv.instruction
        policy.reset()
        frames = None
        if video_dir is not None and ep < num_videos:  # a family may show more than the camera (driving: + BEV)
            frames = [uenv.video_frame(obs) if hasattr(uenv, "video_frame") else obs["pixels"]]
        total_r, length, success, actions = 0.0, 0, False, []
        t0 = time.perf_counter()
        while True:
            batch = policy.prepare_observation(obs, text)
            action = policy.select_action(batch)[0].float().cpu().numpy()  # (A,)
            if record_actions:
                actions.append(action.tolist())
            obs, reward, terminated, truncated, info = env.step(action)
            total_r += float(reward)
            length += 1
            if frames is not None:
                frames.append(uenv.video_frame(obs) if hasattr(uenv, "video_frame") else obs["pixels"])
            success = success or bool(info.get("is_success", False))
            if terminated or truncated:
                break
        dt = time.perf_counter() - t0
        row = {"episode": ep, "seed": seed, "instruction": text, "success": success,
               "return": total_r, "length": length, "ms_per_step": 1000 * dt / max(1, length)}
        if hasattr(uenv, "episode_metrics"):  # a task family's own measures (driving: route completion, km, ...)
            row.update(uenv.episode_metrics(info))
        if record_actions:
            row["actions"] = actions
        if frames is not None:
            path = video_dir / f"{task.replace('/', '-')}-seed{seed}-{'success' if success else 'fail'}.mp4"
            write_video(frames, path, fps=uenv.fps)
            row["video"] = path.name
            videos.append(str(path))
        results.append(row)
        successes += success
        if bar is not None:
            bar.update(1)
            bar.set_postfix(success=f"{successes}/{ep + 1}")
        if on_episode is not None:
            on_episode(ep, episodes, row)
    if bar is not None:
        bar.close()
    env.close()
    summary = summarize_episodes(results)
    summary["eval/ms_per_step"] = float(np.mean([r["ms_per_step"] for r in results]))
    if hasattr(uenv, "summarize_metrics"):  # e.g. eval/route_completion, eval/collisions_per_km
        summary.update(uenv.summarize_metrics(results))
    result = EvalResult(task, results, summary, videos)
    if video_dir is not None:
        video_dir.mkdir(parents=True, exist_ok=True)
        (video_dir / f"{task.replace('/', '-')}-results.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result
