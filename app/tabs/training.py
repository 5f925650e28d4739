"""Training tab: preset + dataset + method + hyperparameters (forms from the config dataclasses), the
equivalent ``vla train`` command, Start as a background job, live curves (smoothed as TensorBoard does) read
incrementally from metrics.jsonl, progress with ETA, log tail, Stop / Resume, the runs of every kind, and
runs compared side by side with the settings they differ in.

The form always shows the run it is attached to: attaching on page load or picking a run to watch fills it
from that run's ``config.yaml``. The curve timer runs only while this tab is shown and its run is alive
(:mod:`app.polling`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from vla_engine.data.minari_browse import PREFIX as MINARI_PREFIX
from vla_engine.runs.schema import format_eval

from ..context import AppContext, AppError, inside
from ..events import POLL, handler
from ..forms import Form, fmt_duration, progress_html
from ..model_form import ModelForm
from ..curves import DEFAULT_TITLES, OVERLAY_METRICS, PANELS, curve_plots, latest_video
from ..plots import empty_figure, overlay_figure
from ..polling import TabTimer, opened_tab, pace, start_following
from ..runs_view import ALL_JOBS, JOB_NAMES, runs_table, settings_diff_table

TAB_ID = "training"
DEFAULT_PRESET = "quickstart"
MODEL_PRIMARY = ["vision_encoder", "projector", "llm", "action_head", "llm_hidden_size", "llm_num_layers",
                 "chunk_size", "n_action_steps"]
TRAIN_PRIMARY = ["learning_rate", "batch_size", "max_steps", "num_epochs", "warmup_steps",
                 "lr_scheduler", "save_every", "log_every", "device", "mixed_precision", "use_lora"]
POLL_SECONDS = 0.5  # the curve timer's base period: new metrics reach the page within this plus one request
SMOOTHING = 0.6  # the curves' default smoothing (TensorBoard's slider, 0 = raw)
# ------------------------------------------------------------------------------------------------
# Helpers (no widgets).
# ------------------------------------------------------------------------------------------------
def dataset_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """Local datasets first, then built-in tasks that have no dataset yet (generated on first run)."""
    local = {d["name"]: d for d in ctx.list_datasets()}
    out = [(f"{n} · {d['episodes']} episodes ({d.get('task') or 'local'})", n) for n, d in local.items()]
    out += [(f"{t} · built-in task (generated on first run)", t) for t in ctx.task_names() if t not in local]
    # Minari sets (offline BC's data) under datasets/minari, named minari:<id>
    out += [(f"{d['name']} · {d['episodes']} episodes (Minari, {d.get('task') or 'no env'})", d["name"])
            for d in ctx.list_minari_datasets()]
    return out


def dataset_name_of(cfg: dict) -> str | None:
    ds = cfg.get("dataset") or {}
    if ds.get("minari_id"):  # offline BC: the Minari set (it may be made on the first run)
        return MINARI_PREFIX + str(ds["minari_id"])
    if ds.get("root"):
        return Path(str(ds["root"])).name
    return ds.get("task")


def dataset_fields(ctx: AppContext, name: str) -> dict:
    """repo_id / root / task of the dataset section for dataset ``name`` (local, or a task to generate)."""
    if not name:
        raise AppError("no dataset chosen; pick a local dataset or a built-in task")
    if name.startswith(MINARI_PREFIX):  # a Minari set in datasets/minari (made on first run where it can be)
        entry = next((d for d in ctx.list_minari_datasets() if d["name"] == name), {})
        env = entry.get("task")
        fields = {"minari_id": name[len(MINARI_PREFIX):], "minari_root": str(ctx.datasets_dir / "minari"),
                  "root": None}
        if env and f"gym/{env}" in ctx.task_names():
            fields["task"] = f"gym/{env}"
        return fields
    root = ctx.dataset_root(name)
    entry = ctx.dataset_entry(name)
    tasks = ctx.task_names()
    if entry is not None:
        task = entry.get("task") if entry.get("task") in tasks else None
        return {"repo_id": entry.get("repo_id") or f"local/{name}", "root": str(root), "task": task}
    if name in tasks:
        return {"repo_id": f"local/{name}", "root": str(root), "task": name}
    raise AppError(f"no dataset named {name!r} in {ctx.datasets_dir} and no built-in task of that name; "
                   f"choose one of: {', '.join(tasks)}")


def dims_of(ctx: AppContext, name: str) -> tuple[int | None, int | None]:
    """(action_dim, state_dim) of dataset ``name`` (from its files, or the task's definition)."""
    minari = next((d for d in ctx.list_minari_datasets() if d["name"] == name), None)
    if minari is not None:
        return minari.get("action_dim"), minari.get("state_dim")
    try:
        entry = ctx.dataset_entry(name)
    except ValueError:
        return None, None
    if entry is not None:
        return entry.get("action_dim"), entry.get("state_dim")
    if name in ctx.task_names():
        from vla_engine.envs import task_info

        info = task_info(name)
        return info["action_dim"], info["state_dim"]
    return None, None


def training_class(method: str):
    from vla_engine.config.training_config import TRAINING_CONFIG_TYPES
    from vla_engine.train.methods import method_config_type

    return TRAINING_CONFIG_TYPES[method_config_type(method)]


def newest_active_train_run(ctx: AppContext) -> str | None:
    rows = [r for r in ctx.list_runs("train") if r.status.active]
    return rows[-1].run_id if rows else None


def status_markdown(run_id: str | None, st: Any) -> str:
    """The watched run's state, phase, loss, evaluation and error (``st``: its RunStatus)."""
    if not run_id:
        return "No run attached. Pick a preset and press **Start**, or choose a run under *Runs*."
    parts = [f"**Run** `{run_id}` — **{st.state}**"]
    if st.phase and st.active:
        parts.append(f"phase: {st.phase}")
    if st.get("loss") is not None:
        parts.append(f"loss {st.get('loss'):.4f}")
    text = " · ".join(parts)
    if st.eval_summary is not None:
        text += f"\n\n**Evaluation on held-out seeds:** {format_eval(st.eval_summary)}"
    if st.error:
        text += f"\n\n**Error:** {st.error}"
    return text


def progress_of(st: Any) -> str:
    running = st.state == "running"
    if st.phase == "datagen" and running:
        d, n = st.get("datagen_done", 0), st.get("datagen_total")
        return progress_html(d, n, f"generating demonstrations: {d}/{n or '?'} episodes")
    if st.phase == "eval" and running:
        return progress_html(1, 1, "training done · evaluating the policy on held-out seeds…")
    step, total = st.step or 0, st.total_steps
    if not total:
        return progress_html(0, 1, st.state or "")
    eta = f" · ETA {fmt_duration(st.eta_s)}" if running and st.eta_s is not None else ""
    return progress_html(step, total, f"step {step}/{total} ({100 * step / total:.0f}%){eta} · {st.state}")


def watch_state(run_id: str | None) -> dict:
    """A page's watch: the run and what of it the page has shown (nothing yet); app.polling adds the
    timer's period and whether it runs."""
    return {"run_id": run_id, "seen": {}, "active": False, "following": False}


def smoothing_of(value: Any) -> float:
    try:
        return min(0.99, max(0.0, float(value)))
    except (TypeError, ValueError):
        return SMOOTHING


# ------------------------------------------------------------------------------------------------
# The tab.
# ------------------------------------------------------------------------------------------------
def build(ctx: AppContext, demo: gr.Blocks) -> None:
    from vla_engine.config.base import apply_overrides
    from vla_engine.config.dataset_config import DatasetConfig
    from vla_engine.config.diff import train_command
    from vla_engine.config.run_config import EvalConfig, RunConfig
    from vla_engine.config.training_config import TRAINING_CONFIG_TYPES
    from vla_engine.train.methods import PLANNED_METHODS, all_methods, get_trainer

    regs = ctx.registries
    model_regs = {"vision_encoder": regs["vision_encoders"], "projector": regs["projectors"],
                  "llm": regs["language_models"], "action_head": regs["action_heads"]}
    task_regs = {"task": regs["tasks"]}
    train_regs = {"vision_encoder": regs["vision_encoders"], "llm_model": regs["language_models"],
                  "projector_type": regs["projectors"]}

    base = RunConfig.from_dict(ctx.preset_dict(DEFAULT_PRESET)).to_dict()
    base_cls = training_class(base["method"])
    train_classes = [base_cls] + [c for c in TRAINING_CONFIG_TYPES.values() if c is not base_cls]
    method_choices = [(f"{m} (not built yet)" if m in PLANNED_METHODS else m, m) for m in all_methods()]

    with gr.Tab("Training", id=TAB_ID) as tab:
        gr.Markdown("Pick a preset (the **quickstart** preset trains a small policy on the built-in *reach* task "
                    "in minutes on a CPU), adjust anything, and press **Start**. The job runs in the background: "
                    "close the page and come back, it keeps going.")
        with gr.Row():
            preset = gr.Dropdown(ctx.preset_choices(), value=DEFAULT_PRESET, label="Preset", scale=2,
                                 allow_custom_value=True)
            method = gr.Dropdown(method_choices, value=base["method"], label="Method", scale=1)
            dataset = gr.Dropdown(dataset_choices(ctx), value=dataset_name_of(base), label="Dataset",
                                  allow_custom_value=True, scale=2,
                                  info=f"local datasets in {ctx.datasets_dir}, or a built-in task")
            run_name = gr.Textbox(base["name"], label="Run name", scale=1, max_length=64)
        with gr.Accordion("Model", open=False):
            model_form = ModelForm(base["model"], registries=model_regs, primary=MODEL_PRIMARY)
            model_form.wire_part_changes()
        with gr.Accordion("Dataset", open=False):
            data_form = Form("dataset", DatasetConfig, base["dataset"], skip=("repo_id", "root", "task"))
        with gr.Accordion("Training hyperparameters", open=True):
            train_form = Form("training", train_classes, base["training"], registries=train_regs,
                              primary=TRAIN_PRIMARY,
                              suggestions={"device": ["auto", "cpu", "cuda", "cuda:0", "mps"]})
        with gr.Accordion("Evaluation after training", open=False):
            eval_form = Form("eval", EvalConfig, base["eval"], registries=task_regs)
        with gr.Accordion("Overrides (section.field=value, one per line; applied last)", open=False):
            overrides = gr.Textbox("", lines=3, show_label=False,
                                   placeholder="training.max_steps=200\ndataset.episodes=20")
        with gr.Row():
            start_btn = gr.Button("Start", variant="primary")
            stop_btn = gr.Button("Stop", variant="stop")
            resume_btn = gr.Button("Resume")
            command_btn = gr.Button("Show command")
        with gr.Accordion("The same run from a terminal", open=False) as command_box:
            command = gr.Code("", language="shell", show_label=False, interactive=False)
        status = gr.Markdown("")  # what the last action said (an error stays until the next action)
        run_md = gr.Markdown(status_markdown(None, {}))  # the attached run's own state
        progress = gr.HTML(progress_html(0, 1, ""))
        smoothing = gr.Slider(0, 0.99, value=SMOOTHING, step=0.01, label="Smoothing",
                              info="exponential moving average of the curves; the raw points stay faint behind")
        plots = []  # the panels follow what the run logs (app.curves): loss and lr for BC, return for RL, ...
        for row in range(0, PANELS, 2):
            with gr.Row():
                plots += [gr.Plot(empty_figure(title), label=title, show_label=False)
                          for title in DEFAULT_TITLES[row:row + 2]]
        with gr.Accordion("Latest rollout video (RL runs record one every few updates)", open=False):
            video = gr.Video(label="Latest rollout video", interactive=False, height=260)
        log_box = gr.Textbox(label="Log (tail)", lines=10, max_lines=10, autoscroll=True, interactive=False)
        with gr.Accordion("Runs", open=True):
            with gr.Row():
                watch = gr.Dropdown([], label="Watch a training run", scale=3, allow_custom_value=True)
                kind = gr.Radio([(JOB_NAMES[k], k) for k in JOB_NAMES] + [("all", ALL_JOBS)], value="train",
                                label="Jobs", scale=2)
                refresh_btn = gr.Button("↻ Refresh", scale=1)
            runs_df = gr.Dataframe(runs_table(ctx), interactive=False, wrap=False, max_height=360,
                                   column_widths=["190px", "110px", "140px", "130px", "80px", "110px", "70px",
                                                  "200px", "240px"])
        with gr.Accordion("Compare runs", open=False):
            with gr.Row():
                overlay_runs = gr.Dropdown([], multiselect=True, label="Runs", scale=3, allow_custom_value=True)
                overlay_metric = gr.Dropdown(OVERLAY_METRICS, value="train/loss", label="Metric", scale=1,
                                             allow_custom_value=True)
                overlay_btn = gr.Button("Compare", scale=1)
            overlay_plot = gr.Plot(empty_figure("overlay", "pick runs to compare"), show_label=False)
            overlay_note = gr.Markdown("")
            diff_df = gr.Dataframe(interactive=False, wrap=False, label="Settings that differ")
        watching = gr.State(watch_state(None))
        runs_seen = gr.State(None)
        tick = gr.Timer(POLL_SECONDS, active=False)

    ctx.extras.setdefault("tab_timers", []).append(TabTimer(TAB_ID, tab, tick, watching, POLL_SECONDS))
    forms = {"model": model_form, "data": data_form, "training": train_form, "eval": eval_form}

    # -- the form from a config: a preset, or the run the tab is attached to ----------------------------
    def form_of(cfg: dict, note: str) -> dict:
        cls = training_class(cfg["method"])
        return {"method": gr.update(value=cfg["method"]), "dataset": gr.update(value=dataset_name_of(cfg)),
                "run_name": gr.update(value=cfg["name"]), "model": model_form.updates(cfg["model"]),
                "data": data_form.updates(cfg["dataset"]), "training": train_form.updates(cfg["training"], cls),
                "eval": eval_form.updates(cfg["eval"]), "start": start_button(cfg["method"]), "status": note}

    def start_button(m: str) -> Any:
        planned = m in PLANNED_METHODS
        return gr.update(interactive=not planned, value="Start (method not built yet)" if planned else "Start")

    def run_form(rid: str | None) -> dict:
        """The form filled from run ``rid``'s config.yaml (nothing when there is no run or it is unreadable)."""
        if not rid:
            return {}
        data = {k: v for k, v in ctx.run(rid).read_config().items() if k != "job"}
        try:
            cfg = RunConfig.from_dict(data).to_dict()
        except Exception as e:  # noqa: BLE001 - a run of an older, unreadable layout: keep the form
            return {"status": f"Run `{rid}`: its config does not fill the form ({e})"}
        return {"overrides": "", **form_of(cfg, f"The form shows run **{rid}**'s settings.")}

    form_outputs = {"method": method, "dataset": dataset, "run_name": run_name, "overrides": overrides, **forms,
                    "start": start_btn, "status": status}

    # -- preset / method / dataset --------------------------------------------------------------
    @handler(inputs={"p": preset}, outputs=form_outputs, status="status")
    def on_preset(p: str):
        cfg = RunConfig.from_dict(ctx.preset_dict(p)).to_dict()
        return {"overrides": "", **form_of(cfg, f"Loaded preset **{p}**: {cfg.get('description') or ''}")}

    on_preset.listen(preset.input, api_name="train_preset")

    @handler(inputs={"m": method, "training": train_form},
             outputs={"training": train_form, "start": start_btn, "status": status}, status="status")
    def on_method(m: str, training: tuple):
        cls = training_class(m)
        vals = train_form.values(training, cls)
        note = (f"Method **{m}** is not built in this version yet; its preset validates but it cannot start."
                if m in PLANNED_METHODS else f"Method **{m}** uses the *{cls.type_name}* training config.")
        return {"training": train_form.updates(vals, cls), "start": start_button(m), "status": note}

    on_method.listen(method.input, api_name="train_method")

    action_dim_box = model_form.component("action_dim")
    state_dim_box = model_form.component("state_dim")

    eval_task_box = eval_form.component("task")

    @handler(inputs={"name": dataset, "state_dim_now": state_dim_box},
             outputs={"action_dim": action_dim_box, "state_dim": state_dim_box, "eval_task": eval_task_box,
                      "status": status}, status="status")
    def on_dataset(name: str, state_dim_now: Any):
        a, s = dims_of(ctx, name)
        if a is None:
            return {"status": f"Dataset {name!r} not found; Start will say what to do."}
        # a Minari set is evaluated in the env it was recorded in
        env_task = dataset_fields(ctx, name).get("task") if name.startswith(MINARI_PREFIX) else None
        # state_dim 0 = "take it from the data"; keep that choice
        return {"action_dim": gr.update(value=a), "state_dim": gr.update(value=0 if not state_dim_now else s),
                "eval_task": gr.update(value=env_task) if env_task else gr.update(),
                "status": f"Dataset **{name}**: {a}-D actions, {s}-D state (model sizes follow it)"
                          + (f"; evaluated in {env_task}." if env_task else ".")}

    on_dataset.listen(dataset.input, api_name="train_dataset")

    # -- start / stop / resume -------------------------------------------------------------------
    def build_config(preset: str, method: str, dataset: str, run_name: str, overrides: str, model: tuple,
                     data: tuple, training: tuple, eval: tuple) -> Any:
        cfg = ctx.preset_dict(preset)
        cls = training_class(method)
        cfg["method"] = method
        cfg["name"] = (run_name or "").strip() or cfg.get("name") or "run"
        cfg["model"] = model_form.values(model)
        cfg["dataset"] = {**data_form.values(data), **dataset_fields(ctx, dataset)}
        cfg["training"] = {"type": cls.type_name, **train_form.values(training, cls)}
        cfg["eval"] = eval_form.values(eval)
        if ctx.cpu_only:
            cfg["training"]["device"] = "cpu"
        lines = [ln.strip() for ln in (overrides or "").splitlines() if ln.strip() and not ln.strip().startswith("#")]
        cfg = apply_overrides(cfg, lines)
        if ctx.cpu_only:
            cfg["training"]["device"] = "cpu"
        ctx.check_model_paths(cfg.get("model") or {})
        root = (cfg.get("dataset") or {}).get("root")
        if cfg["dataset"].get("minari_id"):  # offline BC reads the Minari set, no LeRobot folder
            return RunConfig.from_dict(cfg)
        if not root:
            raise AppError("dataset.root is empty; pick a dataset (the app trains on datasets in its datasets folder)")
        root_p = Path(str(root))
        cfg["dataset"]["root"] = str(inside(root_p if root_p.is_absolute() else ctx.datasets_dir / root_p,
                                            ctx.datasets_dir))
        run_cfg = RunConfig.from_dict(cfg)  # validates; ConfigError names the field
        return run_cfg

    def command_of(preset: str, run_cfg: Any) -> str:
        ref = RunConfig.from_dict(ctx.preset_dict(preset)).to_dict()
        return train_command(preset, ref, run_cfg.to_dict())

    start_inputs = {"preset": preset, "method": method, "dataset": dataset, "run_name": run_name,
                    "overrides": overrides, **forms}

    @handler(inputs=start_inputs, outputs={"status": status, "command": command, "box": command_box},
             status="status")
    def on_command(**fields: Any):
        run_cfg = build_config(**fields)
        return {"command": command_of(fields["preset"], run_cfg), "box": gr.update(open=True),
                "status": "The command below starts this run from a terminal (`vla train`); the app runs the same."}

    on_command.listen(command_btn.click, api_name="train_command")

    @handler(inputs=start_inputs, outputs={"status": status, "watch": watching, "tick": tick, "command": command},
             status="status")
    def on_start(**fields: Any):
        run_cfg = build_config(**fields)
        get_trainer(run_cfg.method)  # a planned method says so now, not in the job
        writer = ctx.dataset_writer(Path(run_cfg.dataset.root)) if run_cfg.dataset.root else None
        if writer:
            raise AppError(f"dataset {Path(run_cfg.dataset.root).name!r} is being generated by run {writer}; "
                           f"start training when it is done")
        run_id = ctx.start_job("train", run_cfg.to_dict(), name=run_cfg.name)
        watch, timer = start_following(watch_state(run_id), POLL_SECONDS)
        return {"status": f"Started **{run_id}** ({run_cfg.method}, {run_cfg.training.max_steps or '?'} steps). "
                          f"Curves appear as soon as the first steps are logged.",
                "watch": watch, "tick": timer, "command": command_of(fields["preset"], run_cfg)}

    started = on_start.listen(start_btn.click, api_name="train_start", concurrency_limit=1)

    def attached(watch: dict | None) -> str:
        rid = (watch or {}).get("run_id")
        if not rid:
            raise AppError("no run attached; choose one under Runs")
        return rid

    @handler(inputs={"watch": watching}, outputs={"status": status}, status="status")
    def on_stop(watch: dict):
        rid = attached(watch)
        st = ctx.runner.stop(rid, timeout=20.0)
        ckpt = st.get("checkpoint")
        return {"status": f"Run `{rid}` is **{st.state}**" + (f" (checkpoint {Path(ckpt).name})" if ckpt else "")}

    on_stop.listen(stop_btn.click, api_name="train_stop")

    @handler(inputs={"watch": watching}, outputs={"status": status, "watch": watching, "tick": tick}, status="status")
    def on_resume(watch: dict):
        rid = attached(watch)
        ctx.run(rid)
        ctx.runner.resume(rid)
        state, timer = start_following(watch_state(rid), POLL_SECONDS)
        return {"status": f"Resumed **{rid}** from its last checkpoint.", "watch": state, "tick": timer}

    on_resume.listen(resume_btn.click, api_name="train_resume")

    # -- polling: a tail read of the watched run; only what changed since this page's last look is sent ----
    plot_outputs = {f"panel{i}": plot for i, plot in enumerate(plots)}
    runs_outputs = {"table": runs_df, "watch_pick": watch, "overlay": overlay_runs, "seen": runs_seen}

    def train_run_choices() -> list[tuple[str, str]]:
        return [(f"{r.run_id} ({r.status.state})", r.run_id) for r in reversed(ctx.list_runs("train"))]

    def runs_view(watch: dict | None, seen: Any, which: str = "train") -> dict:
        """The runs table and run lists; nothing is sent when no run changed since the page's last look."""
        table = runs_table(ctx, which or "train")
        rid = (watch or {}).get("run_id")
        sig = hash((tuple(map(tuple, table.values.tolist())), rid, which))
        if sig == seen:
            return {}
        choices = train_run_choices()
        return {"table": table, "watch_pick": gr.update(choices=choices, value=rid),
                "overlay": gr.update(choices=choices), "seen": sig}

    @handler(inputs={"watch": watching, "smooth": smoothing, "seen": runs_seen, "kind": kind},
             outputs={"run": run_md, "progress": progress, "log": log_box, **plot_outputs, "video": video,
                      "watch": watching,
                      "tick": tick, **runs_outputs}, status="run", warn=False)
    def poll(watch: dict, smooth: Any, seen: Any, kind: str):
        watch = watch or watch_state(None)
        rid = watch.get("run_id")
        if not rid:
            state, timer = pace(watch, changed=False, follow=False, base_s=POLL_SECONDS)
            return {"watch": state, "tick": timer}
        w = ctx.watch(rid)
        w.update()
        st, st_sig = w.status()
        log, log_sig = w.log_tail()
        s = smoothing_of(smooth)
        curves, version = w.plot(("training", s), lambda c: curve_plots(c, s))
        shown = watch.get("seen") or {}
        now = {"status": st_sig, "log": log_sig, "curves": (version, s)}
        out: dict[str, Any] = {}
        if shown.get("status") != st_sig:
            out.update(run=status_markdown(rid, st), progress=progress_of(st))
            out.update(runs_view(watch, seen, kind))  # a state or step changed: so did its row
        if shown.get("log") != log_sig:
            out["log"] = log
        if shown.get("curves") != now["curves"]:
            out.update(zip(plot_outputs, curves))
            newest = latest_video(ctx.run(rid).videos_dir)  # a new video comes with new metric rows
            now["video"] = newest
            if newest and newest != shown.get("video"):
                out["video"] = newest
        else:
            now["video"] = shown.get("video")
        state, timer = pace({**watch, "seen": now}, changed=bool(out), follow=st.active or bool(out),
                            base_s=POLL_SECONDS)
        if out or state != watch:
            out["watch"] = state
        out["tick"] = timer
        return out

    poll.listen(tick.tick, api_name="train_poll", **POLL)
    poll.listen(smoothing.release, api_name=False, **POLL)
    poll.listen(started.then, api_name=False)

    @handler(inputs={"watch": watching, "kind": kind}, outputs=runs_outputs, warn=False)
    def refresh_runs(watch: dict, kind: str):
        return runs_view(watch, None, kind)

    refresh_runs.listen(refresh_btn.click, kind.change, api_name="train_runs")

    @handler(inputs={"rid": watch, "watch": watching},
             outputs={**form_outputs, "watch": watching, "tick": tick}, status="status")
    def on_watch(rid: str, watch: dict):
        if not rid:
            return {}
        st = ctx.runner.status(rid)  # says so when the run does not exist
        state = watch_state(rid)
        timer = gr.skip()
        if st.active:
            state, timer = start_following(state, POLL_SECONDS)
        out = run_form(rid)
        out["status"] = f"Watching **{rid}**. " + out.get("status", "")
        return {**out, "watch": state, "tick": timer}

    poll.listen(on_watch.listen(watch.input, api_name="train_watch").then, api_name=False)

    @handler(outputs={**form_outputs, "watch": watching, "tick": tick, "preset": preset}, warn=False, request=True)
    def attach(request: gr.Request | None = None):
        """On page load: re-attach to the newest running training job (if any), the form showing its settings;
        its curves follow live when this tab is the one the page opened on."""
        rid = newest_active_train_run(ctx)
        state, timer = {**watch_state(rid), "following": bool(rid)}, gr.skip()
        if rid and opened_tab(request) == TAB_ID:
            state, timer = start_following(state, POLL_SECONDS)
        out = run_form(rid) if rid else {}
        return {**out, "watch": state, "tick": timer, "preset": gr.update(choices=ctx.preset_choices()),
                "dataset": gr.update(choices=dataset_choices(ctx),
                                     **({"value": out["dataset"]["value"]} if "dataset" in out else {}))}

    loaded = poll.listen(attach.listen(demo.load, api_name="train_attach").then, api_name=False)
    refresh_runs.listen(loaded.then, api_name=False)

    @handler(outputs={"preset": preset, "dataset": dataset}, warn=False)
    def on_tab():
        return {"preset": gr.update(choices=ctx.preset_choices()), "dataset": gr.update(choices=dataset_choices(ctx))}

    on_tab.listen(tab.select, api_name=False)

    @handler(inputs={"run_ids": overlay_runs, "metric": overlay_metric, "smooth": smoothing},
             outputs={"plot": overlay_plot, "note": overlay_note, "diff": diff_df}, status="note")
    def on_overlay(run_ids: list[str], metric: str, smooth: Any):
        series = {rid: ctx.run(rid).read_metrics(0)[0] for rid in run_ids or []}
        diff = settings_diff_table(ctx, list(series)) if len(series) > 1 else None
        note = f"{len(series)} run(s)"
        if diff is not None:
            note += f" · {len(diff)} setting(s) differ" if len(diff) else " · the same settings"
        return {"plot": overlay_figure(series, metric or "train/loss", smoothing_of(smooth)), "note": note,
                "diff": diff if diff is not None else gr.skip()}

    on_overlay.listen(overlay_btn.click, api_name="train_overlay")
