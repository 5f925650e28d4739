"""Train the small checkpoint that ships with the package, by the project's own recipe, and put it in
``vla_engine/pretrained/<name>/`` (what the app's Rollouts and Benchmark tabs offer on a fresh start).

    make shipped-checkpoint                      # = python tools/ship_checkpoint.py
    python tools/ship_checkpoint.py --name reach-tiny --preset quickstart --set training.max_steps=3000
    python tools/ship_checkpoint.py --name push-tiny --preset il-bc --from-run RUN_DIR   # package a finished run

The recipe is a preset plus overrides, run through the same job as ``vla train`` (expert
demonstrations -> LeRobot v3 -> behaviour cloning -> held-out evaluation). The folder gets the run's
``config.yaml`` (so tools know the task and recipe), the final checkpoint in ``checkpoint/``, and a
``README.md`` with the command, the measured success and the training time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import vla_engine

PRETRAINED = Path(vla_engine.__file__).resolve().parent / "pretrained"  # the package's own folder

DEFAULT_SET: list[str] = []  # the quickstart preset as it is


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="reach-tiny")
    ap.add_argument("--preset", default="quickstart")
    ap.add_argument("--set", action="append", default=None, metavar="SECTION.FIELD=VALUE",
                    help="overrides of the preset (default: none, the preset as it is)")
    ap.add_argument("--eval-episodes", type=int, default=50)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--from-run", default=None, metavar="RUN_DIR",
                    help="package this finished, evaluated run of the same preset instead of training anew")
    args = ap.parse_args()
    overrides = DEFAULT_SET if args.set is None else args.set

    import yaml

    from vla_engine.config.presets import load_preset
    from vla_engine.runs.jobs import run_job
    from vla_engine.runs.run_dir import RunDir

    if args.from_run:
        run = RunDir(args.from_run)
        st = run.read_status()
        if st.get("state") != "done" or "eval" not in st:
            sys.exit(f"{args.from_run} is not a finished, evaluated training run (status: {st.get('state')})")
        cfg = load_preset(args.preset, overrides)
        wall = float(st.get("ended_at", 0) - st.get("started_at", 0)) if st.get("started_at") else 0.0
    else:
        work = Path(args.workdir or tempfile.mkdtemp(prefix="vla-ship-"))
        cfg = load_preset(args.preset, [f"dataset.root={work / 'data'}", f"eval.episodes={args.eval_episodes}",
                                        *overrides])
        run = RunDir.create(work / "runs", args.name, {"job": "train", **cfg.to_dict()})
        t0 = time.time()
        if run_job(run.path) != 0:
            sys.exit(f"training failed: {run.read_status().get('error')}")
        wall = time.time() - t0
        st = run.read_status()
    ckpt = run.last_checkpoint()
    ev = st["eval"]

    dest = PRETRAINED / args.name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(ckpt, dest / "checkpoint", ignore=shutil.ignore_patterns("optimizer.pt", "trainer_state.json",
                                                                             "rng_state*", "*.tmp*"))
    run_cfg = yaml.safe_load((run.path / "config.yaml").read_text())
    run_cfg["dataset"]["root"] = None  # the temporary folder is gone; the task regenerates the data
    (dest / "config.yaml").write_text(yaml.safe_dump(run_cfg, sort_keys=False))
    cmd = "python tools/ship_checkpoint.py --name {} --preset {}{}".format(
        args.name, args.preset, "".join(f" --set {o}" for o in overrides))
    summary = {"name": args.name, "task": cfg.eval.task, "preset": args.preset, "overrides": overrides,
               "command": cmd, "steps": st.get("step"), "wall_s": round(wall), "eval": ev,
               "created": time.strftime("%Y-%m-%d")}
    (dest / "shipped.json").write_text(json.dumps(summary, indent=1) + "\n")
    (dest / "README.md").write_text(
        f"# {args.name}\n\nThe small checkpoint shipped with vla_engine: preset `{args.preset}` on the built-in "
        f"`{cfg.eval.task}` task ({cfg.dataset.episodes} expert episodes, {st.get('step')} steps of behaviour "
        f"cloning, {wall:.0f} s on {os.cpu_count()} CPU cores).\n\n"
        f"Success on {ev['eval/episodes']} held-out seeds: **{ev['eval/success_rate']:.0%}** "
        f"(95% CI {ev['eval/success_ci_low']:.0%}-{ev['eval/success_ci_high']:.0%}).\n\n"
        f"Reproduce:\n\n    {cmd}\n\nUse: `vla eval shipped:{args.name} --task {cfg.eval.task}`, or pick "
        f"`shipped:{args.name}` in the app's Rollouts and Benchmark tabs.\n")
    print(f"shipped {dest} (success {ev['eval/success_rate']:.0%}, {wall:.0f} s)")


if __name__ == "__main__":
    main()
