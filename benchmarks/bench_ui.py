"""The workbench stays responsive while it trains, with one page open and with many, measured through
gradio_client.

    python benchmarks/bench_ui.py                         # every part, 10 watchers
    python benchmarks/bench_ui.py --parts watchers --clients 10 --seconds 30
    python benchmarks/bench_ui.py --parts freshness,actions --rounds 40
    python benchmarks/bench_ui.py --parts idle --idle-s 60       # an open page with no job running

What it does, on a fresh runs/datasets folder:
1. serves the app (the same ``build_app`` + ``launch`` as ``python launch.py``) on a free port, in a
   process of its own (so the clients' own work does not share the server's interpreter);
2. generates a small built-in reach dataset, then starts a Quick Start training run from the Training
   tab (``/train_start``) and waits until it logs metrics;
3. **freshness**: polls ``/train_poll`` at the Training tab's own timer period (what the browser does)
   and, for every metrics row, takes the time from the row being written (its ``time`` field) to the
   first poll answer whose curve holds it. Target: every row within 1 s;
4. **actions**: while the job trains, calls each tab's main read-only actions in turn (round robin, so
   every action sees the same load) and prints p50 / p95 per action and over all. Target: p95 <= 300 ms.
   The first call of each action (it may build a model or index a dataset) is shown on its own;
5. **watchers**: one page, then ``--clients`` pages, each a browser session that attached to the running
   job and polls the Training, Datasets, Rollouts and Benchmark tabs at their timers' periods, for
   ``--seconds`` each; p50 / p95 per poll endpoint. Targets: p95 <= 100 ms with one page and <= 300 ms
   with ten, on 2 cores.

0. **idle** (before any job starts): a headless Chromium page open on the Training tab, shown and then
   hidden, for ``--idle-s`` each: server CPU, browser CPU and the page's calls per minute (``ui_idle.py``).
   Target: server under 2 % of a core and no calls while nothing runs.

Every figure is printed; nothing is asserted (the machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# the tabs' timer periods (seconds), as the browser fires them
# (a page polls only the tab it shows; the watchers here poll all four, the worst case of many pages)
WATCH_ENDPOINTS = {"/train_poll": None, "/dataset_poll": 1.5, "/rollout_poll": 1.5, "/bench_poll": 3.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def serve(work: str, port: int) -> None:
    """The app as ``python launch.py`` serves it (runs in its own process)."""
    from app import AppContext, build_app, launch

    ctx = AppContext.create(Path(work) / "runs", Path(work) / "datasets")
    launch(build_app(ctx), ctx, port=port, quiet=True)


def wait_for_server(url: str, timeout: float = 300.0):
    from gradio_client import Client

    deadline = time.time() + timeout
    while True:
        try:
            return Client(url, verbose=False)
        except Exception:  # noqa: BLE001 - not up yet
            if time.time() > deadline:
                sys.exit(f"the app did not answer at {url} within {timeout:.0f} s")
            time.sleep(1.0)


class Page:
    """One browser page: a gradio_client session for queued actions, and the timers' polls posted straight
    to the server with the page's session (``queue=False`` events: what the browser does, one HTTP request
    each; gradio_client itself waits on its event stream in 50 ms steps, which would hide the server's time)."""

    def __init__(self, url: str):
        import httpx
        from gradio_client import Client

        self.url = url.rstrip("/")
        self.client = Client(url, verbose=False)
        self.http = httpx.Client(timeout=60.0)
        config = self.http.get(f"{self.url}/config").json()
        self.deps = {d.get("api_name"): d for d in config["dependencies"] if d.get("api_name")}

    def call(self, endpoint: str, *args, **kwargs):
        dep = self.deps[endpoint.strip("/")]
        if dep.get("queue") is not False or args or kwargs:
            return self.client.predict(*args, **kwargs, api_name=endpoint)
        body = {"data": [None] * len(dep["inputs"]), "fn_index": dep["id"], "session_hash": self.client.session_hash,
                "event_data": None, "trigger_id": None}
        r = self.http.post(f"{self.url}/gradio_api/run/predict", json=body)
        r.raise_for_status()
        return r.json()["data"]


def skipped(value) -> bool:
    return isinstance(value, dict) and value.get("__type__") == "update" and "value" not in value


# ------------------------------------------------------------------------------------------------
# The parts.
# ------------------------------------------------------------------------------------------------
def freshness(page: Page, metrics_path: Path, period: float, seconds: float) -> list[float]:
    """Seconds from each metrics row being written to the first poll answer whose loss curve holds it."""
    seen_steps: set[int] = set()
    delays: list[float] = []
    end = time.time() + seconds
    next_tick = time.time()
    while time.time() < end:
        time.sleep(max(0.0, next_tick - time.time()))
        next_tick += period
        out = page.call("/train_poll")
        got = time.time()
        loss_plot = out[3]
        if skipped(loss_plot) or not isinstance(loss_plot, dict) or not loss_plot.get("plot"):
            continue  # nothing new: the curve was left as it is
        shown = set(json.loads(loss_plot["plot"])["data"][0]["x"])
        for line in metrics_path.read_text().splitlines():
            r = json.loads(line) if line.strip() else {}
            if r.get("step") in shown and r["step"] not in seen_steps and "train/loss" in r:
                seen_steps.add(r["step"])
                delays.append(got - float(r["time"]))
    return delays


def actions(client, rounds: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Each tab's main read-only action, round robin: latencies (ms) and the first call of each."""
    spec = {
        "train_poll": dict(api_name="/train_poll"),
        "train_runs": dict(api_name="/train_runs"),
        "datasets_refresh": dict(api_name="/datasets_refresh"),
        "dataset_info": dict(args=("reach",), api_name="/dataset_info"),
        "dataset_episode": dict(args=("reach", 1), api_name="/dataset_episode"),
        "model_summary": dict(kwargs=dict(batch_size=64, precision="fp32"), api_name="/model_summary"),
        "rollout_refresh": dict(args=(None,), api_name="/rollout_refresh"),
        "bench_refresh": dict(args=([],), api_name="/bench_refresh"),
    }

    def call(s: dict) -> float:
        t = time.perf_counter()
        client.predict(*s.get("args", ()), **s.get("kwargs", {}), api_name=s["api_name"])
        return (time.perf_counter() - t) * 1000

    cold = {name: call(s) for name, s in spec.items()}  # the first call may build a model, index a dataset
    lat: dict[str, list[float]] = {k: [] for k in spec}
    for _ in range(rounds):
        for name, s in spec.items():
            lat[name].append(call(s))
    return lat, cold


def watcher(url: str, period: float, start_at: float, stop_at: float, out: "mp.Queue") -> None:
    """One browser session: attach to the running job, then poll each tab's endpoint at its timer's period
    from ``start_at`` (every session at once) to ``stop_at``."""
    page = Page(url)
    page.call("/train_attach")
    lat: dict[str, list[float]] = {e: [] for e in WATCH_ENDPOINTS}

    def timer(endpoint: str, every: float) -> None:
        next_tick = start_at + every * random.random()  # a page's timers are not in step
        while True:
            time.sleep(max(0.0, next_tick - time.time()))
            if time.time() >= stop_at:
                return
            t = time.perf_counter()
            page.call(endpoint)
            lat[endpoint].append((time.perf_counter() - t) * 1000)
            next_tick = max(next_tick + every, time.time())

    threads = [threading.Thread(target=timer, args=(e, every or period), daemon=True)
               for e, every in WATCH_ENDPOINTS.items()]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out.put(lat)


def watchers(url: str, clients: int, period: float, seconds: float) -> dict[str, list[float]]:
    """``clients`` browser sessions (each a process) polling for ``seconds``; latencies (ms) per endpoint."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 10.0 + clients  # every session has started and attached by then
    procs = [ctx.Process(target=watcher, args=(url, period, start_at, start_at + seconds, out), daemon=True)
             for _ in range(clients)]
    for p in procs:
        p.start()
    merged: dict[str, list[float]] = {e: [] for e in WATCH_ENDPOINTS}
    for _ in procs:
        for e, xs in out.get(timeout=start_at + seconds + 120 - time.time()).items():
            merged[e] += xs
    for p in procs:
        p.join(timeout=30)
    return merged


def table(title: str, lat: dict[str, list[float]], target: str, cold: dict[str, float] | None = None) -> None:
    print(f"\n{title}")
    print(f"{'endpoint':18s} {'calls':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}"
          + (f" {'first call ms':>14s}" if cold else ""))
    every: list[float] = []
    for name, xs in lat.items():
        if not xs:
            continue
        every += xs
        print(f"{name.strip('/'):18s} {len(xs):6d} {statistics.median(xs):8.0f} {pct(xs, 0.95):8.0f} {max(xs):8.0f}"
              + (f" {cold[name]:14.0f}" if cold else ""))
    if every:
        print(f"{'all':18s} {len(every):6d} {statistics.median(every):8.0f} {pct(every, 0.95):8.0f} "
              f"{max(every):8.0f}   ({target})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="idle,freshness,actions,watchers", help="comma-separated parts to run")
    ap.add_argument("--idle-s", type=float, default=60.0, help="seconds of each idle phase")
    ap.add_argument("--rounds", type=int, default=20, help="calls of each tab action")
    ap.add_argument("--freshness-s", type=float, default=20.0, help="seconds of polling for the freshness figure")
    ap.add_argument("--clients", type=int, default=10, help="browser sessions in the many-watchers part")
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds of polling per watchers phase")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    parts = set(args.parts.split(","))

    from app.tabs.training import POLL_SECONDS
    from vla_engine.data.datagen import generate_dataset
    from vla_engine.runs.runner import JobRunner

    work = Path(args.workdir or tempfile.mkdtemp(prefix="vla-bench-ui-"))
    generate_dataset("reach", 20, work / "datasets" / "reach", progress=False)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = mp.get_context("spawn").Process(target=serve, args=(str(work), port), daemon=True)
    server.start()
    client = wait_for_server(url)
    runner = JobRunner(work / "runs")
    if "idle" in parts:
        from ui_idle import measure_idle, print_idle

        print_idle(measure_idle(url, server.pid, args.idle_s))
        if parts == {"idle"}:
            server.terminate()
            return

    overrides = "\n".join(["training.max_steps=100000", "training.log_every=2", "training.batch_size=16",
                           "training.save_every=100000", "dataset.episodes=20"])
    msg = client.predict(preset="quickstart", dataset="reach", run_name="bench-ui", overrides=overrides,
                         api_name="/train_start")
    msg = msg[0] if isinstance(msg, (list, tuple)) else msg  # the status line is the first output
    if not msg.startswith("Started **"):
        sys.exit(f"could not start training: {msg}")
    run_id = msg.split("**")[1]
    metrics_path = work / "runs" / run_id / "metrics.jsonl"
    t0 = time.time()
    while not (metrics_path.exists() and metrics_path.read_text().count("\n") >= 3):  # training in full swing
        if time.time() - t0 > 300:
            sys.exit("training logged nothing in 300 s")
        time.sleep(0.2)
    results: dict[str, object] = {}
    try:
        if "freshness" in parts:
            page = Page(url)
            page.call("/train_attach")
            results["freshness"] = freshness(page, metrics_path, POLL_SECONDS, args.freshness_s)
        if "actions" in parts:
            results["actions"] = actions(client, args.rounds)
        if "watchers" in parts:
            results["one"] = watchers(url, 1, POLL_SECONDS, args.seconds)
            results["many"] = watchers(url, args.clients, POLL_SECONDS, args.seconds)
        rows = sum(1 for _ in metrics_path.open())
    finally:
        runner.stop(run_id, timeout=20)
        server.terminate()
        server.join(timeout=10)

    print(f"UI responsiveness while a training job runs (run {run_id}, {rows} metric rows logged), "
          f"{os.cpu_count()} CPU cores")
    if "freshness" in results:
        delays = results["freshness"]
        if delays:
            print(f"freshness: {len(delays)} metric rows; written -> in the curve: median "
                  f"{statistics.median(delays):.2f} s, p95 {pct(delays, 0.95):.2f} s, max {max(delays):.2f} s "
                  f"(target <= 1 s; poll period {POLL_SECONDS} s)")
        else:
            print("freshness: no metric rows observed (training too slow to log?)")
    if "actions" in results:
        lat, cold = results["actions"]
        table("tab actions, one client (gradio_client: its event stream is read in 50 ms steps), round robin",
              lat, "target p95 <= 300 ms", cold)
    if "one" in results:
        table(f"one page polling ({args.seconds:.0f} s)", results["one"], "target p95 <= 100 ms")
        table(f"{args.clients} pages polling ({args.seconds:.0f} s)", results["many"], "target p95 <= 300 ms")


if __name__ == "__main__":
    main()
