"""DAgger against BC on push with the same number of expert labels, on the same held-out seeds.

    python benchmarks/bench_dagger.py --demos 50 --iterations 4 --rollouts 15 --steps 400 --eval 200

Both runs are `vla train` jobs (presets ``il-dagger`` and ``il-bc``), one torch thread each, the same model,
the same start (``--init``: the shipped reach policy, so both begin able to find the named block but not to
push it) and the same gradient steps. DAgger warm-starts on ``--demos`` expert episodes, then each iteration
rolls out the learner mixed with the expert (share ``--beta``) and labels every visited state. BC then gets
expert demonstrations (the same first episodes, then more) until it holds at least as many labels
as DAgger's total (demos + rollouts).
Both checkpoints are evaluated on the same ``--eval`` seeds (1,000,000 up); the printout is each success
rate with its Wilson interval and McNemar's exact test on the paired outcomes.
Figures go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def train(preset: str, name: str, overrides: list[str], work: Path) -> tuple[Path, dict, float]:
    """One `vla train` job in the foreground; (run folder, final status, wall seconds)."""
    from vla_engine.config.presets import load_preset
    from vla_engine.runs.jobs import run_job
    from vla_engine.runs.run_dir import RunDir

    cfg = load_preset(preset, overrides)
    run = RunDir.create(work / "runs", name, {"job": "train", **cfg.to_dict()})
    t0 = time.time()
    if run_job(run.path, progress=False) != 0:
        sys.exit(f"{name} FAILED: {run.read_status().error}")
    return run.path, run.read_status().to_dict(), time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="push")
    ap.add_argument("--init", default="shipped:reach-tiny", help="the checkpoint both start from ('' = scratch)")
    ap.add_argument("--demos", type=int, default=50, help="DAgger's warm-start demonstrations")
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--rollouts", type=int, default=15, help="DAgger episodes per iteration")
    ap.add_argument("--beta", type=float, default=0.25, help="the expert's share of the rollouts' actions")
    ap.add_argument("--rollout-max", type=int, default=None, help="cut DAgger's rollouts at this many steps")
    ap.add_argument("--steps", type=int, default=400, help="gradient steps per DAgger fit (BC: all of them)")
    ap.add_argument("--eval", type=int, default=200, help="held-out seeds for both")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--set", action="append", default=[], help="override for both runs")
    a = ap.parse_args()

    from vla_engine.data import generate_dataset
    from vla_engine.eval.evaluator import evaluate_policy
    from vla_engine.eval.metrics import paired_comparison, wilson_interval
    from vla_engine.models import VLAModel
    from vla_engine.runs.run_dir import RunDir

    work = Path(a.workdir or tempfile.mkdtemp(prefix="vla-dagger-"))
    common = [f"training.init_from={a.init}", "training.num_threads=1", "eval.after_training=false",
              "training.batch_size=64", "training.warmup_steps=20"]
    if a.init:  # the start's architecture (the shipped reach policy has no FiLM; push-tiny has: --set it)
        common.append("model.vision.film=false")
    common += a.set  # last, so that they win
    demos = generate_dataset(a.task, a.demos, work / "demos", progress=False)
    t0 = time.time()
    d_run, _, d_wall = train("il-dagger", "dagger", common + [
        f"dataset.root={demos}", f"dataset.repo_id=local/{a.task}", f"dataset.task={a.task}",
        f"dataset.episodes={a.demos}", f"eval.task={a.task}", f"training.num_iterations={a.iterations}",
        f"training.rollouts_per_iteration={a.rollouts}", "training.beta_schedule=constant",
        f"training.beta={a.beta}", f"training.max_steps={a.steps}", "training.eval_episodes_per_iteration=0",
        f"training.rollout_max_steps={a.rollout_max or 'null'}"], work)
    rows = [json.loads(x) for x in (d_run / "metrics.jsonl").read_text().splitlines()]
    rollout_labels = max(r.get("dagger/expert_labels", 0) for r in rows)
    demo_frames = json.loads((Path(demos) / "meta" / "info.json").read_text())["total_frames"]
    labels = demo_frames + rollout_labels
    print(f"DAgger: {a.demos} demos ({demo_frames} labels) + {rollout_labels} rollout labels = {labels}; "
          f"{(a.iterations + 1) * a.steps} steps; {d_wall:.0f} s", flush=True)

    # BC: expert episodes until it has at least DAgger's labels (episodes after the demos' seeds)
    per_ep = demo_frames / a.demos
    n_bc = int(labels / per_ep) + 1
    while True:
        bc_data = generate_dataset(a.task, n_bc, work / f"bc-{n_bc}", progress=False)
        bc_frames = json.loads((Path(bc_data) / "meta" / "info.json").read_text())["total_frames"]
        if bc_frames >= labels:
            break
        n_bc += max(1, int((labels - bc_frames) / per_ep) + 1)
    b_run, _, b_wall = train("il-bc", "bc", common + [
        f"dataset.root={bc_data}", f"dataset.repo_id=local/{a.task}", f"dataset.task={a.task}",
        f"dataset.episodes={n_bc}", f"eval.task={a.task}", f"training.max_steps={(a.iterations + 1) * a.steps}"],
        work)
    print(f"BC: {n_bc} demos ({bc_frames} labels); {(a.iterations + 1) * a.steps} steps; {b_wall:.0f} s", flush=True)

    import torch

    torch.set_num_threads(1)
    results = {}
    for name, run in (("DAgger", d_run), ("BC", b_run)):
        model = VLAModel.from_pretrained(RunDir(run).last_checkpoint())
        ev = evaluate_policy(model, a.task, episodes=a.eval, num_videos=0, progress=False)
        results[name] = [bool(e["success"]) for e in ev.episodes]
        lo, hi = wilson_interval(sum(results[name]), a.eval)
        print(f"{name:<7} success {sum(results[name]) / a.eval:.1%} (95% CI {lo:.0%}-{hi:.0%}) on {a.eval} seeds",
              flush=True)
    cmp = paired_comparison(results["DAgger"], results["BC"])
    gain = (sum(results["DAgger"]) - sum(results["BC"])) / a.eval
    print(f"DAgger - BC: {gain * 100:+.1f} points; seeds only DAgger solved {cmp['a_only']}, only BC "
          f"{cmp['b_only']}; McNemar p = {cmp['p_value']:.3g} (target: >= +10 points, p < 0.05); "
          f"total {time.time() - t0:.0f} s; runs in {work}")


if __name__ == "__main__":
    main()
