"""The `vla` command line. Every command is one call of the engine's API; jobs write run folders.

    vla quickstart                         generate reach demos, fine-tune the shipped VLA by BC, evaluate
    vla datagen --task push --episodes 200 --out datasets/push
    vla datagen --format minari --task Pendulum-v1 --levels random,expert,mixed --expert scripted --out datasets/minari
    vla train il-bc [--set training.max_steps=500] [--background]
    vla eval RUN_OR_CHECKPOINT --task push --episodes 50 [--set model.n_action_steps=4]
    vla runs | status RUN | stop RUN | resume RUN | logs RUN
    vla presets | tasks | describe PRESET    presets, tasks, every field of a preset with its help
    vla ui [--port 7860]                   the browser workbench
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .config.run_config import EVAL_SEED_START
from .runs.schema import first_line, format_eval


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _runner(args):
    from .runs.runner import JobRunner

    return JobRunner(args.runs_dir)


def _start_or_run(args, job: str, config: dict, name: str) -> int:
    """Start ``job`` in the background (print the run id) or run it here in the foreground."""
    from .runs.jobs import run_job
    from .runs.run_dir import RunDir, new_run_id

    if getattr(args, "background", False):
        run_id = _runner(args).start(job, config, name=name)
        print(f"started {job} job {run_id} in {args.runs_dir}/{run_id} (watch: vla status {run_id})")
        return 0
    run = RunDir.create(args.runs_dir, new_run_id(name), {"job": job, **config})
    print(f"run folder: {run.path}")
    rc = run_job(run.path)
    st = run.read_status()
    if st.state == "failed":
        return 1
    if st.eval_summary is not None:
        per_task = _suite_rows(run.path)
        print(per_task or format_eval(st.eval_summary, st.get("task")))
    print(f"{job} {st.state}: {run.path}")
    return rc


def _suite_rows(run_path: Path) -> str:
    """A suite evaluation's table (each task's success, then the mean), '' for a one-task evaluation."""
    path = Path(run_path) / "eval.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    if "per_task" not in data:
        return ""
    rows = [format_eval(s, task) for task, s in data["per_task"].items()]
    s = data["summary"]
    rows.append(f"{data['suite']}: mean success {s['suite/mean_success_rate']:.0%} over {s['suite/num_tasks']} tasks "
                f"(95% CI {s['suite/success_ci_low']:.0%}–{s['suite/success_ci_high']:.0%}, "
                f"{s['suite/episodes']} episodes pooled)")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------
def cmd_datagen(args) -> int:
    from .config.base import ConfigError
    from .data import generate_dataset
    from .runs.schema import DatagenJobConfig

    if args.format == "minari":  # Minari datasets of quality levels (minari's DataCollector)
        return _datagen_minari(args)
    if args.suite:  # a Meta-World suite: every task's demonstrations in one dataset
        if args.background:
            raise ConfigError("datagen.suite: --background runs one task; generate a suite in the foreground")
        from .envs.metaworld.suite import generate_suite_dataset

        out = generate_suite_dataset(args.suite, args.episodes, args.out, seed=args.seed, image_size=args.image_size,
                                     overwrite=args.overwrite, action_noise=args.action_noise)
        print(f"wrote {args.episodes} episodes of each task of '{args.suite}' to {out}")
        return 0
    if not args.task:
        raise ConfigError("datagen.task: give --task (e.g. push, metaworld/reach-v3) or --suite (e.g. mt10)")
    cfg = DatagenJobConfig(task=args.task, episodes=args.episodes, out=args.out, seed=args.seed,
                           image_size=args.image_size, overwrite=args.overwrite, action_noise=args.action_noise,
                           targets_per_layout=args.targets_per_layout, plan_horizon=args.plan_horizon)  # validates
    if args.background:
        return _start_or_run(args, "datagen", cfg.to_dict(), f"datagen-{args.task}")
    out = generate_dataset(cfg.task, cfg.episodes, cfg.out, seed=cfg.seed, image_size=cfg.image_size,
                           overwrite=cfg.overwrite, action_noise=cfg.action_noise,
                           targets_per_layout=cfg.targets_per_layout, plan_horizon=cfg.plan_horizon)
    print(f"wrote {cfg.episodes} episodes of '{cfg.task}' to {out}")
    return 0


def _datagen_minari(args) -> int:
    """``vla datagen --format minari``: the -random/-medium/-expert/-mixed Minari datasets of a task."""
    from .config.base import ConfigError
    from .data.minari_levels import make_minari_levels

    if args.suite or not args.task:
        raise ConfigError("datagen.task: --format minari makes the levels of one task; give --task (a gymnasium id "
                          "such as Hopper-v5 or Pendulum-v1, or one of our tasks such as push)")
    if args.background:
        raise ConfigError("datagen.background: --format minari runs in the foreground; drop --background")
    ids = make_minari_levels(args.task, args.levels.split(","), expert=args.expert, medium=args.medium,
                             episodes=args.episodes, out=args.out, seed=args.seed, overwrite=args.overwrite)
    for level, did in ids.items():
        hint = "--medium or --expert" if level == "mixed" else f"--{level}"
        print(f"{level}: {args.out}/{did}" if did else f"{level}: skipped (no policy for it; pass {hint})")
    return 0


def cmd_train(args) -> int:
    from .config.presets import load_preset

    from .train.methods import get_trainer

    cfg = load_preset(args.preset, args.set)  # validates; errors name the field
    get_trainer(cfg.method)  # a method that is not built yet says so before any run folder is made
    if args.name:
        cfg = cfg.replace(name=args.name)
    return _start_or_run(args, "train", cfg.to_dict(), cfg.name)


def cmd_eval(args) -> int:
    from .runs.jobs import resolve_checkpoint

    from .config.model_config import parse_inference_overrides
    from .runs.schema import EvalJobConfig

    inference = parse_inference_overrides(args.set)  # fail fast on a field training fixed
    config = EvalJobConfig(checkpoint=args.ref, task=args.task, episodes=args.episodes, num_videos=args.videos,
                           seed_start=args.seed_start, instruction=args.instruction, max_episode_steps=args.max_steps,
                           runs_dir=args.runs_dir, inference=inference)  # ... and on a bad value
    ckpt = resolve_checkpoint(args.ref, args.runs_dir)  # ... and on a bad reference
    config = config.replace(checkpoint=str(ckpt.resolve()))
    return _start_or_run(args, "eval", config.to_dict(), f"eval-{args.task or ckpt.parent.parent.name}")


def cmd_quickstart(args) -> int:
    """The Quick Start, offline: expert demos -> BC (fine-tuning shipped:push-tiny) -> closed-loop evaluation."""
    from .config.presets import load_preset

    overrides = [f"dataset.task={args.task}", f"eval.task={args.task}",
                 f"dataset.root={Path(args.datasets_dir) / args.task}", f"dataset.repo_id=local/{args.task}",
                 f"eval.episodes={args.eval_episodes}"]
    if args.episodes:
        overrides.append(f"dataset.episodes={args.episodes}")
    if args.steps:
        overrides.append(f"training.max_steps={args.steps}")
    cfg = load_preset("quickstart", overrides + list(args.set))
    t0 = time.time()
    rc = _start_or_run(args, "train", cfg.to_dict(), f"quickstart-{args.task}")
    if rc == 0 and not args.background:
        from .runs.runner import JobRunner

        runs = [r for r in JobRunner(args.runs_dir).list_runs() if r.name == cfg.name]
        ev = runs[-1].status.eval_summary if runs else None
        if ev is not None:
            print(f"quickstart: {format_eval(ev, args.task)} (held-out seeds) in {time.time() - t0:.0f} s")
    return rc


def cmd_runs(args) -> int:
    rows = _runner(args).list_runs()
    if not rows:
        print(f"no runs in {args.runs_dir}")
        return 0
    print(f"{'run':48} {'job':8} {'state':8} {'step':>12}  info")
    for r in rows:
        st = r.status
        step = f"{st.step}/{st.total_steps if st.total_steps is not None else '?'}"
        info = st.error or ""
        if st.eval_summary is not None and not info:
            info = f"success {st.eval_summary.rate_with_ci()}"
        print(f"{r.run_id:48} {str(r.job):8} {st.state:8} {step:>12}  {info}")
    return 0


def cmd_status(args) -> int:
    print(json.dumps(_runner(args).status(args.run).to_dict(), indent=1))
    return 0


def cmd_stop(args) -> int:
    st = _runner(args).stop(args.run)
    print(f"{args.run}: {st.state}")
    return 0


def cmd_resume(args) -> int:
    rc = _runner(args).resume(args.run, background=args.background)  # refused while the run is alive
    if args.background:
        print(f"resumed {args.run} in the background")
    return rc


def cmd_logs(args) -> int:
    print(_runner(args).get(args.run).tail_log(args.lines))
    return 0


def cmd_presets(args) -> int:
    from .config.presets import list_presets, load_preset
    from .train.methods import PLANNED_METHODS

    for name in list_presets():
        cfg = load_preset(name)
        note = "  (method not built yet)" if cfg.method in PLANNED_METHODS else ""
        print(f"{name:28} {cfg.method:9} {cfg.description}{note}")
    return 0


def cmd_describe(args) -> int:
    """Every field of a preset, section by section: its value (and the default where it differs) and its help.
    A part's sub-config (e.g. ``model.head``, the chosen action head's settings) is listed field by field."""
    import dataclasses

    from .config.base import ConfigBase
    from .config.presets import load_preset

    def show(part: ConfigBase, path: str) -> None:
        helps, defaults = part.field_help(), type(part)()
        for f in dataclasses.fields(part):
            value, default = getattr(part, f.name), getattr(defaults, f.name)
            if isinstance(value, ConfigBase):  # a part's own settings: their fields, under the part's name
                print(f"  {path}.{f.name} ({type(value).__name__})" + (f"  {helps[f.name]}" if helps.get(f.name) else ""))
                show(value, f"{path}.{f.name}")
                continue
            shown = json.dumps(value) + ("" if value == default else f"  (default {json.dumps(default)})")
            print(f"  {path}.{f.name} = {shown}")
            if helps.get(f.name):
                print(f"      {helps[f.name]}")

    cfg = load_preset(args.preset, args.set)
    print(f"{args.preset}: method {cfg.method} -- {cfg.description}")
    for section in ("model", "dataset", "training", "eval"):
        part = getattr(cfg, section)
        print(f"\n{section} ({type(part).__name__})")
        show(part, section)
    return 0


def cmd_tasks(args) -> int:
    from .envs import task_info
    from .registry import TASKS

    for name in TASKS.names():
        info = task_info(name)
        print(f"{name:12} action_dim={info['action_dim']} state_dim={info['state_dim']} "
              f"fps={info['fps']} max_steps={info['max_episode_steps']}  {info.get('description', '')}")
    return 0


def cmd_ui(args) -> int:
    """The browser workbench (the ``app`` package, a separate layer over this engine)."""
    from .runs.run_dir import RunError

    try:
        from app.launcher import main as launch_main
    except ImportError as e:
        raise RunError(f"the workbench UI is not installed ({e}); install the repo with `make setup`") from None
    argv = ["--runs-dir", args.runs_dir] + list(args.ui_args)
    return launch_main(argv)


def cmd_job(args) -> int:
    from .runs.jobs import run_job

    # A background job yields the CPU to interactive work (the app, a shell): on a small machine the
    # UI stays responsive while it trains; on a GPU workstation the job is GPU-bound and loses nothing.
    nice = os.environ.get("VLA_JOB_NICE", "10")
    try:
        if int(nice) > 0:
            os.nice(int(nice))
    except (ValueError, OSError):
        pass
    return run_job(args.run_dir, progress=sys.stderr.isatty(), detached=True)


# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vla", description="VLA Workbench: train and evaluate VLA robot policies")
    p.add_argument("--runs-dir", default=os.environ.get("VLA_RUNS_DIR", "runs"), help="where run folders live")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(fn=fn)
        sp.add_argument("--runs-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return sp

    sp = add("datagen", cmd_datagen, "generate expert demonstrations as a LeRobot v3 dataset (or Minari: --format)")
    sp.add_argument("--task", default=None, help="a task with a scripted expert: push, metaworld/reach-v3, ...")
    sp.add_argument("--suite", default=None, help="a Meta-World suite (mt10, mt50): --episodes of each task")
    sp.add_argument("--episodes", type=int, default=200)
    sp.add_argument("--out", required=True)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--image-size", type=int, default=96)
    sp.add_argument("--action-noise", type=float, default=0.3,
                    help="DART noise std on executed expert actions (recorded actions stay clean); 0 = none")
    sp.add_argument("--targets-per-layout", type=int, default=1, choices=(1, 2, 3),
                    help="episodes per layout, each naming another block (3: contrastive data for grounding)")
    sp.add_argument("--plan-horizon", type=int, default=0,
                    help="also record the expert's noise-free plan of this many steps per frame (chunk labels)")
    sp.add_argument("--overwrite", action="store_true")
    sp.add_argument("--background", action="store_true")
    sp.add_argument("--format", choices=("lerobot", "minari"), default="lerobot",
                    help="lerobot: expert demonstrations as a LeRobot v3 dataset; minari: Minari datasets of "
                         "quality levels (--levels) under --out, e.g. vla/pendulum/expert-v0")
    sp.add_argument("--levels", default="random,medium,expert,mixed",
                    help="minari: comma list of random, medium, expert, mixed (a level without a policy is skipped)")
    sp.add_argument("--expert", default=None,
                    help="minari: the expert level's policy: 'scripted' or a state policy checkpoint folder")
    sp.add_argument("--medium", default=None,
                    help="minari: the medium level's policy: 'scripted' (where there is one) or a checkpoint folder")

    sp = add("train", cmd_train, "train from a preset or YAML file")
    sp.add_argument("preset", help="preset name (vla presets) or a YAML file")
    sp.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    sp.add_argument("--name")
    sp.add_argument("--background", action="store_true")

    sp = add("eval", cmd_eval, "closed-loop evaluation of a run or checkpoint")
    sp.add_argument("ref", help="run id, run folder or checkpoint folder")
    sp.add_argument("--task", help="default: the run's task; a Meta-World suite (metaworld/mt10, metaworld/mt50) "
                                   "evaluates each of its tasks and reports the mean")
    sp.add_argument("--episodes", type=int, default=50, help="held-out episodes (per task for a suite)")
    sp.add_argument("--videos", type=int, default=4)
    sp.add_argument("--seed-start", type=int, default=EVAL_SEED_START)
    sp.add_argument("--instruction", help="free-text instruction instead of the task's own")
    sp.add_argument("--max-steps", type=int)
    sp.add_argument("--set", action="append", default=[], metavar="model.FIELD=VALUE",
                    help="how the checkpoint acts: n_action_steps, temporal_ensemble_coeff (null = off), "
                         "num_inference_steps, use_ddim")
    sp.add_argument("--background", action="store_true")

    sp = add("quickstart", cmd_quickstart, "generate data, train BC and evaluate, offline")
    sp.add_argument("--task", default="reach")
    sp.add_argument("--episodes", type=int, default=None, help="expert episodes (default: the preset's, 300)")
    sp.add_argument("--steps", type=int, default=None)
    sp.add_argument("--eval-episodes", type=int, default=50)
    sp.add_argument("--datasets-dir", default="datasets")
    sp.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    sp.add_argument("--background", action="store_true")

    add("runs", cmd_runs, "list runs")
    for name, fn, h in (("status", cmd_status, "show a run's status"), ("stop", cmd_stop, "stop a running job"),
                        ("resume", cmd_resume, "resume a stopped or failed run"), ("logs", cmd_logs, "tail a run's log")):
        sp = add(name, fn, h)
        sp.add_argument("run")
        if name == "resume":
            sp.add_argument("--background", action="store_true")
        if name == "logs":
            sp.add_argument("-n", "--lines", type=int, default=40)
    sp = add("ui", cmd_ui, "open the browser workbench (flags: --host --port --share --datasets-dir)")
    sp.add_argument("ui_args", nargs=argparse.REMAINDER)
    add("presets", cmd_presets, "list presets")
    sp = add("describe", cmd_describe, "every field of a preset with its value and help")
    sp.add_argument("preset", help="preset name (vla presets) or a YAML file")
    sp.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    add("tasks", cmd_tasks, "list built-in tasks")
    sp = add("job", cmd_job, argparse.SUPPRESS)
    sp.add_argument("run_dir")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .config.base import ConfigError
    from .registry import RegistryError
    from .runs.run_dir import RunError

    expected: tuple[type[BaseException], ...] = (ConfigError, RegistryError, RunError, FileExistsError,
                                                 FileNotFoundError)
    try:
        from .data import DatasetError
        from .eval.evaluator import EvalError
        from .train.loop import CheckpointError, TrainingError
        from .train.methods import CapabilityMissing

        expected += (DatasetError, EvalError, TrainingError, CheckpointError, CapabilityMissing)
    except ImportError:
        pass
    try:
        return args.fn(args) or 0
    except expected as e:
        return _err(first_line(e))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
