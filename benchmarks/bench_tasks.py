"""Success figures for the built-in tasks, end to end from an empty folder, with wall time.

    python benchmarks/bench_tasks.py --task reach            # target: >= 90% in <= 10 min, datagen included
    python benchmarks/bench_tasks.py --task push             # target: >= 60% with the MLP head

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="reach")
    ap.add_argument("--episodes", type=int, default=None, help="default: the preset's")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    ap.add_argument("--eval-episodes", type=int, default=50)
    ap.add_argument("--preset", default="quickstart")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    from vla_engine.config.presets import load_preset
    from vla_engine.runs.jobs import run_job
    from vla_engine.runs.run_dir import RunDir

    work = Path(args.workdir or tempfile.mkdtemp(prefix="vla-bench-"))
    overrides = [f"dataset.task={args.task}", f"eval.task={args.task}", f"dataset.root={work / 'data' / args.task}",
                 f"dataset.repo_id=local/{args.task}", f"eval.episodes={args.eval_episodes}"] + args.set
    if args.episodes:
        overrides.append(f"dataset.episodes={args.episodes}")
    if args.steps:
        overrides.append(f"training.max_steps={args.steps}")
    cfg = load_preset(args.preset, overrides)
    run = RunDir.create(work / "runs", f"bench-{args.task}", {"job": "train", **cfg.to_dict()})
    t0 = time.time()
    rc = run_job(run.path, progress=False)
    wall = time.time() - t0
    st = run.read_status()
    if rc != 0:
        print(f"FAILED: {st.get('error')}")
        sys.exit(1)
    ev = st["eval"]
    rows = [json.loads(l) for l in run.metrics_path.read_text().splitlines()]
    sps = [r["perf/samples_per_s"] for r in rows if "perf/samples_per_s" in r]
    print(f"task={args.task} episodes={cfg.dataset.episodes} steps={st['step']} model={cfg.model.vision_encoder}+"
          f"{cfg.model.llm}+{cfg.model.action_head}")
    print(f"success {ev['eval/success_rate']:.0%} (95% CI {ev['eval/success_ci_low']:.0%}-"
          f"{ev['eval/success_ci_high']:.0%}) over {ev['eval/episodes']} held-out seeds; "
          f"mean return {ev['eval/mean_return']:.2f}; mean length {ev['eval/mean_length']:.1f}")
    print(f"wall time {wall:.0f} s in all (datagen + training + evaluation); "
          f"training {sorted(sps)[len(sps) // 2]:.0f} samples/s (median)")
    print(f"run folder: {run.path}")


if __name__ == "__main__":
    main()
