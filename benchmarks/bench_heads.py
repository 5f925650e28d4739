"""One table: success on a built-in task per action head, same data and training budget for each row.

    python benchmarks/bench_heads.py --task push --steps 3000 --episodes 300
    python benchmarks/bench_heads.py --heads mlp transformer --steps 200 --episodes 20 --eval-episodes 5   # quick look

Every row trains the "tiny" VLA on the same generated dataset (made once, reused) with the same
preset, steps, batch size and learning rate; only the head (and the chunking it uses) differs:

    mlp          MLP regression of one action (the baseline every other row is compared with)
    mlp-chunk    MLP regression of an 8-step chunk, 4 executed
    gaussian     Gaussian MLP (NLL), mean at inference
    diffusion    DDPM training (predicting the clean chunk, 8 noise draws per example), DDIM 10-step
                 sampling, 8-step chunks, re-planned every step
    transformer  ACT-style transformer head, 8-step chunks, the first action of each new chunk executed, MSE
    transformer-ens  the same with ACT's temporal ensembling (coeff 0.01)
    flow         flow-matching expert (SmolVLA-style), 8-step chunks, 4 executed
    tokens       OpenVLA-style action tokens (256 bins) through the LM

Chunk labels: the dataset records the expert's noise-free plan from every frame (--plan-horizon, 8 by
default), and the chunking rows learn their chunks from it (dataset.chunk_labels=auto). The recorded
actions t+1, t+2, ... of DART data (noise on the executed actions) answer noise that the observation
at t cannot foresee; --chunk-labels recorded trains on those instead. The mlp row (one action) is
the same either way.

Success is measured on held-out seeds (from ``EVAL_SEED_START`` up) with a Wilson 95% interval. Every row plays the
same seeds, so each head is also compared with the MLP row seed by seed (McNemar's exact test): the
seeds only one of the two solved decide it, which two overlapping Wilson intervals cannot.

Training runs differ more than evaluation seeds do, so compare heads over several training seeds:
train each head once per seed in its own --workdir (--set training.seed=S, the data symlinked from the
first), then play them all on the same seeds with bench_inference.py, whose row pools one recipe's runs
(REF+REF+...) and pairs them run by run with the first row. bench_inference.py also sets how a trained
chunking head acts (n_action_steps, temporal_ensemble_coeff). Measured tables, with their commands:
docs/benchmarks.md.

Rows can train side by side, one process each, in one --workdir; then --reuse prints the whole table
from the finished runs without training again:

    for h in mlp transformer diffusion; do python benchmarks/bench_heads.py --heads $h --workdir W ... & done; wait
    python benchmarks/bench_heads.py --heads mlp transformer diffusion --workdir W ... --reuse
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

CHUNK = ["model.chunk_size=8", "model.n_action_steps=4", "dataset.chunk_size=8"]
HEADS: dict[str, list[str]] = {
    "mlp": ["model.action_head=mlp"],
    "mlp-chunk": ["model.action_head=mlp", *CHUNK],
    "gaussian": ["model.action_head=gaussian"],
    # predicts the clean chunk ("sample") rather than the noise: the x0 loss gives the encoder a regression-like
    # gradient, and it trained far better on push than epsilon prediction (docs/benchmarks.md). Re-planned every
    # step, as the transformer row; bench_inference.py ...:n_action_steps=4 plays the same checkpoint open loop
    "diffusion": ["model.action_head=diffusion", "model.chunk_size=8", "model.n_action_steps=1",
                  "dataset.chunk_size=8", "model.head.num_inference_steps=10", "model.head.use_ddim=true",
                  "model.head.prediction_type=sample", "model.head.noise_samples=8"],
    # 8-step chunks, re-planned every step: the first action of each new chunk is executed. MSE, as the MLP row:
    # ACT's L1 trained far worse on push (docs/benchmarks.md); --set model.action_loss=l1 trains it again
    "transformer": ["model.action_head=transformer", "model.chunk_size=8", "model.n_action_steps=1",
                    "dataset.chunk_size=8", "model.action_loss=mse"],
    # the same with ACT's temporal ensembling (coeff 0.01) over every chunk predicted so far
    "transformer-ens": ["model.action_head=transformer", "model.chunk_size=8", "model.n_action_steps=1",
                        "dataset.chunk_size=8", "model.temporal_ensemble_coeff=0.01", "model.action_loss=mse"],
    "flow": ["model.action_head=flow", *CHUNK],
    "tokens": ["model.action_head=tokens"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="push")
    ap.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    ap.add_argument("--preset", default="il-bc")
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--eval-episodes", type=int, default=50)
    ap.add_argument("--plan-horizon", type=int, default=8, help="expert plan steps recorded per frame (0: none)")
    ap.add_argument("--chunk-labels", default="auto", choices=("auto", "recorded", "plan"),
                    help="where the chunking rows' action chunks come from")
    ap.add_argument("--set", action="append", default=[], help="extra overrides for every row (win over its own)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--reuse", action="store_true",
                    help="read rows already trained and evaluated in --workdir with the same config")
    args = ap.parse_args()

    import yaml

    from vla_engine.config.presets import load_preset
    from vla_engine.eval.metrics import paired_comparison
    from vla_engine.runs.jobs import run_job
    from vla_engine.runs.run_dir import RunDir

    work = Path(args.workdir or tempfile.mkdtemp(prefix="vla-bench-heads-"))
    data = work / "data" / args.task
    common = [f"dataset.task={args.task}", f"eval.task={args.task}", f"dataset.root={data}",
              f"dataset.repo_id=local/{args.task}", f"dataset.episodes={args.episodes}",
              f"training.max_steps={args.steps}", f"eval.episodes={args.eval_episodes}",
              f"dataset.plan_horizon={args.plan_horizon}", f"dataset.chunk_labels={args.chunk_labels}"]
    rows, per_seed = [], {}
    for head in args.heads:
        cfg = load_preset(args.preset, common + HEADS[head] + args.set)  # --set wins over the row's defaults
        config = {"job": "train", **cfg.to_dict()}
        run = RunDir(work / "runs" / f"{args.task}-{head}")
        t0 = time.time()
        if run.exists():
            if not args.reuse:
                sys.exit(f"{run.path} already exists; pass --reuse to read the finished row, or use a fresh --workdir")
            if run.read_config() != yaml.safe_load(yaml.safe_dump(config)):
                sys.exit(f"{run.path} was trained with other settings than this row's; remove it or use another --workdir")
            st = run.read_status()
            if st.state != "done" or st.eval is None:
                sys.exit(f"{run.path} has not finished training and evaluation (state {st.state}); "
                         f"wait for it, or remove it to train the row again")
            wall = float(st.ended_at or t0) - float(st.started_at or t0)
        else:
            run = RunDir.create(work / "runs", f"{args.task}-{head}", config)
            rc = run_job(run.path, progress=False)
            wall = time.time() - t0
            st = run.read_status()
            if rc != 0:
                print(f"{head}: FAILED: {st.error}", flush=True)
                continue
        ev = st.eval
        ms = ev.get("eval/ms_per_step")
        rows.append((head, ev["eval/success_rate"], ev["eval/success_ci_low"], ev["eval/success_ci_high"],
                     ev["eval/mean_return"], ms, wall))
        results = run.videos_dir / f"{args.task}-results.json"
        if results.exists():
            per_seed[head] = [bool(e["success"]) for e in json.loads(results.read_text())["episodes"]]
        print(f"{head}: success {ev['eval/success_rate']:.0%} ({wall:.0f} s)", flush=True)

    print(f"\ntask={args.task} episodes={args.episodes} steps={args.steps} preset={args.preset} "
          f"eval episodes={args.eval_episodes} (held-out seeds) plan horizon={args.plan_horizon} "
          f"chunk labels={args.chunk_labels}")
    print(f"{'head':12s} {'success':>8s} {'95% CI':>12s} {'return':>8s} {'ms/step':>10s} {'wall s':>7s}")
    for head, sr, lo, hi, ret, ms, wall in rows:
        ms_s = f"{ms:10.1f}" if isinstance(ms, (int, float)) else f"{'-':>10s}"
        print(f"{head:12s} {sr:8.0%} {f'{lo:.0%}-{hi:.0%}':>12s} {ret:8.2f} {ms_s} {wall:7.0f}")
    if "mlp" in per_seed and len(per_seed) > 1:
        print("\nagainst the mlp row on the same seeds (McNemar's exact test):")
        for head, wins in per_seed.items():
            if head != "mlp":
                c = paired_comparison(wins, per_seed["mlp"])
                print(f"{head:12s} {c['difference']:+8.0%}  solved only by {head}: {c['a_only']}, only by mlp: "
                      f"{c['b_only']}, p = {c['p_value']:.3f}")


if __name__ == "__main__":
    main()
