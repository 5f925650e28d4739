"""Rollouts tab: pick a checkpoint and a task, pick or type an instruction, run N closed-loop episodes
as a background eval job; then watch the videos with success and return, and plot each episode's
actions step by step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from vla_engine.config.run_config import EVAL_SEED_START
from vla_engine.eval.job_config import eval_job_config
from vla_engine.eval.leaderboard import format_task_metrics, task_metrics
from vla_engine.runs.schema import format_eval

from ..context import AppContext, AppError, inside
from ..events import POLL, handler
from ..forms import optional_number, parse_optional_int, progress_html
from ..plots import empty_figure, timeseries_figure
from ..polling import TabTimer, opened_tab, pace, start_following

TAB_ID = "rollouts"
POLL_SECONDS = 1.5  # the evaluation timer's base period (app.polling)
OWN_INSTRUCTION = ""  # dropdown value: the task's own instruction (drawn per episode)
EMPTY = {"run_id": None, "shown": True, "following": False, "active": False}
# the form's labels, so a validation error names the field as the page does
LABELS = {"episodes": "Episodes", "num_videos": "Videos", "seed_start": "First seed",
          "max_episode_steps": "Max steps per episode", "n_action_steps": "Actions executed per chunk"}


def instruction_choices(task: str) -> list[tuple[str, str] | str]:
    """The task's own instruction (per episode), then every template of the task spelled out."""
    from vla_engine.envs import BLOCK_COLORS, ZONE_NAMES
    from vla_engine.registry import TASKS

    out: list[Any] = [("(the task's own instruction, drawn per episode)", OWN_INSTRUCTION)]
    spec = TASKS.get(task) if task in TASKS else None
    seen = set()
    for tpl in getattr(spec, "templates", ()):
        for color in BLOCK_COLORS:
            for zone in (ZONE_NAMES if "{zone}" in tpl else ("",)):
                text = tpl.format(color=color, zone=zone)
                if text not in seen:
                    seen.add(text)
                    out.append(text)
    return out


def checkpoint_task(ctx: AppContext, ref: str) -> str | None:
    from vla_engine.runs.jobs import run_task_of

    return run_task_of(ctx.resolve_checkpoint(ref))


def inference_settings(action_steps: Any = None, ensemble: Any = "") -> dict:
    """The form's inference fields as ``VLAModel.configure_inference`` settings: ``action_steps`` empty =
    the checkpoint's; ``ensemble`` empty = the checkpoint's, "off", or a coefficient."""
    out: dict[str, Any] = {}
    steps = parse_optional_int(action_steps, LABELS["n_action_steps"], minimum=1, empty="the checkpoint's")
    if steps is not None:
        out["n_action_steps"] = steps
    text = str(ensemble if ensemble is not None else "").strip().lower()
    if text in ("off", "none", "null"):
        out["temporal_ensemble_coeff"] = None
    elif text:
        try:
            out["temporal_ensemble_coeff"] = float(text)
        except ValueError:
            raise AppError(f"temporal ensembling {ensemble!r} is not a number; leave it empty, type off, or a "
                           f"coefficient such as -1 (newer chunks weigh more) or 0.01 (ACT)") from None
    return out


def eval_config(ctx: AppContext, ref: str, task: str, episodes: Any, videos: Any, seed_start: Any,
                max_steps: Any, instruction: str | None, action_steps: Any = None, ensemble: Any = "") -> dict:
    """The eval job config of the form (checked by the engine; the task defaults to the checkpoint's)."""
    ckpt = ctx.resolve_checkpoint(ref)
    if not task:
        task = checkpoint_task(ctx, ref)
        if not task:
            raise AppError("no task chosen and the checkpoint's run names none; pick a task")
    max_steps = parse_optional_int(max_steps, LABELS["max_episode_steps"], minimum=1, empty="the task's")
    return labelled(lambda: eval_job_config(ckpt, task, episodes=episodes, num_videos=videos, seed_start=seed_start,
                                            max_episode_steps=max_steps, instruction=instruction,
                                            inference=inference_settings(action_steps, ensemble),
                                            runs_dir=ctx.runs_dir))


def labelled(make: Any) -> Any:
    """``make()``, with a config error's field named by its label on the page (``Episodes (eval.episodes): ...``)."""
    from vla_engine.config.base import ConfigError

    try:
        return make()
    except ConfigError as e:
        msg = str(e)
        for field, label in LABELS.items():
            for prefix in (f"eval.{field}:", f"{field}:"):
                if msg.startswith(prefix):
                    raise AppError(f"{label} ({prefix[:-1]}):{msg[len(prefix):]}") from None
        raise


def results_of(ctx: AppContext, run_id: str) -> dict:
    """The evaluation results of a run: eval.json (eval jobs) or videos/<task>-results.json (train runs)."""
    run = ctx.run(run_id)
    p = run.path / "eval.json"
    if not p.exists():
        found = sorted(run.videos_dir.glob("*-results.json")) if run.videos_dir.exists() else []
        if not found:
            raise AppError(f"run {run_id} has no evaluation results yet (state: {run.read_status().state})")
        p = found[-1]
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        raise AppError(f"{p.name} of run {run_id} is unreadable; run the evaluation again") from None


def video_path(ctx: AppContext, run_id: str, name: str | None) -> str | None:
    if not name:
        return None
    run = ctx.run(run_id)
    p = inside(run.videos_dir / Path(name).name, ctx.runs_dir)
    return str(p) if p.exists() else None


def results_view(ctx: AppContext, run_id: str) -> dict:
    """The results outputs of an evaluation: summary, table, gallery, episode list, first video and actions."""
    import pandas as pd

    data = results_of(ctx, run_id)
    s = data.get("summary", {})
    eps = data.get("episodes", [])
    extra = format_task_metrics(task_metrics(s))  # the task's own figures: route completion, coverage, ...
    md = (f"`{run_id}` · **{format_eval(s, data.get('task'))}**" + (f" · {extra}" if extra else "")
          + (f" · {s['eval/ms_per_step']:.1f} ms per action" if "eval/ms_per_step" in s else "")
          + "".join(f" · `{k}: {v}`" for k, v in (data.get("inference") or {}).items()))
    rows = [[e.get("episode"), e.get("seed"), e.get("instruction"), "yes" if e.get("success") else "no",
             round(float(e.get("return", 0)), 3), e.get("length"), round(float(e.get("ms_per_step", 0)), 1),
             e.get("video") or ""] for e in eps]
    df = pd.DataFrame(rows, columns=["episode", "seed", "instruction", "success", "return", "length", "ms/step",
                                     "video"])
    gallery = []
    for e in eps:
        v = video_path(ctx, run_id, e.get("video"))
        if v:
            gallery.append((v, f"seed {e.get('seed')}: {'success' if e.get('success') else 'fail'}, "
                               f"return {float(e.get('return', 0)):.2f}"))
    choices = [(f"episode {e.get('episode', i)} · seed {e.get('seed')} · "
                f"{'success' if e.get('success') else 'fail'}", i) for i, e in enumerate(eps)]
    video, fig = episode_view(ctx, run_id, 0, data) if eps else (None, empty_figure("actions"))
    return {"summary": md, "results": df, "gallery": gallery,
            "episode": gr.update(choices=choices, value=0 if choices else None), "video": video, "actions": fig}


def episode_view(ctx: AppContext, run_id: str, index: Any, data: dict | None = None) -> tuple:
    """(video path or None, action figure) of episode ``index`` of a run's results."""
    from vla_engine.envs import task_info

    data = data or results_of(ctx, run_id)
    eps = data.get("episodes", [])
    i = int(index or 0)
    if not 0 <= i < len(eps):
        raise AppError(f"episode {i} is out of range; this evaluation has {len(eps)} episodes")
    e = eps[i]
    names = None
    try:
        names = task_info(data.get("task"))["action_names"]
    except (KeyError, TypeError, ValueError):
        pass
    title = f"actions · episode {e.get('episode', i)} ({'success' if e.get('success') else 'fail'})"
    fig = (timeseries_figure(e["actions"], names, title) if e.get("actions")
           else empty_figure(title, "actions were not recorded for this evaluation"))
    return video_path(ctx, run_id, e.get("video")), fig


def eval_run_choices(ctx: AppContext) -> list[tuple[str, str]]:
    out = []
    for r in reversed(ctx.list_runs()):
        summary = r.status.eval_summary
        if r.job == "eval" or (r.job == "train" and summary is not None):
            sr = f" · success {summary.success_rate:.0%}" if summary is not None else ""
            out.append((f"{r.run_id} ({r.job}, {r.status.state}){sr}", r.run_id))
    return out


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    tasks = ctx.task_names()
    choices = ctx.checkpoint_choices()
    first = choices[0][1] if choices else None
    first_task = (checkpoint_task(ctx, first) if first else None) or (tasks[0] if tasks else None)
    with gr.Tab("Rollouts", id=TAB_ID) as tab:
        gr.Markdown("Run a trained policy in its MuJoCo task on held-out seeds and watch what it does. "
                    "Type any instruction to probe its language grounding.")
        with gr.Row():
            # the task follows the checkpoint: the first checkpoint shown comes with the task it was trained on
            ckpt = gr.Dropdown(choices, value=first, label="Checkpoint", allow_custom_value=True, scale=3)
            task = gr.Dropdown(tasks, value=first_task if first_task in tasks else None, label="Task", scale=1)
            refresh_btn = gr.Button("↻", scale=0, min_width=40)
        instruction = gr.Dropdown(instruction_choices(first_task) if first_task else [], value=OWN_INSTRUCTION,
                                  label="Instruction (pick or type)", allow_custom_value=True)
        with gr.Row():
            episodes = gr.Number(4, precision=0, label=LABELS["episodes"])
            videos = gr.Number(4, precision=0, label=LABELS["num_videos"])
            seed_start = gr.Number(EVAL_SEED_START, precision=0,
                                   label=f"{LABELS['seed_start']} (held-out: >= {EVAL_SEED_START:,})")
            max_steps = optional_number(LABELS["max_episode_steps"], "the task's")
        with gr.Row():  # how a chunking policy turns its chunks into actions (set after training)
            action_steps = optional_number(LABELS["n_action_steps"], "the checkpoint's")
            ensemble = gr.Textbox("", label="Temporal ensembling (empty: the checkpoint's; off; or a coefficient: "
                                            "-1 weighs newer chunks more, ACT uses 0.01)")
        run_btn = gr.Button("Run episodes", variant="primary")
        status = gr.Markdown("")
        progress = gr.HTML(progress_html(0, 1, ""))
        with gr.Row():
            past = gr.Dropdown(eval_run_choices(ctx), label="Evaluations", allow_custom_value=True, scale=3)
            show_btn = gr.Button("Show", scale=1)
        summary = gr.Markdown("")
        gallery = gr.Gallery(label="Videos", columns=4, height=300, allow_preview=True)
        results = gr.Dataframe(interactive=False, wrap=True)
        with gr.Row():
            ep_pick = gr.Dropdown([], label="Episode", scale=1, allow_custom_value=True)
        with gr.Row():
            video = gr.Video(label="Episode video", height=300, autoplay=True, scale=1)
            action_plot = gr.Plot(empty_figure("actions"), show_label=False, scale=2)
        state = gr.State(dict(EMPTY))
        shown_run = gr.State(None)
        tick = gr.Timer(POLL_SECONDS, active=False)

    ctx.extras.setdefault("tab_timers", []).append(TabTimer(TAB_ID, tab, tick, state, POLL_SECONDS))

    view = {"summary": summary, "results": results, "gallery": gallery, "episode": ep_pick, "video": video,
            "actions": action_plot}

    @handler(inputs={"current": ckpt}, outputs={"checkpoint": ckpt, "evaluations": past, "task": task})
    def refresh(current: str | None):
        """Fresh checkpoint and evaluation lists; the newest checkpoint is chosen when none is."""
        choices = ctx.checkpoint_choices()
        value = current or (choices[0][1] if choices else None)
        t = checkpoint_task(ctx, value) if value and not current else None
        out = {"checkpoint": gr.update(choices=choices, value=value),
               "evaluations": gr.update(choices=eval_run_choices(ctx))}
        if t in tasks:
            out["task"] = gr.update(value=t)
        return out

    refresh.listen(refresh_btn.click, api_name="rollout_refresh")
    refresh.listen(tab.select, api_name=False)

    @handler(inputs={"ref": ckpt}, outputs={"task": task, "instruction": instruction, "status": status},
             status="status")
    def on_ckpt(ref: str):
        t = checkpoint_task(ctx, ref)
        if t and t in tasks:
            return {"task": gr.update(value=t), "instruction": gr.update(choices=instruction_choices(t),
                                                                         value=OWN_INSTRUCTION),
                    "status": f"Checkpoint `{ref}` (trained on **{t}**)."}
        return {"status": ""}

    on_ckpt.listen(ckpt.input, api_name="rollout_checkpoint")

    @handler(inputs={"t": task}, outputs={"instruction": instruction})
    def on_task(t: str):
        return {"instruction": gr.update(choices=instruction_choices(t), value=OWN_INSTRUCTION)}

    on_task.listen(task.input, api_name=False)

    @handler(inputs={"ref": ckpt, "t": task, "instr": instruction, "n": episodes, "nv": videos, "seed": seed_start,
                     "steps": max_steps, "act_steps": action_steps, "ens": ensemble},
             outputs={"status": status, "state": state, "tick": tick}, status="status")
    def start(ref, t, instr, n, nv, seed, steps, act_steps, ens):
        cfg = eval_config(ctx, ref, t, n, nv, seed, steps, instr, act_steps, ens)
        run_id = ctx.start_job("eval", cfg, name=f"eval-{cfg['task']}")
        what = f"“{cfg['instruction']}”" if cfg["instruction"] else "the task's own instructions"
        watch, timer = start_following({"run_id": run_id, "shown": False}, POLL_SECONDS)
        return {"status": f"Started **{run_id}**: {cfg['episodes']} episodes of **{cfg['task']}** with {what}.",
                "state": watch, "tick": timer}

    start.listen(run_btn.click, api_name="rollout_start", concurrency_limit=1)

    @handler(inputs={"st_state": state},
             outputs={"status": status, "progress": progress, **view, "shown_run": shown_run, "state": state,
                      "tick": tick, "evaluations": past}, status="status", warn=False)
    def poll(st_state: dict):
        s = dict(st_state or EMPTY)
        rid = s.get("run_id")
        if not rid or s.get("shown"):
            state, timer = pace(s, changed=False, follow=False, base_s=POLL_SECONDS)
            return {"state": state, "tick": timer} if state != s else {"tick": timer}
        st = ctx.runner.status(rid)
        if st.active:
            done, total = st.step, st.total_steps
            key = (st.state, done, total)
            changed = s.get("seen") != key
            state, timer = pace({**s, "seen": key}, changed=changed, follow=True, base_s=POLL_SECONDS)
            if not changed:
                return {"state": state, "tick": timer} if state != s else {}
            return {"status": f"Evaluating `{rid}`: {st.state}", "state": state, "tick": timer,
                    "progress": progress_html(done, total, f"episode {done}/{total or '?'}")}
        s["shown"] = True
        s, timer = pace(s, changed=True, follow=False, base_s=POLL_SECONDS)
        done_list = gr.update(choices=eval_run_choices(ctx), value=rid)  # the new evaluation is in the list
        if st.state != "done":
            return {"status": f"**Evaluation {st.state}:** {st.error or 'see its log'}",
                    "progress": progress_html(0, 1, ""), "state": s, "tick": timer, "evaluations": done_list}
        return {"status": f"Evaluation `{rid}` done.", "progress": progress_html(1, 1, "done"),
                **results_view(ctx, rid), "shown_run": rid, "state": s, "tick": timer, "evaluations": done_list}

    poll.listen(tick.tick, api_name="rollout_poll", **POLL)

    @handler(inputs={"rid": past}, outputs={"status": status, **view, "shown_run": shown_run}, status="status")
    def show(rid: str):
        if not rid:
            raise AppError("no evaluation chosen; run one above or pick one from the list")
        return {"status": "", **results_view(ctx, rid), "shown_run": rid}

    show.listen(show_btn.click, api_name="rollout_show")

    @handler(inputs={"rid": shown_run, "index": ep_pick},
             outputs={"video": video, "actions": action_plot, "status": status}, status="status")
    def on_episode(rid: str, index: Any):
        if not rid:
            raise AppError("no evaluation shown yet")
        v, fig = episode_view(ctx, rid, index)
        return {"video": v, "actions": fig, "status": ""}

    on_episode.listen(ep_pick.input, api_name="rollout_episode")

    @handler(outputs={"state": state, "tick": tick}, warn=False, request=True)
    def attach(request: gr.Request | None = None):
        """On page load: follow a running evaluation (live when the page opened on this tab)."""
        rows = [r for r in ctx.list_runs("eval") if r.status.active]
        if not rows:
            return {"state": dict(EMPTY)}
        watch = {"run_id": rows[-1].run_id, "shown": False, "following": True, "active": False}
        if opened_tab(request) == TAB_ID:
            watch, timer = start_following(watch, POLL_SECONDS)
            return {"state": watch, "tick": timer}
        return {"state": watch}

    attach.listen(demo.load, api_name=False)
