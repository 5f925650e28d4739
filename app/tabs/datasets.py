"""Datasets tab: built-in tasks and local LeRobot datasets, generating a dataset as a background job
(progress from its status.json), dataset facts and statistics, and an episode browser (frames, the
instruction, state and action over time)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..context import AppContext, AppError
from ..events import POLL, handler
from ..forms import fmt_duration, progress_html
from ..plots import empty_figure, timeseries_figure
from ..polling import TabTimer, opened_tab, pace, start_following
from ..sensor_view import sensor_views

TAB_ID = "datasets"
POLL_SECONDS = 1.5  # the generation timer's base period (app.polling)
EMPTY_GEN = {"run_id": None, "announced": True, "following": False, "active": False}


# reach demonstrations per second with both cores on a 2-core machine (1500 episodes at 96 px in 170 s, see
# docs/benchmarks.md): the estimate before this machine has generated anything itself
REFERENCE_EPISODES_PER_S = 8.8


def generation_rate(ctx: AppContext) -> tuple[float, str]:
    """Episodes per second of the newest finished data generation here, else the reference figure."""
    for info in reversed(ctx.list_runs("datagen")):
        st = info.status
        total = (st.extra or {}).get("datagen_total") or st.total_steps
        if st.state == "done" and total and st.started_at and st.ended_at and st.ended_at > st.started_at:
            return total / (st.ended_at - st.started_at), "as your last generation ran"
    return REFERENCE_EPISODES_PER_S, "on a 2-core machine"


def generation_estimate(ctx: AppContext, episodes: int) -> str:
    rate, basis = generation_rate(ctx)
    return f"about {fmt_duration(episodes / rate)} for {episodes} reach episodes {basis}"


def quickstart_episodes() -> int:
    """The episodes the Quick Start preset trains on (what "generate the built-in reach data" should make)."""
    from vla_engine.config.presets import load_preset

    try:
        return int(load_preset("quickstart").dataset.episodes)
    except Exception:  # noqa: BLE001 - a broken user preset folder must not stop the tab from building
        return 200


def tasks_table(ctx: AppContext):
    import pandas as pd
    from vla_engine.envs import task_info

    rows = []
    for t in ctx.task_names():
        i = task_info(t)
        sensors = ", ".join(i.get("sensors") or {}) if isinstance(i.get("sensors"), dict) else ""
        observes = "state" if i.get("state_based") else ("camera" + (f" + {sensors}" if sensors else ""))
        rows.append([t, i.get("family") or "tabletop", observes, "yes" if i.get("has_expert", True) else "no",
                     f"{i['action_dim']} / {i['state_dim']}", i["max_episode_steps"]])
    # short columns that fit side by side (`vla tasks` prints each task's description too)
    return pd.DataFrame(rows, columns=["task", "family", "observes", "expert", "act/state", "steps"])


TASK_COLUMN_WIDTHS = ["31%", "13%", "19%", "12%", "13%", "12%"]


def dataset_name_for(task: str) -> str:
    """The default dataset name for a task's demonstrations (a folder name: no '/')."""
    return (task or "").replace("/", "-")


def local_table(ctx: AppContext):
    import pandas as pd

    rows = [[d["name"], d["episodes"], d["frames"], d["fps"], d.get("task") or "", d.get("action_dim"),
             d.get("state_dim")] for d in ctx.list_datasets() + ctx.list_minari_datasets()]
    return pd.DataFrame(rows, columns=["dataset", "episodes", "frames", "fps", "task", "action dim", "state dim"])


def local_names(ctx: AppContext) -> list[str]:
    return [d["name"] for d in ctx.list_datasets() + ctx.list_minari_datasets()]


def dataset_summary(ctx: AppContext, name: str) -> tuple[str, Any]:
    """Markdown facts and a statistics table of local dataset ``name``."""
    import pandas as pd

    ds = ctx.open_dataset(name)
    side = ds.meta_info or {}
    cameras = f"cameras {', '.join(ds.image_keys)} {tuple(ds.image_shape)}" if ds.image_keys else "no camera"
    lines = [f"### {name}",
             f"**{ds.num_episodes}** episodes · **{ds.num_frames}** frames" + (f" · **{ds.fps}** fps" if ds.fps else "")
             + f" · actions {ds.action_dim}-D · state {ds.state_dim}-D · {cameras}",
             f"repo id `{ds.repo_id}` · folder `{ds.root}`"]
    if side.get("format") == "minari":
        returns = ds.episode_returns()
        lines.append(f"Minari dataset of **{side.get('task') or 'an unnamed env'}**: episode return mean "
                     f"{returns.mean():.1f}, min {returns.min():.1f}, max {returns.max():.1f}"
                     + (f"; reference scores {side['ref_min_score']:.1f} (random) to {side['ref_max_score']:.1f} "
                        f"(expert)" if side.get("ref_min_score") is not None and side.get("ref_max_score") is not None
                        else ""))
    if side.get("task"):
        exp = side.get("expert") or {}
        lines.append(f"generated from task **{side['task']}** by the scripted expert"
                     + (f" (expert success {exp['success_rate']:.0%} over {exp.get('attempts')} attempts)"
                        if exp.get("success_rate") is not None else ""))
    if ds.plan_horizon:
        lines.append(f"expert plans of **{ds.plan_horizon}** steps per frame: chunking heads learn their action "
                     f"chunks from them (`dataset.chunk_labels`)")
    tasks = ds.tasks
    shown = "\n".join(f"- {t}" for t in tasks[:25])
    more = f"\n- … and {len(tasks) - 25} more" if len(tasks) > 25 else ""
    lines.append(f"**{len(tasks)} instruction(s):**\n{shown}{more}")
    rows = []
    for key, st in ds.stats.items():
        if key in ds.image_keys or key.startswith("action.plan"):  # the plans: labels, summed up above
            continue
        mean = st["mean"].reshape(-1).tolist()
        for d in range(len(mean)):
            rows.append([key, d] + [round(float(st[s].reshape(-1)[d]), 4) for s in ("mean", "std", "min", "max")])
    return "\n\n".join(lines), pd.DataFrame(rows, columns=["feature", "dim", "mean", "std", "min", "max"])


def _names(ctx: AppContext, name: str) -> tuple[list[str] | None, list[str] | None]:
    side = ctx.open_dataset(name).meta_info or {}
    task = side.get("task")
    if task in ctx.task_names():
        from vla_engine.envs import task_info

        info = task_info(task)
        return info.get("state_names"), info.get("action_names")
    return None, None


def episode_view(ctx: AppContext, name: str, episode: int, frame: int) -> tuple:
    """(image, instruction, state figure, action figure, number of frames) of one frame of an episode."""
    ds = ctx.open_dataset(name)
    eps = ds.episode_indices
    ep = int(episode or 0)
    if ep not in eps:
        raise AppError(f"episode {ep} is out of range; {name} has episodes {eps[0]}..{eps[-1]}" if eps
                       else f"{name} has no episodes")
    data = ds.episode_data(ep)
    frames = ds.episode_frames(ep)  # (T, H, W, 3) uint8; none in state-only (Minari MuJoCo) data
    n = len(frames) or len(data["action"])
    t = min(max(0, int(frame or 0)), n - 1)
    state_names, action_names = _names(ctx, name)
    state_fig = (timeseries_figure(data["observation.state"], state_names, "state", t, ds.fps)
                 if "observation.state" in data else empty_figure("state", "no state in this dataset"))
    action_fig = timeseries_figure(data["action"], action_names, "action", t, ds.fps)
    image = frames[t] if len(frames) else None
    return image, data.get("task", ""), state_fig, action_fig, n, sensor_views(data, t, ds.fps)


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    from vla_engine.config.dataset_config import DatasetConfig

    names = local_names(ctx)
    tasks = ctx.task_names(with_expert=True)  # what a scripted expert can demonstrate
    with gr.Tab("Datasets", id=TAB_ID) as tab:
        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown("### Built-in tasks (MuJoCo): tabletop, gymnasium, Meta-World, driving")
                gr.Dataframe(tasks_table(ctx), interactive=False, wrap=False, max_height=320,
                             column_widths=TASK_COLUMN_WIDTHS)
            with gr.Column(scale=1):
                gr.Markdown(f"### Local datasets in `{ctx.datasets_dir}`")
                local_df = gr.Dataframe(local_table(ctx), interactive=False, wrap=True)
                refresh_btn = gr.Button("↻ Refresh", size="sm")
        with gr.Accordion("Generate a dataset with the scripted expert", open=True):
            with gr.Row():
                gen_task = gr.Dropdown(tasks, value="reach" if "reach" in tasks else tasks[0], label="Task")
                gen_name = gr.Textbox("reach", label="Dataset name", max_length=64,
                                      info="a folder name in the datasets folder")
                # no precision: a fraction reaches the config's check instead of being rounded in the browser
                gen_episodes = gr.Number(quickstart_episodes(), label="Episodes",
                                         info=f"the Quick Start trains on {quickstart_episodes()}: "
                                              f"{generation_estimate(ctx, quickstart_episodes())}")
                gen_seed = gr.Number(0, precision=0, label="First seed")
                gen_size = gr.Number(96, precision=0, label="Image size")
                gen_plan = gr.Number(0, precision=0, label="Expert plan steps",
                                     info="per frame, the chunk labels for chunking heads (0: none)")
                gen_overwrite = gr.Checkbox(False, label="Overwrite")
            gen_btn = gr.Button("Generate", variant="primary")
            gen_status = gr.Markdown("")
            gen_progress = gr.HTML(progress_html(0, 1, ""))
        gr.Markdown("### Browse a dataset")
        with gr.Row():
            ds_pick = gr.Dropdown(names, value=names[0] if names else None, label="Dataset",
                                  allow_custom_value=True, scale=3)
            load_btn = gr.Button("Load", scale=1)
        info_md = gr.Markdown("")
        with gr.Accordion("Statistics", open=False):
            stats_df = gr.Dataframe(interactive=False)
        with gr.Row():
            episode = gr.Slider(0, 1, value=0, step=1, label="Episode")
            frame = gr.Slider(0, 1, value=0, step=1, label="Frame")
        browse_note = gr.Markdown("")
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(label="Camera", height=288, interactive=False)
                instruction = gr.Textbox(label="Instruction", interactive=False)
            with gr.Column(scale=2):
                state_plot = gr.Plot(empty_figure("state"), show_label=False)
                action_plot = gr.Plot(empty_figure("action"), show_label=False)
        with gr.Row(visible=False) as sensor_row:  # lidar / radar / IMU datasets (the driving tasks)
            bev_plot = gr.Plot(empty_figure("bird's-eye view"), show_label=False)
            imu_plot = gr.Plot(empty_figure("IMU"), show_label=False)
        gen_state = gr.State(dict(EMPTY_GEN))
        tick = gr.Timer(POLL_SECONDS, active=False)

    ctx.extras.setdefault("tab_timers", []).append(TabTimer(TAB_ID, tab, tick, gen_state, POLL_SECONDS))

    # -- lists ---------------------------------------------------------------------------------
    @handler(outputs={"table": local_df, "pick": ds_pick})
    def refresh():
        return {"table": local_table(ctx), "pick": gr.update(choices=local_names(ctx))}

    refresh.listen(refresh_btn.click, api_name="datasets_refresh")
    refresh.listen(tab.select, api_name=False)

    # -- generation ----------------------------------------------------------------------------
    @handler(inputs={"task": gen_task, "name": gen_name}, outputs={"name": gen_name})
    def on_task(task: str, name: str):
        """The dataset name follows the task while it is still a task's default name."""
        defaults = {dataset_name_for(t) for t in tasks}
        return {"name": dataset_name_for(task)} if (name or "").strip() in defaults | {""} else {}

    on_task.listen(gen_task.input, api_name=False)

    @handler(inputs={"task": gen_task, "name": gen_name, "episodes": gen_episodes, "seed": gen_seed,
                     "size": gen_size, "overwrite": gen_overwrite, "plan": gen_plan},
             outputs={"status": gen_status, "gen": gen_state, "tick": tick}, status="status")
    def generate(task: str, name: str, episodes: Any, seed: Any, size: Any, overwrite: bool, plan: Any):
        name = (name or "").strip()
        if not name:
            raise AppError(f"Dataset name is empty; type a folder name such as {dataset_name_for(task) or 'reach'}")
        root = ctx.dataset_root(name)
        # the dataset section's own validation: task, episode count, image size
        DatasetConfig.from_dict({"repo_id": f"local/{name}", "root": str(root), "task": task,
                                 "episodes": episodes, "image_size": size, "plan_horizon": plan or 0})
        if not isinstance(seed, (int, float)) or int(seed) != seed or seed < 0:
            raise AppError(f"first seed {seed!r} must be a whole number >= 0")
        writer = ctx.dataset_writer(root)
        if writer:
            raise AppError(f"dataset {name!r} is being written by run {writer}; wait for it to finish")
        if root.exists() and any(root.iterdir()) and not overwrite:
            raise AppError(f"dataset {name!r} already exists; tick Overwrite or choose another name")
        cfg = {"task": task, "episodes": int(episodes), "out": str(root), "seed": int(seed),
               "image_size": int(size), "overwrite": bool(overwrite), "plan_horizon": int(plan or 0)}
        run_id = ctx.start_job("datagen", cfg, name=f"datagen-{name}")
        gen, timer = start_following({"run_id": run_id, "announced": False, "name": name}, POLL_SECONDS)
        return {"status": f"Generating **{int(episodes)}** episodes of **{task}** into `{name}` (job `{run_id}`)…",
                "gen": gen, "tick": timer}

    generate.listen(gen_btn.click, api_name="dataset_generate", concurrency_limit=1)

    @handler(inputs={"gen": gen_state},
             outputs={"status": gen_status, "progress": gen_progress, "table": local_df, "pick": ds_pick,
                      "gen": gen_state, "tick": tick}, status="status", warn=False)
    def poll(gen: dict):
        gen = dict(gen or EMPTY_GEN)
        rid = gen.get("run_id")
        if not rid or gen.get("announced"):
            state, timer = pace(gen, changed=False, follow=False, base_s=POLL_SECONDS)
            return {"gen": state, "tick": timer} if state != gen else {"tick": timer}
        st = ctx.runner.status(rid)
        done, total = st.step, st.total_steps
        if st.active:
            key = (st.state, done, total)
            changed = gen.get("seen") != key
            state, timer = pace({**gen, "seen": key}, changed=changed, follow=True, base_s=POLL_SECONDS)
            if not changed:
                return {"gen": state, "tick": timer} if state != gen else {}
            return {"status": f"Generating into `{gen.get('name')}` (job `{rid}`): {st.state}",
                    "progress": progress_html(done, total, f"{done}/{total or '?'} episodes"),
                    "gen": state, "tick": timer}
        gen["announced"] = True
        gen, timer = pace(gen, changed=True, follow=False, base_s=POLL_SECONDS)
        msg = (f"Dataset **{gen.get('name')}** is ready ({total} episodes)." if st.state == "done"
               else f"**Generation {st.state}:** {st.error or 'see the job log'}")
        n = local_names(ctx)
        pick = gr.update(choices=n, value=gen["name"]) if st.state == "done" and gen.get("name") in n \
            else gr.update(choices=n)
        return {"status": msg, "progress": progress_html(total if st.state == "done" else done, total or 1, st.state),
                "table": local_table(ctx), "pick": pick, "gen": gen, "tick": timer}

    poll.listen(tick.tick, api_name="dataset_poll", **POLL)

    @handler(outputs={"gen": gen_state, "tick": tick}, warn=False, request=True)
    def attach(request: gr.Request | None = None):
        """On page load: follow a generation job that is running (live when the page opened on this tab)."""
        rows = [r for r in ctx.list_runs("datagen") if r.status.active]
        if not rows:
            return {"gen": dict(EMPTY_GEN)}
        out = ctx.run(rows[-1].run_id).read_config().get("out", "")
        gen = {"run_id": rows[-1].run_id, "announced": False, "name": str(out).rstrip("/").split("/")[-1],
               "following": True, "active": False}
        if opened_tab(request) == TAB_ID:
            gen, timer = start_following(gen, POLL_SECONDS)
            return {"gen": gen, "tick": timer}
        return {"gen": gen}

    attach.listen(demo.load, api_name=False)

    # -- inspection ----------------------------------------------------------------------------
    view = {"image": image, "instruction": instruction, "state_plot": state_plot, "action_plot": action_plot,
            "bev": bev_plot, "imu": imu_plot, "sensor_row": sensor_row}

    def frame_view(name: str, episode: Any, frame: Any) -> tuple[dict, int]:
        img, instr, sfig, afig, n_frames, sensors = episode_view(ctx, name, episode, frame)
        return {"image": img, "instruction": instr, "state_plot": sfig, "action_plot": afig,
                "bev": sensors["bev"], "imu": sensors["imu"],
                "sensor_row": gr.update(visible=sensors["visible"])}, n_frames

    @handler(inputs={"name": ds_pick},
             outputs={"info": info_md, "stats": stats_df, "episode": episode, "frame": frame, **view},
             status="info")
    def load(name: str):
        if not name:
            raise AppError("no dataset chosen; generate one above or pick one from the list")
        md, stats = dataset_summary(ctx, name)
        eps = ctx.open_dataset(name).episode_indices
        shown, n_frames = frame_view(name, eps[0] if eps else 0, 0)
        return {"info": md, "stats": stats, **shown,
                "episode": gr.update(minimum=0, maximum=max(1, max(eps or [0])), value=eps[0] if eps else 0),
                "frame": gr.update(maximum=max(1, n_frames - 1), value=0)}

    load.listen(load_btn.click, api_name="dataset_info")
    load.listen(ds_pick.input, api_name=False)

    @handler(inputs={"name": ds_pick, "ep": episode}, outputs={**view, "frame": frame, "note": browse_note},
             status="note")
    def on_episode(name: str, ep: Any):
        shown, n_frames = frame_view(name, ep, 0)
        return {**shown, "frame": gr.update(maximum=max(1, n_frames - 1), value=0), "note": ""}

    on_episode.listen(episode.release, api_name="dataset_episode")

    @handler(inputs={"name": ds_pick, "ep": episode, "fr": frame}, outputs={**view, "note": browse_note},
             status="note")
    def on_frame(name: str, ep: Any, fr: Any):
        return {**frame_view(name, ep, fr)[0], "note": ""}

    on_frame.listen(frame.input, api_name="dataset_frame", trigger_mode="always_last", show_progress="hidden")
