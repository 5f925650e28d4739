"""Rollouts tab: pick a checkpoint and a task, pick or type an instruction, run N closed-loop episodes
as a background eval job; then watch the videos with success and return, and plot each episode's
actions step by step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from ..context import AppContext, AppError, inside
from ..forms import guarded, progress_html
from ..plots import empty_figure, timeseries_figure

OWN_INSTRUCTION = ""  # dropdown value: the task's own instruction (drawn per episode)
EMPTY = {"run_id": None, "shown": True}


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


def checkpoint_model_config(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise AppError(f"checkpoint {ckpt.name} has no readable config.json; it is incomplete") from None


def inference_settings(ckpt: Path, action_steps: Any = None, ensemble: Any = "") -> dict:
    """How the checkpoint acts in these episodes (``VLAModel.configure_inference``), checked against its config:
    ``action_steps`` empty = the checkpoint's; ``ensemble`` empty = the checkpoint's, "off", or a coefficient."""
    from vla_engine.config.base import ConfigError
    from vla_engine.config.model_config import ModelConfig

    out: dict[str, Any] = {}
    if action_steps not in (None, ""):
        out["n_action_steps"] = int(action_steps)
    text = str(ensemble if ensemble is not None else "").strip().lower()
    if text in ("off", "none", "null"):
        out["temporal_ensemble_coeff"] = None
    elif text:
        try:
            out["temporal_ensemble_coeff"] = float(text)
        except ValueError:
            raise AppError(f"temporal ensembling {ensemble!r} is not a number; leave it empty, type off, or a "
                           f"coefficient such as -1 (newer chunks weigh more) or 0.01 (ACT)") from None
    if out:
        try:
            ModelConfig.from_dict(checkpoint_model_config(ckpt)).replace(**out)
        except ConfigError as e:
            raise AppError(str(e)) from None
    return out


def eval_config(ctx: AppContext, ref: str, task: str, episodes: Any, videos: Any, seed_start: Any,
                max_steps: Any, instruction: str | None, action_steps: Any = None, ensemble: Any = "") -> dict:
    """The eval job config (validated with EvalConfig; action sizes checked against the task)."""
    from vla_engine.config.run_config import EvalConfig
    from vla_engine.envs import task_info

    ckpt = ctx.resolve_checkpoint(ref)
    if not task:
        task = checkpoint_task(ctx, ref)
        if not task:
            raise AppError("no task chosen and the checkpoint's run names none; pick a task")
    ev = EvalConfig.from_dict({"task": task, "episodes": episodes, "num_videos": videos, "seed_start": seed_start,
                               "max_episode_steps": max_steps, "after_training": False})
    a = checkpoint_model_config(ckpt).get("action_dim")
    want = task_info(task)["action_dim"]
    if a is not None and a != want:
        raise AppError(f"this policy predicts {a}-D actions but task '{task}' takes {want}-D actions; "
                       f"evaluate it on the task it was trained for")
    instruction = (instruction or "").strip() or None
    return {"checkpoint": str(ckpt), "task": ev.task, "episodes": ev.episodes, "num_videos": ev.num_videos,
            "instruction": instruction, "seed_start": ev.seed_start, "runs_dir": str(ctx.runs_dir),
            "max_episode_steps": ev.max_episode_steps, "checkpoint_ref": ref,
            "inference": inference_settings(ckpt, action_steps, ensemble)}


def results_of(ctx: AppContext, run_id: str) -> dict:
    """The evaluation results of a run: eval.json (eval jobs) or videos/<task>-results.json (train runs)."""
    run = ctx.run(run_id)
    p = run.path / "eval.json"
    if not p.exists():
        found = sorted(run.videos_dir.glob("*-results.json")) if run.videos_dir.exists() else []
        if not found:
            st = run.read_status()
            raise AppError(f"run {run_id} has no evaluation results yet (state: {st.get('state')})")
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


def results_view(ctx: AppContext, run_id: str) -> tuple:
    """(summary markdown, table, gallery items, episode dropdown update, first video, first action figure)."""
    import pandas as pd

    data = results_of(ctx, run_id)
    s = data.get("summary", {})
    eps = data.get("episodes", [])
    md = (f"**{data.get('task')}** · `{run_id}` · success **{s.get('eval/success_rate', 0):.0%}** "
          f"[95% CI {s.get('eval/success_ci_low', 0):.0%}–{s.get('eval/success_ci_high', 1):.0%}] over "
          f"{s.get('eval/episodes', len(eps))} episodes · mean return {s.get('eval/mean_return', 0):.2f} · "
          f"mean length {s.get('eval/mean_length', 0):.1f}"
          + (f" · {s['eval/ms_per_step']:.1f} ms per action" if "eval/ms_per_step" in s else "")
          + "".join(f" · `{k}: {v}`" for k, v in (data.get("inference") or {}).items()))
    rows = [[e.get("episode"), e.get("seed"), e.get("instruction"), "✅" if e.get("success") else "❌",
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
    return md, df, gallery, gr.update(choices=choices, value=0 if choices else None), video, fig


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
        if r.get("job") == "eval" or (r.get("job") == "train" and r.get("eval")):
            ev = r.get("eval") or (r.get("result") or {}).get("eval") or {}
            sr = f" · success {ev['eval/success_rate']:.0%}" if "eval/success_rate" in ev else ""
            out.append((f"{r['run_id']} ({r.get('job')}, {r.get('state')}){sr}", r["run_id"]))
    return out


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    tasks = ctx.task_names()
    with gr.Tab("Rollouts", id="rollouts") as tab:
        gr.Markdown("Run a trained policy in its MuJoCo task on held-out seeds and watch what it does. "
                    "Type any instruction to probe its language grounding.")
        with gr.Row():
            ckpt = gr.Dropdown(ctx.checkpoint_choices(), label="Checkpoint", allow_custom_value=True, scale=3)
            task = gr.Dropdown(tasks, value=tasks[0] if tasks else None, label="Task", scale=1)
            refresh_btn = gr.Button("↻", scale=0, min_width=40)
        instruction = gr.Dropdown(instruction_choices(tasks[0]) if tasks else [], value=OWN_INSTRUCTION,
                                  label="Instruction (pick or type)", allow_custom_value=True)
        with gr.Row():
            episodes = gr.Number(4, precision=0, label="Episodes")
            videos = gr.Number(4, precision=0, label="Videos")
            seed_start = gr.Number(1_000_000, precision=0, label="First seed (held-out: >= 1,000,000)")
            max_steps = gr.Number(None, precision=0, label="Max steps per episode (empty: the task's)")
        with gr.Row():  # how a chunking policy turns its chunks into actions (set after training)
            action_steps = gr.Number(None, precision=0, minimum=1,
                                     label="Actions executed per chunk (empty: the checkpoint's)")
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
        tick = gr.Timer(1.5)

    @guarded(3, status_index=None)
    def refresh(current: str | None):
        """Fresh checkpoint and evaluation lists; the newest checkpoint is chosen when none is."""
        choices = ctx.checkpoint_choices()
        value = current or (choices[0][1] if choices else None)
        t = checkpoint_task(ctx, value) if value and not current else None
        return (gr.update(choices=choices, value=value), gr.update(choices=eval_run_choices(ctx)),
                gr.update(value=t) if t in tasks else gr.skip())

    refresh_btn.click(refresh, [ckpt], [ckpt, past, task], api_name="rollout_refresh")
    tab.select(refresh, [ckpt], [ckpt, past, task], api_name=False)

    @guarded(3, status_index=2)
    def on_ckpt(ref: str):
        t = checkpoint_task(ctx, ref)
        if t and t in tasks:
            return gr.update(value=t), gr.update(choices=instruction_choices(t), value=OWN_INSTRUCTION), \
                f"Checkpoint `{ref}` (trained on **{t}**)."
        return gr.skip(), gr.skip(), ""

    ckpt.input(on_ckpt, [ckpt], [task, instruction, status], api_name="rollout_checkpoint")

    def on_task(t: str):
        return gr.update(choices=instruction_choices(t), value=OWN_INSTRUCTION)

    task.input(guarded(1, status_index=None)(on_task), [task], [instruction], api_name=False)

    @guarded(2)
    def start(ref, t, instr, n, nv, seed, steps, act_steps=None, ens=""):
        cfg = eval_config(ctx, ref, t, n, nv, seed, steps, instr, act_steps, ens)
        run_id = ctx.runner.start("eval", cfg, name=f"eval-{cfg['task']}")
        what = f"“{cfg['instruction']}”" if cfg["instruction"] else "the task's own instructions"
        return (f"Started **{run_id}**: {cfg['episodes']} episodes of **{cfg['task']}** with {what}.",
                {"run_id": run_id, "shown": False})

    run_btn.click(start, [ckpt, task, instruction, episodes, videos, seed_start, max_steps, action_steps, ensemble],
                  [status, state],
                  api_name="rollout_start", concurrency_limit=1)

    view_outputs = [summary, results, gallery, ep_pick, video, action_plot]

    @guarded(3 + len(view_outputs) + 1, status_index=0, warn=False)
    def poll(st_state: dict):
        s = dict(st_state or EMPTY)
        rid = s.get("run_id")
        skip = (gr.skip(),) * (3 + len(view_outputs) + 1)
        if not rid:
            return skip
        st = ctx.runner.status(rid)
        state_name = st.get("state")
        if state_name in ("queued", "running"):
            done, total = st.get("step") or 0, st.get("total_steps")
            return (f"Evaluating `{rid}`: {state_name}", progress_html(done, total, f"episode {done}/{total or '?'}"),
                    *([gr.skip()] * (len(view_outputs) + 1)), s)
        if s.get("shown"):
            return skip
        s["shown"] = True
        if state_name != "done":
            return (f"**Evaluation {state_name}:** {st.get('error') or 'see its log'}", progress_html(0, 1, ""),
                    *([gr.skip()] * (len(view_outputs) + 1)), s)
        view = results_view(ctx, rid)
        return (f"Evaluation `{rid}` done.", progress_html(1, 1, "done"), *view, rid, s)

    tick.tick(poll, [state], [status, progress, *view_outputs, shown_run, state], api_name="rollout_poll",
              show_progress="hidden")

    @guarded(len(view_outputs) + 2, status_index=0)
    def show(rid: str):
        if not rid:
            raise AppError("no evaluation chosen; run one above or pick one from the list")
        view = results_view(ctx, rid)
        return ("", *view, rid)

    show_btn.click(show, [past], [status, *view_outputs, shown_run], api_name="rollout_show")

    @guarded(3, status_index=2)
    def on_episode(rid: str, index: Any):
        if not rid:
            raise AppError("no evaluation shown yet")
        v, fig = episode_view(ctx, rid, index)
        return v, fig, ""

    ep_pick.input(on_episode, [shown_run, ep_pick], [video, action_plot, status], api_name="rollout_episode")

    def attach():
        rows = [r for r in ctx.list_runs("eval") if r.get("state") in ("queued", "running")]
        return {"run_id": rows[-1]["run_id"], "shown": False} if rows else dict(EMPTY)

    demo.load(guarded(1, status_index=None, warn=False)(attach), None, [state], api_name=False)
