"""One table: trained checkpoints, each acting one or more ways, on the same held-out seeds.

How a chunking policy turns its chunks into actions is set after training (``n_action_steps``, ACT's
``temporal_ensemble_coeff``, diffusion ``num_inference_steps`` / ``use_ddim``), so one checkpoint gives
several rows. Every row plays the same seeds; each is compared with the first row seed by seed
(McNemar's exact test).

    python benchmarks/bench_inference.py --task push --episodes 200 --out W/inference \\
        --row mlp=W/runs/push-mlp \\
        --row replan=W/runs/push-transformer:n_action_steps=1 \\
        --row ens-1=W/runs/push-transformer:temporal_ensemble_coeff=-1 \\
        --row open4=W/runs/push-transformer:n_action_steps=4

``--row NAME=REF[:FIELD=VALUE,...]``: REF is a run folder, run id or checkpoint folder. Each finished row is
kept in ``--out/NAME.json`` and read back when asked again with the same checkpoint and settings, so rows can
be played side by side (one process each, ``--threads 1``) and the table printed at the end from them all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_row(text: str) -> tuple[str, str, list[str]]:
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        sys.exit(f"--row {text!r} must look like NAME=REF[:FIELD=VALUE,...], e.g. replan=runs/push-tf:n_action_steps=1")
    ref, _, settings = rest.partition(":")
    return name, ref, [s for s in settings.split(",") if s]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="push")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seed-start", type=int, default=1_000_000)
    ap.add_argument("--row", action="append", required=True, help="NAME=REF[:FIELD=VALUE,...]")
    ap.add_argument("--out", required=True, help="folder for the rows' per-seed results")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()

    import torch

    from vla_engine.config.model_config import parse_inference_overrides
    from vla_engine.eval.evaluator import evaluate_policy
    from vla_engine.eval.metrics import paired_comparison
    from vla_engine.models import VLAModel
    from vla_engine.runs.jobs import resolve_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for text in args.row:
        name, ref, settings = parse_row(text)
        inference = parse_inference_overrides(settings)
        ckpt = resolve_checkpoint(ref)
        key = {"checkpoint": str(ckpt.resolve()), "inference": inference, "task": args.task,
               "episodes": args.episodes, "seed_start": args.seed_start}
        path = out / f"{name}.json"
        if path.exists() and json.loads(path.read_text()).get("key") == key:
            row = json.loads(path.read_text())
        else:
            model = VLAModel.from_pretrained(ckpt).configure_inference(**inference)
            t0 = time.time()
            ev = evaluate_policy(model, args.task, episodes=args.episodes, seed_start=args.seed_start,
                                 num_videos=0, progress=False)
            row = {"key": key, "summary": ev.summary, "wall_s": time.time() - t0,
                   "success": [bool(e["success"]) for e in ev.episodes]}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(row))
            os.replace(tmp, path)
        rows.append((name, row))
        print(f"{name}: success {row['summary']['eval/success_rate']:.0%} ({row['wall_s']:.0f} s)", flush=True)

    print(f"\ntask={args.task} episodes={args.episodes} seeds {args.seed_start}..{args.seed_start + args.episodes - 1}")
    print(f"{'row':14s} {'success':>8s} {'95% CI':>10s} {'length':>7s} {'ms/step':>8s}  vs {rows[0][0]} "
          f"(only this / only that, McNemar p)")
    for name, row in rows:
        s = row["summary"]
        ci = f"{s['eval/success_ci_low']:.0%}-{s['eval/success_ci_high']:.0%}"
        line = (f"{name:14s} {s['eval/success_rate']:8.0%} {ci:>10s} {s['eval/mean_length']:7.1f} "
                f"{s.get('eval/ms_per_step', float('nan')):8.1f}")
        if name != rows[0][0]:
            c = paired_comparison(row["success"], rows[0][1]["success"])
            line += f"  {c['difference']:+.0%} ({c['a_only']} / {c['b_only']}, p = {c['p_value']:.3f})"
        print(line)


if __name__ == "__main__":
    main()
