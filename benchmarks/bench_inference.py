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

``--row NAME=REF[:FIELD=VALUE,...]``: REF is a run folder, run id or checkpoint folder, or several joined by
``+`` (one recipe trained with several seeds): each plays the same seeds, and the row pools their episodes
(paired with the first row's runs in the same order). Each finished checkpoint is kept in ``--out/NAME-K.json``
and read back when asked again with the same checkpoint and settings, so rows can be played side by side (one
process each, ``--threads 1``) and the table printed at the end from them all.

    python benchmarks/bench_inference.py --task push --episodes 500 --out W/pooled \
        --row mlp=W0/runs/push-mlp+W1/runs/push-mlp --row transformer=W0/runs/push-transformer+W1/runs/push-transformer
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from vla_engine.config.run_config import EVAL_SEED_START


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
    ap.add_argument("--seed-start", type=int, default=EVAL_SEED_START, help="first held-out seed")
    ap.add_argument("--row", action="append", required=True, help="NAME=REF[:FIELD=VALUE,...]")
    ap.add_argument("--out", required=True, help="folder for the rows' per-seed results")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()

    import torch

    from vla_engine.config.model_config import parse_inference_overrides
    from vla_engine.eval.evaluator import evaluate_policy
    from vla_engine.eval.metrics import paired_comparison, summarize_episodes
    from vla_engine.models import VLAModel
    from vla_engine.runs.jobs import resolve_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def play(name: str, k: int, ref: str, inference: dict) -> dict:
        ckpt = resolve_checkpoint(ref)
        key = {"checkpoint": str(ckpt.resolve()), "inference": inference, "task": args.task,
               "episodes": args.episodes, "seed_start": args.seed_start}
        path = out / f"{name}-{k}.json"
        if path.exists() and json.loads(path.read_text()).get("key") == key:
            return json.loads(path.read_text())
        model = VLAModel.from_pretrained(ckpt).configure_inference(**inference)
        t0 = time.time()
        ev = evaluate_policy(model, args.task, episodes=args.episodes, seed_start=args.seed_start,
                             num_videos=0, progress=False)
        run = {"key": key, "wall_s": time.time() - t0, "episodes": [
            {"success": bool(e["success"]), "return": e["return"], "length": e["length"],
             "ms_per_step": e["ms_per_step"]} for e in ev.episodes]}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(run))
        os.replace(tmp, path)
        return run

    rows = []
    for text in args.row:
        name, refs, settings = parse_row(text)
        inference = parse_inference_overrides(settings)
        runs = [play(name, k, ref, inference) for k, ref in enumerate(refs.split("+"))]
        eps = [e for r in runs for e in r["episodes"]]
        summary = summarize_episodes(eps)
        summary["eval/ms_per_step"] = sum(e["ms_per_step"] for e in eps) / len(eps)
        per_run = [sum(e["success"] for e in r["episodes"]) / len(r["episodes"]) for r in runs]
        rows.append((name, summary, [bool(e["success"]) for e in eps], per_run))
        print(f"{name}: success {summary['eval/success_rate']:.1%} (runs: "
              f"{', '.join(f'{x:.0%}' for x in per_run)}; {sum(r['wall_s'] for r in runs):.0f} s)", flush=True)

    print(f"\ntask={args.task} seeds {args.seed_start}..{args.seed_start + args.episodes - 1} per checkpoint")
    print(f"{'row':14s} {'runs':>5s} {'success':>8s} {'95% CI':>12s} {'per run':>16s} {'length':>7s} {'ms/step':>8s}"
          f"  vs {rows[0][0]} (only this / only that, McNemar p)")
    for name, s, wins, per_run in rows:
        ci = f"{s['eval/success_ci_low']:.1%}-{s['eval/success_ci_high']:.1%}"
        runs = "/".join(f"{100 * x:.0f}" for x in per_run)
        line = (f"{name:14s} {len(per_run):5d} {s['eval/success_rate']:8.1%} {ci:>12s} {runs:>16s} "
                f"{s['eval/mean_length']:7.1f} {s['eval/ms_per_step']:8.1f}")
        if name != rows[0][0]:
            if len(wins) == len(rows[0][2]):
                c = paired_comparison(wins, rows[0][2])
                line += f"  {c['difference']:+.1%} ({c['a_only']} / {c['b_only']}, p = {c['p_value']:.2g})"
            else:
                line += "  (not paired: another number of runs)"
        print(line)


if __name__ == "__main__":
    main()
