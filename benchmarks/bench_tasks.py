"""Success figures for the built-in tasks, end to end from an empty folder, with wall time.

    python benchmarks/bench_tasks.py --task reach            # target: >= 90% in <= 10 min, datagen included
    python benchmarks/bench_tasks.py --task push             # target: >= 60% with the MLP head
    python benchmarks/bench_tasks.py --candidates small-64px,tiny-64px   # Quick Start recipes: success vs wall time

Runs the same code path as `vla quickstart --task TASK`: expert demonstrations -> LeRobot v3 ->
BC with the tiny VLA -> closed-loop evaluation on held-out seeds (from ``EVAL_SEED_START`` up).
Measured figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


# Quick Start recipes compared by --candidates (overrides on the quickstart preset): success against wall time
CANDIDATES = {
    "preset": [],
    "small-96px": ["dataset.episodes=500", "training.max_steps=600", "training.learning_rate=0.001",
                   "training.warmup_steps=50"],
    "small-64px": ["dataset.episodes=500", "training.max_steps=600", "training.learning_rate=0.001",
                   "training.warmup_steps=50", "dataset.image_size=64", "model.image_size=64"],
    "mid-64px": ["dataset.episodes=800", "training.max_steps=1500", "training.learning_rate=0.001",
                 "training.warmup_steps=100", "dataset.image_size=64", "model.image_size=64"],
    "narrow-96px": ["dataset.episodes=800", "training.max_steps=1200", "training.learning_rate=0.001",
                    "training.warmup_steps=100", "model.vision.dim=32"],
    "narrow-96px-long": ["dataset.episodes=800", "training.max_steps=1800", "training.learning_rate=0.001",
                         "training.warmup_steps=100", "model.vision.dim=32"],
    "narrow-96px-film": ["dataset.episodes=800", "training.max_steps=1200", "training.learning_rate=0.001",
                         "training.warmup_steps=100", "model.vision.dim=32", "model.vision.film=true"],
    "small-96px-film": ["dataset.episodes=500", "training.max_steps=800", "training.learning_rate=0.001",
                        "training.warmup_steps=50", "model.vision.dim=32", "model.vision.film=true"],
    "film-64px": ["dataset.episodes=800", "training.max_steps=1200", "training.learning_rate=0.001",
                  "training.warmup_steps=100", "dataset.image_size=64", "model.image_size=64", "model.vision.film=true"],
    "contrast-600": ["dataset.episodes=600", "dataset.targets_per_layout=3", "training.max_steps=600",
                     "training.learning_rate=0.001", "training.warmup_steps=50", "model.vision.dim=32",
                     "model.vision.film=true"],
    "keypoints-film": ["dataset.episodes=800", "training.max_steps=800", "training.learning_rate=0.001",
                       "training.warmup_steps=50", "model.vision_encoder=cnn-keypoints", "model.vision.pool=3",
                       "model.vision.film=true"],
    "film-batch16": ["dataset.episodes=800", "training.batch_size=16", "training.max_steps=2400",
                     "training.learning_rate=0.001", "training.warmup_steps=100", "model.vision.dim=32",
                     "model.vision.film=true"],
    # fine-tune the shipped push policy (trained on push, never on reach): its vision and language already find
    # the named block, so only the mapping to reach's actions is new
    "from-push-tiny": ["training.init_from=shipped:push-tiny", "dataset.episodes=300", "training.max_steps=300",
                       "training.learning_rate=0.0003", "training.warmup_steps=20"],
    "tiny-64px": ["dataset.episodes=300", "training.max_steps=400", "training.learning_rate=0.001",
                  "training.warmup_steps=40", "dataset.image_size=64", "model.image_size=64"],
}


def run_once(task: str, preset: str, overrides: list[str], eval_episodes: int, work: Path) -> dict:
    """One run end to end (datagen + BC + evaluation) in ``work``; its figures."""
    from vla_engine.config.presets import load_preset
    from vla_engine.runs.jobs import run_job
    from vla_engine.runs.run_dir import RunDir

    overrides = [f"dataset.task={task}", f"eval.task={task}", f"dataset.root={work / 'data' / task}",
                 f"dataset.repo_id=local/{task}", f"eval.episodes={eval_episodes}"] + overrides
    cfg = load_preset(preset, overrides)
    run = RunDir.create(work / "runs", f"bench-{task}", {"job": "train", **cfg.to_dict()})
    t0 = time.time()
    rc = run_job(run.path, progress=False)
    wall = time.time() - t0
    st = run.read_status()
    if rc != 0:
        sys.exit(f"FAILED: {st.error}")
    rows = [json.loads(l) for l in run.metrics_path.read_text().splitlines()]
    sps = sorted(r["perf/samples_per_s"] for r in rows if "perf/samples_per_s" in r)
    return {"cfg": cfg, "eval": st.eval, "wall": wall, "step": st.step, "run": run,
            "samples_per_s": sps[len(sps) // 2] if sps else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="reach")
    ap.add_argument("--episodes", type=int, default=None, help="default: the preset's")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    ap.add_argument("--eval-episodes", type=int, default=50)
    ap.add_argument("--preset", default="quickstart")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--candidates", default=None,
                    help=f"comma-separated Quick Start recipes to compare ({', '.join(CANDIDATES)}): a table of "
                         "success against wall time")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="vla-bench-"))
    if args.candidates:
        print(f"{'recipe':<12} {'episodes':>8} {'steps':>6} {'image':>5} {'success (95% CI)':>18} {'wall s':>7} "
              f"{'samples/s':>9}")
        for name in args.candidates.split(","):
            r = run_once(args.task, args.preset, CANDIDATES[name] + args.set, args.eval_episodes, work / name)
            ev, cfg = r["eval"], r["cfg"]
            print(f"{name:<12} {cfg.dataset.episodes:>8} {r['step']:>6} {cfg.model.image_size:>5} "
                  f"{ev['eval/success_rate']:>6.0%} ({ev['eval/success_ci_low']:.0%}-{ev['eval/success_ci_high']:.0%})"
                  f" {r['wall']:>7.0f} {r['samples_per_s']:>9.0f}", flush=True)
        return
    overrides = list(args.set)
    if args.episodes:
        overrides.append(f"dataset.episodes={args.episodes}")
    if args.steps:
        overrides.append(f"training.max_steps={args.steps}")
    r = run_once(args.task, args.preset, overrides, args.eval_episodes, work)
    ev, cfg, st_step = r["eval"], r["cfg"], r["step"]
    print(f"task={args.task} episodes={cfg.dataset.episodes} steps={st_step} model={cfg.model.vision_encoder}+"
          f"{cfg.model.llm}+{cfg.model.action_head}")
    print(f"success {ev['eval/success_rate']:.0%} (95% CI {ev['eval/success_ci_low']:.0%}-"
          f"{ev['eval/success_ci_high']:.0%}) over {ev['eval/episodes']} held-out seeds; "
          f"mean return {ev['eval/mean_return']:.2f}; mean length {ev['eval/mean_length']:.1f}")
    print(f"wall time {r['wall']:.0f} s in all (datagen + training + evaluation); "
          f"training {r['samples_per_s']:.0f} samples/s (median)")
    print(f"run folder: {r['run'].path}")


if __name__ == "__main__":
    main()
