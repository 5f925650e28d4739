"""Benchmark tab: several checkpoints x several tasks, each pair evaluated as a background eval job by the
engine's :class:`~vla_engine.eval.benchmark_queue.BenchmarkQueue` (one after another, so the job limit is
respected); the :class:`~vla_engine.eval.leaderboard.Leaderboard` of ``runs_dir`` with the success rate and
its 95% Wilson interval, each checkpoint against its task's leader seed by seed, mean return and
inference latency; a bar chart with error bars."""

from __future__ import annotations

from typing import Any

import gradio as gr

from vla_engine.config.run_config import EVAL_SEED_START
from vla_engine.eval.job_config import eval_job_config
from vla_engine.eval.leaderboard import COLUMNS, table_rows

from ..context import AppContext, AppError
from ..events import POLL, handler
from ..forms import optional_number, parse_optional_int
from ..plots import success_bar_figure
from ..polling import TabTimer, opened_tab, pace, start_following

TAB_ID = "benchmark"
POLL_SECONDS = 3.0  # the queue timer's base period (app.polling)
MAX_STEPS_LABEL = "Max steps per episode"
IDLE = {"run_id": None, "seen": None, "following": False, "active": False}


def leaderboard_table(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(table_rows(rows), columns=COLUMNS)


def queue_markdown(ctx: AppContext) -> str:
    """What the benchmark queue is doing, for the page."""
    q = ctx.benchmark_queue.state()
    parts = []
    if q.active:
        st = ctx.runner.status(q.active.run_id)
        parts.append(f"**Running:** `{q.active.label}` on **{q.active.task}** "
                     f"(job `{q.active.run_id}`, episode {st.step}/{st.total_steps or '?'})")
    if q.pending:
        parts.append(f"**Queued:** {len(q.pending)} evaluation(s): " +
                     ", ".join(f"`{p.label}`×{p.task}" for p in q.pending[:8]) +
                     (" …" if len(q.pending) > 8 else ""))
    if not q.active and not q.pending:
        parts.append("No benchmark running.")
    if q.log:
        parts.append("Recent: " + " · ".join(q.log[-4:]))
    return "\n\n".join(parts)


def submit(ctx: AppContext, refs: list[str], tasks: list[str], episodes: Any, videos: Any = 0,
           max_steps: Any = None) -> tuple[str, int]:
    """Queue every (checkpoint, task) pair on the held-out seeds; (benchmark id, evaluations queued)."""
    if not refs:
        raise AppError("no checkpoints chosen; pick one or more trained runs")
    if not tasks:
        raise AppError("no tasks chosen; pick one or more tasks")
    pairs = [(ref, task) for ref in refs for task in tasks]
    max_steps = parse_optional_int(max_steps, MAX_STEPS_LABEL, minimum=1, empty="the task's")
    configs = [eval_job_config(ctx.resolve_checkpoint(ref), task, episodes=episodes, num_videos=videos,
                               seed_start=EVAL_SEED_START, max_episode_steps=max_steps, runs_dir=ctx.runs_dir)
               for ref, task in pairs]  # all validated before any job starts
    return ctx.benchmark_queue.submit(configs, labels=[ref for ref, _ in pairs]), len(configs)


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    tasks = ctx.task_names()
    board_rows = ctx.leaderboard.latest()
    with gr.Tab("Benchmark", id=TAB_ID) as tab:
        gr.Markdown("Evaluate several checkpoints on several tasks on the same held-out seeds. Results are kept "
                    f"in `{ctx.leaderboard.path}` and form a leaderboard across runs.")
        with gr.Row():
            ckpts = gr.Dropdown(ctx.checkpoint_choices(), multiselect=True, label="Checkpoints", scale=3,
                                allow_custom_value=True)
            refresh_btn = gr.Button("↻", scale=0, min_width=40)
        groups = ctx.task_groups()
        with gr.Row():
            task_pick = gr.Dropdown(tasks, value=tasks[:1], multiselect=True, label="Tasks", scale=3)
            suite = gr.Dropdown([(f"{g} ({len(ts)} tasks)", g) for g, ts in groups.items()], value=None,
                                label="Add a family or suite", scale=1,
                                info="adds every task of the tabletop suite, Meta-World MT10 / MT50, ...")
        with gr.Row():
            episodes = gr.Number(20, precision=0, label="Episodes per task")
            videos = gr.Number(0, precision=0, label="Videos per evaluation")
            max_steps = optional_number(MAX_STEPS_LABEL, "the task's")
        start_btn = gr.Button("Run benchmark", variant="primary")
        status = gr.Markdown("")
        queue_md = gr.Markdown(queue_markdown(ctx))
        chart = gr.Plot(success_bar_figure(board_rows), show_label=False)
        board = gr.Dataframe(leaderboard_table(board_rows), interactive=False, wrap=True,
                             label="Leaderboard (latest result per checkpoint and task)")
        # what this page follows (the queue, while it has work) and shows: (queue text, leaderboard signature)
        seen = gr.State(dict(IDLE))
        tasks_picked = gr.State(False)  # the user chose tasks: they no longer follow the checkpoints
        tick = gr.Timer(POLL_SECONDS, active=False)

    ctx.extras.setdefault("tab_timers", []).append(TabTimer(TAB_ID, tab, tick, seen, POLL_SECONDS))

    def queue_busy() -> bool:
        q = ctx.benchmark_queue.state()
        return bool(q.active or q.pending)

    def tasks_of(refs: list[str]) -> list[str]:
        """The tasks the checkpoints were trained on (what "compare checkpoints" means by default)."""
        from .rollouts import checkpoint_task

        out = []
        for ref in refs:
            try:
                t = checkpoint_task(ctx, ref)
            except Exception:  # noqa: BLE001 - a checkpoint that cannot be read is reported when it runs
                t = None
            if t and t in tasks and t not in out:
                out.append(t)
        return out

    @handler(inputs={"current": ckpts, "picked": tasks_picked}, outputs={"checkpoints": ckpts, "tasks": task_pick})
    def refresh(current: list | None, picked: bool):
        """Fresh checkpoint list; the newest checkpoint is chosen when none is, and until tasks are picked by
        hand they follow the checkpoints' own tasks."""
        choices = ctx.checkpoint_choices()
        chosen = current or ([choices[0][1]] if choices else [])
        out = {"checkpoints": gr.update(choices=choices, value=chosen)}
        follow = [] if picked else tasks_of(chosen)
        if follow:
            out["tasks"] = gr.update(value=follow)
        return out

    refresh.listen(refresh_btn.click, api_name="bench_refresh")

    @handler(inputs={"current": ckpts, "picked": tasks_picked}, outputs={"tasks": task_pick}, warn=False)
    def on_checkpoints(current: list | None, picked: bool):
        follow = [] if picked else tasks_of(list(current or []))
        return {"tasks": gr.update(value=follow)} if follow else {}

    on_checkpoints.listen(ckpts.input, api_name=False)
    task_pick.input(lambda: True, None, tasks_picked, api_name=False, queue=False, show_progress="hidden")

    @handler(inputs={"group": suite, "current": task_pick},
             outputs={"tasks": task_pick, "group": suite, "picked": tasks_picked})
    def add_group(group: str | None, current: list | None):
        """The chosen family's or suite's tasks join the chosen tasks (the picker resets for the next one)."""
        chosen = list(current or [])
        chosen += [t for t in groups.get(group or "", []) if t not in chosen]
        return {"tasks": gr.update(value=chosen), "group": gr.update(value=None), "picked": True}

    add_group.listen(suite.input, api_name="bench_add_tasks")
    refresh.listen(tab.select, api_name=False)

    @handler(inputs={"checkpoints": ckpts, "tasks": task_pick, "episodes": episodes, "videos": videos,
                     "max_steps": max_steps, "seen": seen}, outputs={"status": status, "seen": seen, "tick": tick},
             status="status")
    def start(checkpoints: list[str], tasks: list[str], episodes: Any, videos: Any, max_steps: Any, seen: dict):
        batch, count = submit(ctx, list(checkpoints or []), list(tasks or []), episodes, videos, max_steps)
        watch, timer = start_following({**(seen or IDLE), "run_id": batch}, POLL_SECONDS)
        return {"status": f"Queued **{count}** evaluation(s) (benchmark `{batch}`); they run one after another.",
                "seen": watch, "tick": timer}

    start.listen(start_btn.click, api_name="bench_start", concurrency_limit=1)

    poll_outputs = {"status": status, "queue": queue_md, "chart": chart, "board": board, "seen": seen,
                    "tick": tick}

    @handler(inputs={"seen": seen}, outputs=poll_outputs, status="status", warn=False)
    def poll(seen: dict | None):
        """The queue text when it changed; the chart and table only when the leaderboard file changed."""
        watch = dict(seen or IDLE)
        text, sig = queue_markdown(ctx), ctx.leaderboard.signature()
        last_text, last_sig = watch.get("seen") or (None, None)
        out: dict[str, Any] = {}
        if text != last_text:
            out["queue"] = text
        if sig != last_sig:
            rows = ctx.leaderboard.latest()
            out.update(chart=success_bar_figure(rows), board=leaderboard_table(rows))
        busy = queue_busy()
        state, timer = pace({**watch, "seen": (text, sig), "run_id": watch.get("run_id") if busy else None},
                            changed=bool(out), follow=busy or bool(out), base_s=POLL_SECONDS)
        out.update(seen=state, tick=timer)
        return out

    poll.listen(tick.tick, api_name="bench_poll", **POLL)

    @handler(inputs={"seen": seen}, outputs=poll_outputs, status="status", warn=False, request=True)
    def on_load(seen: dict | None, request: gr.Request | None = None):
        """On page load: results that finished while the app was down, and the queue followed while it works."""
        ctx.leaderboard.sync(ctx.runner)  # eval jobs that finished while the app was down
        out = poll.func(None)
        if queue_busy():
            watch = {**out["seen"], "run_id": "queue", "following": True}
            if opened_tab(request) == TAB_ID:
                watch, out["tick"] = start_following(watch, POLL_SECONDS)
            out["seen"] = watch
        return out

    on_load.listen(demo.load, api_name=False)
