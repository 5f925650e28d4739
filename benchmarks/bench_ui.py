"""The workbench stays responsive while it trains (issue #3 targets), measured through gradio_client.

    python benchmarks/bench_ui.py                 # defaults: 20 rounds of every tab action
    python benchmarks/bench_ui.py --rounds 40 --freshness-s 30

What it does, on a fresh runs/datasets folder:
1. serves the app (the same ``build_app`` + ``launch`` as ``python launch.py``) on a free port;
2. generates a small built-in reach dataset, then starts a Quick Start training run from the
   Training tab (``/train_start``) and waits until it logs metrics;
3. **freshness**: polls ``/train_poll`` at the Training tab's own timer period (what the browser does)
   and, for every metrics row, takes the time from the row being written (its ``time`` field) to the
   first poll answer whose curve holds it. Target: every row within 1 s;
4. **latency**: while the job trains, calls each tab's main read-only actions in turn (round robin, so
   every action sees the same load) and prints p50 / p95 per action and over all. Target: p95 <= 300 ms.
   The first call of each action (it may build a model or index a dataset) is shown on its own.

Both figures are printed; nothing is asserted (the machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20, help="calls of each tab action")
    ap.add_argument("--freshness-s", type=float, default=20.0, help="seconds of polling for the freshness figure")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    from gradio_client import Client

    from app import AppContext, build_app, launch
    from app.tabs import training as training_tab
    from vla_engine.data.datagen import generate_dataset

    work = Path(args.workdir or tempfile.mkdtemp(prefix="vla-bench-ui-"))
    ctx = AppContext.create(work / "runs", work / "datasets")
    generate_dataset("reach", 20, ctx.datasets_dir / "reach", progress=False)
    demo = build_app(ctx)
    port = free_port()
    launch(demo, ctx, port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    period = training_tab.POLL_SECONDS

    overrides = "\n".join(["training.max_steps=100000", "training.log_every=2", "training.batch_size=16",
                           "training.save_every=100000", "dataset.episodes=20"])
    msg = client.predict(preset="quickstart", dataset="reach", run_name="bench-ui", overrides=overrides,
                         api_name="/train_start")
    if not msg.startswith("Started **"):
        sys.exit(f"could not start training: {msg}")
    run_id = msg.split("**")[1]
    metrics_path = ctx.runs_dir / run_id / "metrics.jsonl"
    t0 = time.time()
    while not (metrics_path.exists() and metrics_path.read_text().count("\n") >= 3):  # training in full swing
        if time.time() - t0 > 300:
            sys.exit("training logged nothing in 300 s")
        time.sleep(0.2)
    try:
        # -- freshness: the browser's timer, imitated --------------------------------------------------
        seen_steps: set[int] = set()
        delays: list[float] = []
        end = time.time() + args.freshness_s
        next_tick = time.time()
        while time.time() < end:
            time.sleep(max(0.0, next_tick - time.time()))
            next_tick += period
            out = client.predict(api_name="/train_poll")
            got = time.time()
            loss_plot = out[3]
            if not isinstance(loss_plot, dict):
                continue  # nothing new: the curve was left as it is
            shown = set(json.loads(loss_plot["plot"])["data"][0]["x"]) if loss_plot.get("plot") else set()
            rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
            for r in rows:
                if r["step"] in shown and r["step"] not in seen_steps and "train/loss" in r:
                    seen_steps.add(r["step"])
                    delays.append(got - float(r["time"]))
        # -- latency of tab actions under load --------------------------------------------------------
        actions = {
            "train_poll": dict(api_name="/train_poll"),
            "train_runs": dict(api_name="/train_runs"),
            "datasets_refresh": dict(api_name="/datasets_refresh"),
            "dataset_info": dict(args=("reach",), api_name="/dataset_info"),
            "dataset_episode": dict(args=("reach", 1), api_name="/dataset_episode"),
            "model_summary": dict(kwargs=dict(batch_size=64, precision="fp32"), api_name="/model_summary"),
            "rollout_refresh": dict(args=(None,), api_name="/rollout_refresh"),
            "bench_refresh": dict(args=([],), api_name="/bench_refresh"),
        }
        lat: dict[str, list[float]] = {k: [] for k in actions}
        cold: dict[str, float] = {}
        for name, spec in actions.items():  # the first call of each builds caches (a model, a dataset index)
            t = time.perf_counter()
            client.predict(*spec.get("args", ()), **spec.get("kwargs", {}), api_name=spec["api_name"])
            cold[name] = (time.perf_counter() - t) * 1000
        for _ in range(args.rounds):
            for name, spec in actions.items():
                t = time.perf_counter()
                client.predict(*spec.get("args", ()), **spec.get("kwargs", {}), api_name=spec["api_name"])
                lat[name].append((time.perf_counter() - t) * 1000)
        steps_now = sum(1 for _ in metrics_path.open())
    finally:
        ctx.runner.stop(run_id, timeout=20)
        demo.close()

    print(f"UI responsiveness while a training job runs (run {run_id}, {steps_now} metric rows logged), "
          f"{os.cpu_count()} CPU cores")
    if delays:
        print(f"freshness: {len(delays)} metric rows; written -> in the curve: median {statistics.median(delays):.2f} s, "
              f"p95 {pct(delays, 0.95):.2f} s, max {max(delays):.2f} s (target <= 1 s; poll period {period} s)")
    else:
        print("freshness: no metric rows observed (training too slow to log?)")
    print(f"{'action':18s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s} {'first call ms':>14s}")
    all_ms: list[float] = []
    for name, xs in lat.items():
        all_ms += xs
        print(f"{name:18s} {statistics.median(xs):8.0f} {pct(xs, 0.95):8.0f} {max(xs):8.0f} {cold[name]:14.0f}")
    print(f"{'all actions':18s} {statistics.median(all_ms):8.0f} {pct(all_ms, 0.95):8.0f} {max(all_ms):8.0f}"
          f"   (target p95 <= 300 ms)")


if __name__ == "__main__":
    main()
