"""Build the workbench (``build_app(ctx)``) and serve it (``launch``)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import gradio as gr

from .context import AppContext
from .polling import TAB_IDS, wire_tab_timers

CSS = """
.vla-progress { width: 100%; height: 10px; background: #e5e7eb; border-radius: 5px; overflow: hidden; }
.vla-progress-bar { height: 100%; background: linear-gradient(90deg, #2563eb, #10b981); transition: width .4s; }
.vla-progress-text { font-size: .85em; color: #555; margin-top: 2px; }
"""

INTRO = """# VLA Workbench
Build, train, evaluate and compare vision-language-action policies. **Quick Start** (all offline, a CPU is
enough): **1.** *Datasets*: generate the built-in **reach** demonstrations · **2.** *Training*: preset
**quickstart** (fine-tunes the shipped tiny VLA on reach: ~2 min on 2 cores), press **Start** and watch the curves · **3.** *Rollouts*: pick the run, watch the policy act ·
**4.** *Benchmark*: compare checkpoints with confidence intervals. Runs live in `{runs}`, datasets in `{data}`.
"""


def build_app(ctx: AppContext) -> gr.Blocks:
    """The whole app: one tab per module in ``app.tabs``; every tab shares ``ctx``."""
    from .tabs import TABS

    with gr.Blocks(title="VLA Workbench", analytics_enabled=False) as demo:
        gr.Markdown(INTRO.format(runs=ctx.runs_dir, data=ctx.datasets_dir))
        ctx.extras["tab_timers"] = []  # each tab that follows jobs adds its timer (app.polling.TabTimer)
        with gr.Tabs() as tabs:
            for tab in TABS:
                tab.build(ctx, demo)
        wire_tab_timers(ctx.extras["tab_timers"])

        def select_tab(request: gr.Request):
            """``?tab=<id>`` in the page address opens that tab (datasets, model, training, rollouts, benchmark)."""
            want = (request.query_params.get("tab") if request is not None else None) or ""
            return gr.Tabs(selected=want) if want in TAB_IDS else gr.skip()

        # outside the queue: the tab is selected at once, even while other events of a busy server wait for a worker
        demo.load(select_tab, None, [tabs], api_name=False, queue=False)
    return demo


IDLE_QUEUE_CHECK_S = 0.01  # how often gradio's free queue looks for new events (its default: 1 ms)


def launch(demo: gr.Blocks, ctx: AppContext, host: str = "127.0.0.1", port: int | None = 7860,
           share: bool = False, concurrency: int = 4, **kwargs: Any):
    """Serve ``demo``: files only from runs_dir and datasets_dir; theme and CSS go to launch (Gradio 6)."""
    # gradio's own calls of deprecated starlette / pandas names warn on every event; they are not the user's
    warnings.filterwarnings("ignore", module=r"gradio(\.|$)")
    log = logging.getLogger("vla_app")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    demo.queue(default_concurrency_limit=concurrency)
    # gradio's queue loop checks for new events every 1 ms and for progress every 10 ms while it is free:
    # ~4 % of a core with no page open. Every 10 ms / 100 ms instead costs an action at most 10 ms more
    # before it starts (the tabs' timers bypass the queue) and brings an idle server under 1 %.
    queue = getattr(demo, "_queue", None)
    if queue is not None and hasattr(queue, "sleep_when_free"):
        queue.sleep_when_free = max(queue.sleep_when_free, IDLE_QUEUE_CHECK_S)
        queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, 10 * IDLE_QUEUE_CHECK_S)
    return demo.launch(
        server_name=host, server_port=port, share=share,
        allowed_paths=[str(ctx.runs_dir), str(ctx.datasets_dir)],
        theme=gr.themes.Soft(), css=CSS, show_error=False, **kwargs,
    )
