"""Benchmark tab: several checkpoints x several tasks, each pair evaluated as a background eval job
(one after another, so the job limit is respected); a leaderboard with the success rate and its
95% Wilson interval, mean return and inference latency, persisted in ``runs_dir/leaderboard.jsonl``
so it grows across sessions and app restarts; a bar chart with error bars.

Every benchmark plays the same seeds (from 1,000,000), so each row is also compared with its task's
leader seed by seed (McNemar's exact test, ``vla_engine.eval.paired_comparison``): two checkpoints
whose intervals overlap can still be told apart by the seeds only one of them solved."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import gradio as gr

from vla_engine.eval.metrics import paired_comparison

from ..context import AppContext, AppError, user_message
from ..forms import guarded
from ..plots import success_bar_figure
from .rollouts import eval_config

LEADERBOARD_COLS = ["checkpoint", "task", "episodes", "success rate", "95% CI", "vs leader (same seeds)",
                    "mean return", "ms/action", "eval run", "date"]


# ------------------------------------------------------------------------------------------------
# The leaderboard file.
# ------------------------------------------------------------------------------------------------
def read_leaderboard(ctx: AppContext) -> list[dict]:
    path = ctx.leaderboard_path
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def sync_leaderboard(ctx: AppContext) -> int:
    """Append a row for every finished benchmark eval run not yet in the leaderboard; returns how many."""
    with ctx.lock:
        known = {r.get("eval_run") for r in read_leaderboard(ctx)}
        added = []
        for r in ctx.list_runs("eval"):
            if r["run_id"] in known or r.get("state") != "done":
                continue
            run = ctx.runner.get(r["run_id"])
            cfg = run.read_config()
            if not cfg.get("benchmark"):
                continue
            try:
                data = json.loads((run.path / "eval.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue
            s = data.get("summary", {})
            episodes = data.get("episodes") or []
            seeds = [int(e.get("seed", -1)) for e in episodes]
            contiguous = bool(seeds) and seeds == list(range(seeds[0], seeds[0] + len(seeds)))
            added.append({
                "checkpoint": cfg.get("checkpoint_ref") or cfg.get("checkpoint"),
                "task": data.get("task") or cfg.get("task"),
                "episodes": s.get("eval/episodes"),
                "successes": s.get("eval/successes"),
                "success_rate": s.get("eval/success_rate"),
                "ci_low": s.get("eval/success_ci_low"),
                "ci_high": s.get("eval/success_ci_high"),
                "mean_return": s.get("eval/mean_return"),
                "mean_length": s.get("eval/mean_length"),
                "ms_per_step": s.get("eval/ms_per_step"),
                "eval_run": r["run_id"],
                # per-seed outcomes ("1" = success) from seed_start on, for the paired comparison
                "seed_start": seeds[0] if contiguous else None,
                "outcomes": "".join("1" if e.get("success") else "0" for e in episodes) if contiguous else None,
                "benchmark": cfg.get("benchmark"),
                "time": r.get("ended_at") or time.time(),
            })
        if added:
            with open(ctx.leaderboard_path, "a") as f:
                for row in added:
                    f.write(json.dumps(row) + "\n")
        return len(added)


def leaderboard_rows(ctx: AppContext) -> list[dict]:
    """The latest result per (checkpoint, task), best success rate first."""
    latest: dict[tuple, dict] = {}
    for r in read_leaderboard(ctx):
        key = (r.get("checkpoint"), r.get("task"))
        if key not in latest or (r.get("time") or 0) >= (latest[key].get("time") or 0):
            latest[key] = r
    return sorted(latest.values(), key=lambda r: (r.get("task") or "", -(r.get("success_rate") or 0),
                                                   r.get("ms_per_step") or 0))


def versus_leader(row: dict, leader: dict) -> str:
    """``row`` against its task's leader on the seeds both played: the difference and McNemar's p."""
    if row is leader:
        return "leader"
    a, b = row.get("outcomes"), leader.get("outcomes")
    if not a or not b or row.get("seed_start") != leader.get("seed_start") or len(a) != len(b):
        return "other seeds"
    c = paired_comparison([x == "1" for x in a], [x == "1" for x in b])
    return f"{100 * c['difference']:+.0f} pts (p = {c['p_value']:.2f})"


def leaderboard_table(rows: list[dict]):
    import pandas as pd

    leaders: dict[Any, dict] = {}
    for r in rows:  # rows come best first within each task
        leaders.setdefault(r.get("task"), r)
    data = [[r["checkpoint"], r["task"], r.get("episodes"), f"{r['success_rate']:.0%}",
             f"{r['ci_low']:.0%}–{r['ci_high']:.0%}", versus_leader(r, leaders[r.get("task")]),
             round(float(r.get("mean_return") or 0), 3),
             round(float(r.get("ms_per_step") or 0), 1), r.get("eval_run"),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("time") or 0))] for r in rows]
    return pd.DataFrame(data, columns=LEADERBOARD_COLS)


# ------------------------------------------------------------------------------------------------
# The queue: starts the benchmark's eval jobs one at a time in a background thread.
# ------------------------------------------------------------------------------------------------
class BenchmarkQueue:
    """Pending (checkpoint, task) evaluations, run one after another through the job runner.

    The thread waits while the runner's job limit is reached (e.g. a training job on a Space), so a
    benchmark never fails because something else is running. Finished jobs are recorded in the
    leaderboard; a job already started survives an app restart (its result is picked up by
    :func:`sync_leaderboard` on the next look).
    """

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.pending: list[dict] = []
        self.active: dict | None = None
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, refs: list[str], tasks: list[str], episodes: Any, videos: Any = 0,
               max_steps: Any = None) -> tuple[str, int]:
        if not refs:
            raise AppError("no checkpoints chosen; pick one or more trained runs")
        if not tasks:
            raise AppError("no tasks chosen; pick one or more tasks")
        batch = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        jobs = []
        for ref in refs:
            for task in tasks:
                cfg = eval_config(self.ctx, ref, task, episodes, videos, 1_000_000, max_steps, None)  # validates
                cfg["benchmark"] = batch
                jobs.append(cfg)
        with self._lock:
            self.pending.extend(jobs)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="benchmark-queue", daemon=True)
                self._thread.start()
        return batch, len(jobs)

    def _note(self, msg: str) -> None:
        with self._lock:
            self.log.append(f"{time.strftime('%H:%M:%S')} {msg}")
            self.log = self.log[-50:]

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self.pending:
                    self.active = None
                    return
                cfg = self.pending[0]
            try:
                run_id = self.ctx.runner.start("eval", cfg, name=f"bench-{cfg['task']}")
            except ValueError as e:
                if "limit" in str(e):  # the job limit is reached: wait for a free slot
                    time.sleep(2.0)
                    continue
                with self._lock:
                    self.pending.pop(0)
                self._note(f"{cfg['checkpoint_ref']} on {cfg['task']}: {user_message(e)}")
                continue
            except Exception as e:  # noqa: BLE001 - one bad job must not end the queue
                with self._lock:
                    self.pending.pop(0)
                self._note(f"{cfg['checkpoint_ref']} on {cfg['task']}: {user_message(e)}")
                continue
            with self._lock:
                self.pending.pop(0)
                self.active = {**cfg, "run_id": run_id}
            st = self.ctx.runner.wait(run_id, poll=1.0)
            self._note(f"{cfg['checkpoint_ref']} on {cfg['task']}: {st.get('state')}"
                       + (f" ({st.get('error')})" if st.get("error") else ""))
            try:
                sync_leaderboard(self.ctx)
            except Exception as e:  # noqa: BLE001
                self._note(f"could not update the leaderboard: {user_message(e)}")

    def describe(self) -> str:
        with self._lock:
            active, pending, log = self.active, list(self.pending), list(self.log)
        parts = []
        if active:
            st = self.ctx.runner.status(active["run_id"])
            parts.append(f"**Running:** `{active['checkpoint_ref']}` on **{active['task']}** "
                         f"(job `{active['run_id']}`, episode {st.get('step') or 0}/{st.get('total_steps') or '?'})")
        if pending:
            parts.append(f"**Queued:** {len(pending)} evaluation(s): " +
                         ", ".join(f"`{p['checkpoint_ref']}`×{p['task']}" for p in pending[:8]) +
                         (" …" if len(pending) > 8 else ""))
        if not active and not pending:
            parts.append("No benchmark running.")
        if log:
            parts.append("Recent: " + " · ".join(log[-4:]))
        return "\n\n".join(parts)


def get_queue(ctx: AppContext) -> BenchmarkQueue:
    with ctx.lock:
        q = ctx.extras.get("benchmark_queue")
        if q is None:
            q = ctx.extras["benchmark_queue"] = BenchmarkQueue(ctx)
        return q


# ------------------------------------------------------------------------------------------------
# The tab.
# ------------------------------------------------------------------------------------------------
def build(ctx: AppContext, demo: gr.Blocks) -> None:
    queue = get_queue(ctx)
    tasks = ctx.task_names()
    with gr.Tab("Benchmark", id="benchmark") as tab:
        gr.Markdown("Evaluate several checkpoints on several tasks on the same held-out seeds. Results are kept "
                    f"in `{ctx.leaderboard_path}` and form a leaderboard across runs.")
        with gr.Row():
            ckpts = gr.Dropdown(ctx.checkpoint_choices(), multiselect=True, label="Checkpoints", scale=3,
                                allow_custom_value=True)
            refresh_btn = gr.Button("↻", scale=0, min_width=40)
        with gr.Row():
            task_pick = gr.CheckboxGroup(tasks, value=tasks[:1], label="Tasks")
            episodes = gr.Number(20, precision=0, label="Episodes per task")
            videos = gr.Number(0, precision=0, label="Videos per evaluation")
            max_steps = gr.Number(None, precision=0, label="Max steps per episode (empty: the task's)")
        start_btn = gr.Button("Run benchmark", variant="primary")
        status = gr.Markdown("")
        queue_md = gr.Markdown(queue.describe())
        chart = gr.Plot(success_bar_figure(leaderboard_rows(ctx)), show_label=False)
        board = gr.Dataframe(leaderboard_table(leaderboard_rows(ctx)), interactive=False, wrap=True,
                             label="Leaderboard (latest result per checkpoint and task)")
        seen_board = gr.State(None)
        tick = gr.Timer(3.0)

    @guarded(1, status_index=None)
    def refresh(current: list | None):
        """Fresh checkpoint list; the newest checkpoint is chosen when none is."""
        choices = ctx.checkpoint_choices()
        value = current or ([choices[0][1]] if choices else [])
        return gr.update(choices=choices, value=value)

    refresh_btn.click(refresh, [ckpts], [ckpts], api_name="bench_refresh")
    tab.select(refresh, [ckpts], [ckpts], api_name=False)

    @guarded(1)
    def start(refs: list[str], ts: list[str], n: Any, nv: Any, steps: Any):
        batch, count = queue.submit(list(refs or []), list(ts or []), n, nv, steps)
        return f"Queued **{count}** evaluation(s) (benchmark `{batch}`); they run one after another."

    start_btn.click(start, [ckpts, task_pick, episodes, videos, max_steps], [status], api_name="bench_start",
                    concurrency_limit=1)

    def board_signature() -> list:
        try:
            st = ctx.leaderboard_path.stat()
            return [st.st_size, st.st_mtime_ns]
        except FileNotFoundError:
            return [0, 0]

    @guarded(5, status_index=0, warn=False)
    def poll(seen: list | None):
        """Queue status every tick; the chart and table only when the leaderboard file changed."""
        sig = board_signature()
        if seen == sig:
            return gr.skip(), queue.describe(), gr.skip(), gr.skip(), seen
        rows = leaderboard_rows(ctx)
        return gr.skip(), queue.describe(), success_bar_figure(rows), leaderboard_table(rows), sig

    poll_outputs = [status, queue_md, chart, board, seen_board]
    tick.tick(poll, [seen_board], poll_outputs, api_name="bench_poll", show_progress="hidden")

    def on_load(seen: list | None):
        sync_leaderboard(ctx)  # eval jobs that finished while the app was down
        return poll(None)

    demo.load(guarded(5, status_index=0, warn=False)(on_load), [seen_board], poll_outputs, api_name=False)
