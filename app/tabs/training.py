"""Training tab: preset + dataset + method + hyperparameters (forms from the config dataclasses),
Start as a background job, live curves read incrementally from metrics.jsonl, progress with ETA,
log tail, Stop / Resume, the runs list, re-attaching to a running job on page load, overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from ..context import AppContext, AppError, inside
from ..forms import Form, fmt_duration, guarded, named, progress_html
from ..plots import empty_figure, metric_figure, overlay_figure

DEFAULT_PRESET = "quickstart"
CURVES = (("train/loss", "loss", True), ("train/lr", "learning rate", False),
          ("perf/samples_per_s", "throughput (samples/s)", False))
OVERLAY_METRICS = ["train/loss", "train/lr", "perf/samples_per_s", "train/grad_norm", "eval/success_rate"]
MODEL_PRIMARY = ["vision_encoder", "projector", "llm", "action_head", "llm_hidden_size", "llm_num_layers",
                 "chunk_size", "n_action_steps"]
TRAIN_PRIMARY = ["algorithm", "learning_rate", "batch_size", "max_steps", "num_epochs", "warmup_steps",
                 "lr_scheduler", "save_every", "log_every", "device", "mixed_precision", "use_lora", "stage"]
EMPTY_WATCH = {"run_id": None, "offset": 0, "rows": [], "dirty": False}
POLL_SECONDS = 0.5  # the curve timer: new metrics reach the page within this plus one request


# ------------------------------------------------------------------------------------------------
# Helpers (no widgets): usable from tests and other tabs.
# ------------------------------------------------------------------------------------------------
def dataset_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """Local datasets first, then built-in tasks that have no dataset yet (generated on first run)."""
    local = {d["name"]: d for d in ctx.list_datasets()}
    out = [(f"{n} · {d['episodes']} episodes ({d.get('task') or 'local'})", n) for n, d in local.items()]
    out += [(f"{t} · built-in task (generated on first run)", t) for t in ctx.task_names() if t not in local]
    return out


def dataset_name_of(cfg: dict) -> str | None:
    ds = cfg.get("dataset") or {}
    if ds.get("root"):
        return Path(str(ds["root"])).name
    return ds.get("task")


def dataset_fields(ctx: AppContext, name: str) -> dict:
    """repo_id / root / task of the dataset section for dataset ``name`` (local, or a task to generate)."""
    if not name:
        raise AppError("no dataset chosen; pick a local dataset or a built-in task")
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
    rows = [r for r in ctx.list_runs("train") if r.get("state") in ("queued", "running")]
    return rows[-1]["run_id"] if rows else None


def runs_table(ctx: AppContext):
    import pandas as pd

    cols = ["run", "job", "name", "method", "state", "step", "ETA", "result", "error"]
    data = []
    for r in reversed(ctx.list_runs()):
        ev = r.get("eval") or (r.get("result") or {}).get("eval") or {}
        result = ""
        if "eval/success_rate" in ev:
            result = f"success {ev['eval/success_rate']:.0%} ({ev.get('eval/episodes')} ep)"
        elif r.get("loss") is not None:
            result = f"loss {r['loss']:.4f}"
        step = f"{r.get('step', 0)}/{r.get('total_steps', '?')}"
        eta = fmt_duration(r.get("eta_s")) if r.get("state") == "running" and r.get("eta_s") else ""
        data.append([r["run_id"], r.get("job"), r.get("name"), r.get("method") or "", r.get("state"), step, eta,
                     result, r.get("error") or ""])
    return pd.DataFrame(data, columns=cols)


def status_markdown(run_id: str | None, st: dict) -> str:
    if not run_id:
        return "No run attached. Pick a preset and press **Start**, or choose a run under *Runs*."
    state = st.get("state", "?")
    parts = [f"**Run** `{run_id}` — **{state}**"]
    if st.get("phase") and state in ("queued", "running"):
        parts.append(f"phase: {st['phase']}")
    if st.get("loss") is not None:
        parts.append(f"loss {st['loss']:.4f}")
    text = " · ".join(parts)
    ev = st.get("eval") or (st.get("result") or {}).get("eval")
    if ev and "eval/success_rate" in ev:
        text += (f"\n\n**Evaluation:** success {ev['eval/success_rate']:.0%} "
                 f"[95% CI {ev['eval/success_ci_low']:.0%}–{ev['eval/success_ci_high']:.0%}] over "
                 f"{ev['eval/episodes']} held-out episodes, mean return {ev.get('eval/mean_return', 0):.2f}")
    if st.get("error"):
        text += f"\n\n**Error:** {st['error']}"
    return text


def progress_of(st: dict) -> str:
    state = st.get("state")
    if st.get("phase") == "datagen" and state == "running":
        d, n = st.get("datagen_done", 0), st.get("datagen_total")
        return progress_html(d, n, f"generating demonstrations: {d}/{n or '?'} episodes")
    if st.get("phase") == "eval" and state == "running":
        return progress_html(1, 1, "training done · evaluating the policy on held-out seeds…")
    step, total = st.get("step") or 0, st.get("total_steps")
    if not total:
        return progress_html(0, 1, state or "")
    pct = 100 * step / total if total else 0
    eta = f" · ETA {fmt_duration(st.get('eta_s'))}" if state == "running" and st.get("eta_s") is not None else ""
    return progress_html(step, total, f"step {step}/{total} ({pct:.0f}%){eta} · {state}")


def curve_figures(rows: list[dict]) -> list:
    return [metric_figure(rows, m, title, log_y=log) for m, title, log in CURVES]


# ------------------------------------------------------------------------------------------------
# The tab.
# ------------------------------------------------------------------------------------------------
def build(ctx: AppContext, demo: gr.Blocks) -> None:
    from vla_engine.config.base import apply_overrides
    from vla_engine.config.dataset_config import DatasetConfig
    from vla_engine.config.model_config import ModelConfig
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

    with gr.Tab("Training", id="training") as tab:
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
            run_name = gr.Textbox(base["name"], label="Run name", scale=1)
        with gr.Accordion("Model", open=False):
            model_form = Form("model", ModelConfig, base["model"], registries=model_regs, primary=MODEL_PRIMARY)
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
        status = gr.Markdown(status_markdown(None, {}))
        progress = gr.HTML(progress_html(0, 1, ""))
        with gr.Row():
            plots = [gr.Plot(empty_figure(title), label=title, show_label=False) for _, title, _ in CURVES]
        log_box = gr.Textbox(label="Log (tail)", lines=10, max_lines=10, autoscroll=True, interactive=False)
        with gr.Accordion("Runs", open=True):
            with gr.Row():
                watch = gr.Dropdown([], label="Watch run", scale=3, allow_custom_value=True)
                refresh_btn = gr.Button("↻ Refresh", scale=1)
            runs_df = gr.Dataframe(runs_table(ctx), interactive=False, wrap=True)
        with gr.Accordion("Compare runs", open=False):
            with gr.Row():
                overlay_runs = gr.Dropdown([], multiselect=True, label="Runs", scale=3, allow_custom_value=True)
                overlay_metric = gr.Dropdown(OVERLAY_METRICS, value="train/loss", label="Metric", scale=1,
                                             allow_custom_value=True)
                overlay_btn = gr.Button("Plot", scale=1)
            overlay_plot = gr.Plot(empty_figure("overlay", "pick runs to compare"), show_label=False)
            overlay_note = gr.Markdown("")
        watch_state = gr.State(dict(EMPTY_WATCH))
        runs_seen = gr.State(None)
        tick = gr.Timer(POLL_SECONDS)
        runs_tick = gr.Timer(5.0)

    form_inputs = model_form.inputs + data_form.inputs + train_form.inputs + eval_form.inputs
    n_m, n_d, n_t = len(model_form.inputs), len(data_form.inputs), len(train_form.inputs)

    def split(values: tuple) -> tuple:
        v = list(values)
        return v[:n_m], v[n_m:n_m + n_d], v[n_m + n_d:n_m + n_d + n_t], v[n_m + n_d + n_t:]

    # -- preset / method / dataset --------------------------------------------------------------
    n_form = len(form_inputs)

    @guarded(4 + n_form + 1, status_index=4 + n_form)
    def on_preset(p: str):
        cfg = RunConfig.from_dict(ctx.preset_dict(p)).to_dict()
        cls = training_class(cfg["method"])
        return (gr.update(value=cfg["method"]), gr.update(value=dataset_name_of(cfg)),
                gr.update(value=cfg["name"]), gr.update(),
                *model_form.updates(cfg["model"]), *data_form.updates(cfg["dataset"]),
                *train_form.updates(cfg["training"], cls), *eval_form.updates(cfg["eval"]),
                f"Loaded preset **{p}**: {cfg.get('description') or ''}")

    preset.input(on_preset, [preset], [method, dataset, run_name, overrides, *form_inputs, status],
                 api_name="train_preset")

    @guarded(n_t + 1, status_index=n_t)
    def on_method(m: str, *tvals):
        cls = training_class(m)
        vals = train_form.values(tvals, cls)
        algo = next((s for k, s in train_form.specs.items() if train_form.class_keys[cls].get("algorithm") == k),
                    None)
        if algo is not None and m in (algo.choices or []):
            vals["algorithm"] = m
        note = (f"Method **{m}** is not built in this version yet; its preset validates but Start will say so."
                if m in PLANNED_METHODS else f"Method **{m}** uses the *{cls.type_name}* training config.")
        return (*train_form.updates(vals, cls), note)

    method.input(on_method, [method, *train_form.inputs], [*train_form.inputs, status], api_name="train_method")

    action_dim_box = next(c for k, c in model_form.components.items() if k[0] == "action_dim")
    state_dim_box = next(c for k, c in model_form.components.items() if k[0] == "state_dim")

    @guarded(3, status_index=2)
    def on_dataset(name: str, state_dim_now: Any):
        a, s = dims_of(ctx, name)
        if a is None:
            return gr.update(), gr.update(), f"Dataset {name!r} not found; Start will say what to do."
        # state_dim 0 = "take it from the data"; keep that choice
        return (gr.update(value=a), gr.update(value=0 if not state_dim_now else s),
                f"Dataset **{name}**: {a}-D actions, {s}-D state (model sizes follow it).")

    dataset.input(on_dataset, [dataset, state_dim_box], [action_dim_box, state_dim_box, status],
                  api_name="train_dataset")

    # -- start / stop / resume -------------------------------------------------------------------
    def build_config(p: str, m: str, ds_name: str, name: str, ov: str, values: tuple) -> Any:
        mv, dv, tv, ev = split(values)
        cfg = ctx.preset_dict(p)
        cls = training_class(m)
        cfg["method"] = m
        cfg["name"] = (name or "").strip() or cfg.get("name") or "run"
        cfg["model"] = model_form.values(mv)
        cfg["dataset"] = {**data_form.values(dv), **dataset_fields(ctx, ds_name)}
        cfg["training"] = {"type": cls.type_name, **train_form.values(tv, cls)}
        cfg["eval"] = eval_form.values(ev)
        if ctx.cpu_only:
            cfg["training"]["device"] = "cpu"
        lines = [ln.strip() for ln in (ov or "").splitlines() if ln.strip() and not ln.strip().startswith("#")]
        cfg = apply_overrides(cfg, lines)
        if ctx.cpu_only:
            cfg["training"]["device"] = "cpu"
        ctx.check_model_paths(cfg.get("model") or {})
        root = (cfg.get("dataset") or {}).get("root")
        if not root:
            raise AppError("dataset.root is empty; pick a dataset (the app trains on datasets in its datasets folder)")
        root_p = Path(str(root))
        cfg["dataset"]["root"] = str(inside(root_p if root_p.is_absolute() else ctx.datasets_dir / root_p,
                                            ctx.datasets_dir))
        run_cfg = RunConfig.from_dict(cfg)  # validates; ConfigError names the field
        get_trainer(run_cfg.method)  # a planned method says so now, not in the job
        writer = ctx.dataset_writer(Path(cfg["dataset"]["root"]))
        if writer:
            raise AppError(f"dataset {Path(cfg['dataset']['root']).name!r} is being generated by run {writer}; "
                           f"start training when it is done")
        return run_cfg

    start_names = ["preset", "method", "dataset", "run_name", "overrides"] + model_form.param_names + \
        data_form.param_names + train_form.param_names + eval_form.param_names

    @guarded(2)
    def on_start(p, m, ds_name, name, ov, *values):
        run_cfg = build_config(p, m, ds_name, name, ov, values)
        run_id = ctx.runner.start("train", run_cfg.to_dict(), name=run_cfg.name)
        return (f"Started **{run_id}** ({run_cfg.method}, {run_cfg.training.max_steps or '?'} steps). "
                f"Curves appear as soon as the first steps are logged.",
                {"run_id": run_id, "offset": 0, "rows": [], "dirty": True})

    start_btn.click(named(on_start, start_names), [preset, method, dataset, run_name, overrides, *form_inputs],
                    [status, watch_state], api_name="train_start", concurrency_limit=1)

    @guarded(1)
    def on_stop(state: dict):
        rid = (state or {}).get("run_id")
        if not rid:
            raise AppError("no run attached; choose one under Runs")
        st = ctx.runner.stop(rid, timeout=20.0)
        return f"Run `{rid}` is **{st.get('state')}**" + (f" (checkpoint {Path(st['checkpoint']).name})"
                                                          if st.get("checkpoint") else "")

    stop_btn.click(on_stop, [watch_state], [status], api_name="train_stop")

    @guarded(2)
    def on_resume(state: dict):
        rid = (state or {}).get("run_id")
        if not rid:
            raise AppError("no run attached; choose one under Runs")
        ctx.run(rid)
        ctx.runner.resume(rid)
        return (f"Resumed **{rid}** from its last checkpoint.",
                {"run_id": rid, "offset": 0, "rows": [], "dirty": True})

    resume_btn.click(on_resume, [watch_state], [status, watch_state], api_name="train_resume")

    # -- polling ---------------------------------------------------------------------------------
    n_poll = 3 + len(plots) + 1

    @guarded(n_poll, status_index=0, warn=False)
    def poll(state: dict):
        state = dict(state or EMPTY_WATCH)
        rid = state.get("run_id")
        if not rid:
            return (gr.skip(),) * n_poll
        run = ctx.run(rid)
        st = ctx.runner.status(rid)
        rows, off = run.read_metrics(int(state.get("offset") or 0))
        new = {"run_id": rid, "offset": off, "rows": list(state.get("rows") or []) + rows, "dirty": False}
        figs = curve_figures(new["rows"]) if rows or state.get("dirty") else [gr.skip()] * len(plots)
        return (status_markdown(rid, st), progress_of(st), run.tail_log(40), *figs, new)

    poll_outputs = [status, progress, log_box, *plots, watch_state]
    tick.tick(poll, [watch_state], poll_outputs, api_name="train_poll", show_progress="hidden")

    def train_run_choices() -> list[tuple[str, str]]:
        return [(f"{r['run_id']} ({r.get('state')})", r["run_id"]) for r in reversed(ctx.list_runs("train"))]

    @guarded(4, status_index=None, warn=False)
    def refresh_runs(state: dict, seen: Any):
        """The runs table and run lists; nothing is sent when no run changed since the last look."""
        table = runs_table(ctx)
        sig = hash((tuple(map(tuple, table.values.tolist())), (state or {}).get("run_id")))
        if sig == seen:
            return gr.skip(), gr.skip(), gr.skip(), seen
        choices = train_run_choices()
        return table, gr.update(choices=choices, value=(state or {}).get("run_id")), \
            gr.update(choices=choices), sig

    def refresh_now(state: dict):
        return refresh_runs(state, None)

    refresh_outputs = [runs_df, watch, overlay_runs, runs_seen]
    runs_tick.tick(refresh_runs, [watch_state, runs_seen], refresh_outputs, api_name="train_runs",
                   show_progress="hidden")
    refresh_btn.click(refresh_now, [watch_state], refresh_outputs, api_name=False)

    @guarded(2)
    def on_watch(rid: str):
        if not rid:
            return gr.skip(), gr.skip()
        ctx.run(rid)
        return f"Watching **{rid}**.", {"run_id": rid, "offset": 0, "rows": [], "dirty": True}

    watch.input(on_watch, [watch], [status, watch_state], api_name="train_watch").then(
        poll, [watch_state], poll_outputs, api_name=False)

    def attach():
        """On page load: re-attach to the newest running training job (if any) and refresh choices."""
        rid = newest_active_train_run(ctx)
        state = {"run_id": rid, "offset": 0, "rows": [], "dirty": True} if rid else dict(EMPTY_WATCH)
        return state, gr.update(choices=ctx.preset_choices()), gr.update(choices=dataset_choices(ctx))

    demo.load(guarded(3, status_index=None, warn=False)(attach), None, [watch_state, preset, dataset],
              api_name="train_attach").then(poll, [watch_state], poll_outputs, api_name=False).then(
        refresh_now, [watch_state], refresh_outputs, api_name=False)

    def on_tab():
        return gr.update(choices=ctx.preset_choices()), gr.update(choices=dataset_choices(ctx))

    tab.select(guarded(2, status_index=None, warn=False)(on_tab), None, [preset, dataset], api_name=False)

    @guarded(2, status_index=1)
    def on_overlay(run_ids: list[str], metric: str):
        series = {}
        for rid in run_ids or []:
            rows, _ = ctx.run(rid).read_metrics(0)
            series[rid] = rows
        return overlay_figure(series, metric or "train/loss"), f"{len(series)} run(s)"

    overlay_btn.click(on_overlay, [overlay_runs, overlay_metric], [overlay_plot, overlay_note],
                      api_name="train_overlay")
