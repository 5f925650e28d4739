"""LoRA vs full fine-tuning of the tiny VLA on a built-in task, from the same base, with the same budget.

    python benchmarks/bench_lora.py                                   # push: base 1500 steps, then 1500 each way
    python benchmarks/bench_lora.py --base runs/<id>/checkpoints/step-N --steps 1000
    python benchmarks/bench_lora.py --base-task reach --task push     # transfer: base on reach, tune on push
    python benchmarks/bench_lora.py --steps 20 --base-steps 20 --episodes 5 --eval-episodes 2   # does it run?
    # the LoRA target row (200 seeds: the 95% interval of 50 is +-13 points, too wide for a 5-point target):
    python benchmarks/bench_lora.py --base <il-bc reach checkpoint> --base-task reach --task push \
        --episodes 1000 --steps 3000 --eval-episodes 200 --no-base-eval --lr-lora 6e-3

What it does, and why:

1. The base. LoRA adapts a *pretrained* language model; with no model hub reachable, the base is a
   VLA trained here: behaviour cloning (preset ``il-bc``) on ``--base-task`` (default: the task itself)
   for ``--base-steps`` through the job path (``load_preset`` + ``run_job``, as ``bench_tasks.py``), or
   ``--base CHECKPOINT`` to start from any VLA checkpoint. Its success is measured too (the reference).
2. Two fine-tuning legs from that same checkpoint, on the same demonstrations, with the same budget
   (``--steps`` optimiser steps of ``--batch-size``, the same warmup and schedule, EMA off):
   ``finetune-lora`` (LoRA r=``--lora-r``, alpha 2r, with the preset's ``lora_scope: all``: adapters on the
   LM's q/k/v/o and on the vision encoder's convs, the projector, FiLM and head; their base weights frozen;
   norms, position embedding and layers too small for an adapter train; under 5% of the tiny VLA at r=4) and
   ``finetune-full`` (every weight trains). Each leg keeps its preset's learning rate (LoRA 3e-3, full 1e-4;
   ``--lr-lora`` / ``--lr-full`` change them); ``--lora-set training.lora_scope=lm`` / ``policy`` measures
   the narrower scopes. The job
   path has no "start from a checkpoint" option, so the legs are built here from the same pieces the
   job uses (``prepare_datasets``, ``VLAFineTuner`` writing a run folder, ``evaluate_policy``).
3. For each: trainable parameters / total, the final training loss, and closed-loop success on
   held-out seeds (from ``EVAL_SEED_START`` up) with a 95% Wilson interval.

Measured tables, with their commands: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the base is trained here; nothing is fetched


def _data_overrides(task: str, work: Path, episodes: int) -> list[str]:
    return [f"dataset.task={task}", f"dataset.root={work / 'data' / task}", f"dataset.repo_id=local/{task}",
            f"dataset.episodes={episodes}", f"eval.task={task}"]


def train_base(args, work: Path) -> Path:
    """BC on the base task through the job path; returns the last checkpoint."""
    from vla_engine.config.presets import load_preset
    from vla_engine.runs.jobs import run_job
    from vla_engine.runs.run_dir import RunDir

    task = args.base_task or args.task
    cfg = load_preset("il-bc", _data_overrides(task, work, args.episodes) + [
        f"training.max_steps={args.base_steps}", f"training.batch_size={args.batch_size}",
        f"training.warmup_steps={min(args.warmup, args.base_steps)}", "eval.after_training=false"] + args.set)
    run = RunDir.create(work / "runs", f"base-{task}", {"job": "train", **cfg.to_dict()})
    t0 = time.time()
    if run_job(run.path, progress=False) != 0:
        sys.exit(f"FAILED base training: {run.read_status().error}")
    ckpt = run.last_checkpoint()
    print(f"base: BC on {task}, {args.episodes} episodes, {args.base_steps} steps in {time.time() - t0:.0f} s -> {ckpt}")
    return ckpt


def finetune_leg(args, work: Path, base: Path, mode: str) -> dict:
    """Fine-tune a copy of ``base`` with the ``finetune-lora`` or ``finetune-full`` preset; evaluate it."""
    from vla_engine.config.presets import load_preset
    from vla_engine.eval.evaluator import evaluate_policy
    from vla_engine.models import VLAModel
    from vla_engine.models.lora import lora_parameter_stats
    from vla_engine.runs.jobs import prepare_datasets
    from vla_engine.runs.run_dir import RunDir
    from vla_engine.train.finetune import VLAFineTuner

    lora = mode == "lora"
    lr = args.lr_lora if lora else args.lr_full
    overrides = _data_overrides(args.task, work, args.episodes) + [
        f"training.max_steps={args.steps}", f"training.batch_size={args.batch_size}",
        f"training.warmup_steps={min(args.warmup, args.steps)}", "training.ema_decay=0.0",
        "training.lr_scheduler=cosine", f"training.save_every={max(args.steps, 1)}",
        f"eval.episodes={args.eval_episodes}"]
    if lora:
        overrides += [f"training.lora_r={args.lora_r}", f"training.lora_alpha={2 * args.lora_r}"]
    if lr is not None:
        overrides.append(f"training.learning_rate={lr}")
    leg_set = args.lora_set if lora else args.full_set
    cfg = load_preset("finetune-lora" if lora else "finetune-full", overrides + args.set + leg_set)
    model = VLAModel.from_pretrained(base).train()
    cfg = cfg.replace(model=model.config)  # data chunking etc. follow the base model
    run = RunDir.create(work / "runs", f"finetune-{mode}-{args.task}", {"job": "train", **cfg.to_dict()})
    dataset, _ = prepare_datasets(cfg, run, progress=False)
    t0 = time.time()
    result = VLAFineTuner(model, config=cfg.training, run_dir=run, progress=False).train(dataset)
    train_s = time.time() - t0
    trainable, total = lora_parameter_stats(model)
    ev = evaluate_policy(model, args.task, episodes=args.eval_episodes, num_videos=0, progress=False)
    run.log(ev.format())
    return {"mode": mode, "lr": cfg.training.learning_rate, "trainable": trainable, "total": total,
            "loss": result.final_loss, "train_s": train_s, "eval": ev.summary, "run": run.path}


def _success(s: dict) -> str:
    return (f"{s['eval/success_rate']:6.1%}  [{s['eval/success_ci_low']:.0%}-{s['eval/success_ci_high']:.0%}] "
            f"of {s['eval/episodes']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="push", help="the task fine-tuned and evaluated on")
    ap.add_argument("--base", default=None, help="a VLA checkpoint folder to start from (skips base training)")
    ap.add_argument("--base-task", default=None, help="task the base is trained on (default: --task)")
    ap.add_argument("--base-steps", type=int, default=1500)
    ap.add_argument("--steps", type=int, default=1500, help="fine-tuning steps, the same for both legs")
    ap.add_argument("--episodes", type=int, default=200, help="demonstration episodes (base and fine-tuning)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--lora-r", type=int, default=4, help="adapter rank (alpha = 2r); 4 keeps the tiny VLA under 5%%")
    ap.add_argument("--lr-lora", type=float, default=None, help="default: the finetune-lora preset's")
    ap.add_argument("--lr-full", type=float, default=None, help="default: the finetune-full preset's")
    ap.add_argument("--eval-episodes", type=int, default=50)
    ap.add_argument("--no-base-eval", action="store_true", help="skip evaluating the base checkpoint")
    ap.add_argument("--set", action="append", default=[], help="extra SECTION.FIELD=VALUE for every run")
    ap.add_argument("--lora-set", action="append", default=[],
                    help="overrides for the LoRA leg only, e.g. training.freeze_vision=true")
    ap.add_argument("--full-set", action="append", default=[], help="overrides for the full leg only")
    ap.add_argument("--legs", nargs="+", default=["lora", "full"], choices=["lora", "full"],
                    help="which fine-tuning legs to run (run them as two processes with --base to use two cores)")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    from vla_engine.eval.evaluator import evaluate_policy
    from vla_engine.models import VLAModel

    work = Path(args.workdir or tempfile.mkdtemp(prefix="vla-bench-lora-"))
    t_all = time.time()
    base = Path(args.base) if args.base else train_base(args, work)
    rows = []
    if not args.no_base_eval:
        m = VLAModel.from_pretrained(base)
        ev = evaluate_policy(m, args.task, episodes=args.eval_episodes, num_videos=0, progress=False)
        rows.append({"mode": "base (no fine-tuning)", "trainable": 0, "total": m.num_parameters(), "loss": None,
                     "lr": None, "train_s": 0.0, "eval": ev.summary})
    for mode in args.legs:
        rows.append(finetune_leg(args, work, base, mode))

    print(f"\ntask={args.task} base={base} fine-tuning: {args.steps} steps x batch {args.batch_size}, "
          f"{args.episodes} episodes; success over {args.eval_episodes} held-out seeds (95% Wilson CI)")
    print(f"{'':24s} {'lr':>8s} {'trainable':>10s} {'of total':>10s} {'frac':>7s} {'loss':>8s} {'train s':>8s}  success")
    for r in rows:
        lr = f"{r['lr']:.0e}" if r["lr"] else "-"
        loss = f"{r['loss']:.4f}" if r["loss"] is not None else "-"
        print(f"{r['mode']:24s} {lr:>8s} {r['trainable']:>10,} {r['total']:>10,} {r['trainable'] / r['total']:>7.2%} "
              f"{loss:>8s} {r['train_s']:>8.0f}  {_success(r['eval'])}")
    by = {r["mode"]: r for r in rows}
    if "lora" in by and "full" in by:
        lo, fu = by["lora"], by["full"]
        gap = 100 * (fu["eval"]["eval/success_rate"] - lo["eval"]["eval/success_rate"])
        frac = lo["trainable"] / lo["total"]
        ok = frac <= 0.05 and gap <= 5
        print(f"LoRA trains {frac:.2%} of the parameters and is {gap:+.1f} points from full fine-tuning "
              f"(target: <= 5% and <= 5 points below): {'met' if ok else 'not met'}")
    print(f"wall time {time.time() - t_all:.0f} s; runs in {work / 'runs'}")


if __name__ == "__main__":
    main()
