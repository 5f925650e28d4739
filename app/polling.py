"""Timers that cost nothing while there is nothing to watch.

Each tab that follows a job has one ``gr.Timer``. It starts inactive and runs only while

* the tab is the one shown (switching tabs turns every other tab's timer off, see :func:`wire_tab_timers`),
* the tab has something to follow (a job it started or attached to that is still running, or whose
  end it has not shown yet), and
* the page is visible (Gradio's timer itself skips ticks while the browser tab is hidden).

While a job runs but nothing changes, the period doubles from the tab's base period up to
``MAX_PERIOD_S`` (a long evaluation episode, a slow training step), and drops back to the base at the
next change. So an open page with no job running makes no calls at all.

A tab's watch state is a dict with the ``run_id`` it follows; this module keeps three keys of its own in it:
``following`` (there is something to follow), ``active`` (the timer runs) and ``period``, so a timer update is
sent only when the timer must change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

MAX_PERIOD_S = 8.0  # the longest a running job goes unpolled while nothing changes

TAB_IDS = ("datasets", "model", "training", "rollouts", "benchmark")  # in the order the page shows them
FIRST_TAB = TAB_IDS[0]  # the tab a page opens on when its address names none


@dataclass
class TabTimer:
    """A tab's timer and the watch state it follows (a dict with ``run_id``, see the module docstring)."""

    tab_id: str
    tab: Any  # the gr.Tab
    timer: gr.Timer
    state: gr.State
    base_s: float


def pace(state: dict | None, changed: bool, follow: bool, base_s: float) -> tuple[dict, Any]:
    """The tab's next timer setting after a poll.

    ``changed``: the poll found something new; ``follow``: there is still something to follow (the job runs,
    or its end is not shown yet). A poll never starts a stopped timer (the tab may be hidden: only showing the
    tab or an action in it does); it slows a running one down while nothing changes, speeds it up at a change,
    and stops it when there is nothing left to follow. Returns (the state, a ``gr.Timer`` update, or
    ``gr.skip()`` when the timer stays as it is)."""
    state = dict(state or {})
    state["following"] = bool(follow)
    period = float(state.get("period") or base_s)
    if not state.get("active"):
        return state, gr.skip()
    if not follow:
        state.update(active=False, period=base_s)
        return state, gr.Timer(value=base_s, active=False)
    new_period = base_s if changed else min(MAX_PERIOD_S, period * 2)
    state["period"] = new_period
    return state, (gr.skip() if new_period == period else gr.Timer(value=new_period, active=True))


def start_following(state: dict | None, base_s: float) -> tuple[dict, Any]:
    """A job was started or attached from the shown tab: poll it at the base period from now on."""
    state = dict(state or {})
    state.update(period=base_s, active=True, following=True)
    return state, gr.Timer(value=base_s, active=True)


def opened_tab(request: gr.Request | None) -> str:
    """The tab a page opened on: ``?tab=<id>`` in its address, else the first tab."""
    want = (request.query_params.get("tab") if request is not None else None) or ""
    return want if want in TAB_IDS else FIRST_TAB


def wire_tab_timers(timers: list[TabTimer]) -> None:
    """Showing a tab turns its timer on if it has something to follow, and every other tab's timer off."""
    states = [t.state for t in timers]
    outputs = [t.timer for t in timers] + states
    for shown in timers:
        def on_select(*values: Any, _shown: TabTimer = shown) -> list:
            timer_updates, new_states = [], []
            for t, value in zip(timers, values):
                value = dict(value) if isinstance(value, dict) else {}
                # the shown tab follows what it has (an attached run the poll has not seen end); the rest rest
                on = t is _shown and bool(value.get("run_id")) and bool(value.get("following"))
                value.update(active=on, period=t.base_s)
                timer_updates.append(gr.Timer(value=t.base_s, active=on))
                new_states.append(value)
            return timer_updates + new_states

        shown.tab.select(on_select, states, outputs, api_name=False, queue=False, show_progress="hidden")


__all__ = ["MAX_PERIOD_S", "TAB_IDS", "TabTimer", "opened_tab", "pace", "start_following", "wire_tab_timers"]
