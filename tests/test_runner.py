"""The job runner over run folders: start, list, re-attach, stop, resume, one trainer per folder, stale pids.

Real jobs: the tiny VLA trained on a few generated reach episodes, in background processes.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.waiting import wait_for

from vla_engine.config.base import ConfigError
from vla_engine.config.presets import load_preset
from vla_engine.runs.run_dir import RunDir, RunError
from vla_engine.runs.runner import JobRunner
from vla_engine.runs.schema import RunStatus

ROOT = Path(__file__).resolve().parent.parent


def train_config(root: Path, steps: int, **extra: str) -> dict:
    overrides = [f"dataset.root={root}", "dataset.repo_id=local/reach", "dataset.task=reach", "dataset.episodes=2",
                 "dataset.image_size=32", "model.image_size=32", f"training.max_steps={steps}",
                 "training.batch_size=8", "training.log_every=2", "training.save_every=4", "training.warmup_steps=1",
                 "training.num_threads=1", "eval.after_training=false", "training.init_from="]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return load_preset("quickstart", overrides).to_dict()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from vla_engine.data import generate_dataset

    root = tmp_path_factory.mktemp("data") / "reach"
    generate_dataset("reach", 2, root, image_size=32, progress=False)
    return root


def test_datagen_job_runs_in_the_background_and_lists(tmp_path):
    runner = JobRunner(tmp_path / "runs")
    run_id = runner.start("datagen", {"task": "reach", "episodes": 2, "out": str(tmp_path / "d"), "image_size": 32},
                          name="gen")
    st = runner.wait(run_id, timeout=180)
    assert isinstance(st, RunStatus) and st.state == "done", st.error
    assert (tmp_path / "d" / "meta" / "info.json").exists()
    (row,) = runner.list_runs()
    assert (row.run_id, row.job, row.status.state) == (run_id, "datagen", "done")
    assert runner.list_runs(job="train") == []
    with pytest.raises(ConfigError, match="datagen.episodes: 0 is out of range"):
        runner.start("datagen", {"task": "reach", "episodes": 0, "out": str(tmp_path / "e")}, name="bad")


def test_stop_reattach_refuse_second_trainer_resume(tmp_path, data_root):
    runs = tmp_path / "runs"
    runner = JobRunner(runs)
    run_id = runner.start("train", train_config(data_root, steps=100_000), name="long")
    run = runner.get(run_id)
    wait_for(lambda: run.last_checkpoint() is not None, what="a first checkpoint")

    # a new runner (a restarted UI or another shell) re-attaches to the running job through the folder
    other = JobRunner(runs)
    st = other.status(run_id)
    assert st.state == "running" and st.pid and st.phase == "train"
    # one trainer per folder: a resume of a live run is refused in both forms, naming the pid
    with pytest.raises(RunError, match=rf"still running \(pid {st.pid}\)"):
        other.resume(run_id)
    with pytest.raises(RunError, match=rf"still running \(pid {st.pid}\)"):
        other.resume(run_id, background=False)

    st = other.stop(run_id)
    assert st.state == "stopped"
    stopped_at = st.step
    assert run.last_checkpoint().name == f"step-{stopped_at}"

    # resume to a nearby end: training continues from the checkpoint, each step is logged once
    cfg = run.read_config()
    cfg["training"]["max_steps"] = stopped_at + 6
    run.write_config(cfg)
    runner.resume(run_id)
    st = runner.wait(run_id, timeout=180)
    assert st.state == "done" and st.step == stopped_at + 6, st.error
    steps = [r["step"] for r in run.read_metrics(0)[0] if "train/loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == stopped_at + 6
    assert f"resumed from step-{stopped_at}" in run.log_path.read_text()


def test_a_stale_pid_is_marked_failed_and_can_be_resumed(tmp_path, data_root):
    runs = tmp_path / "runs"
    run = RunDir.create(runs, "stale", {"job": "train", **train_config(data_root, steps=4)})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.write_status("running", phase="train")
    run.write_status(pid=dead.pid)  # the machine restarted, or the job was killed -9
    runner = JobRunner(runs)
    st = runner.status("stale")
    assert st.state == "failed" and "died unexpectedly" in st.error
    runner.resume("stale")  # allowed now
    assert runner.wait("stale", timeout=180).state == "done"


def test_stop_of_a_foreground_run_leaves_the_calling_script_alone(tmp_path, data_root):
    """A run started in the foreground of someone's script shares the script's process group: a stop
    signals the job alone, and the script goes on."""
    runs = tmp_path / "runs"
    run = RunDir.create(runs, "fg", {"job": "train", **train_config(data_root, steps=100_000)})
    job = textwrap.dedent(f"""
        from vla_engine.runs.jobs import run_job
        raise SystemExit(run_job({str(run.path)!r}, progress=False))
    """)
    script = f"{sys.executable} -c {shlex.quote(job)}; echo job exited $?; sleep 0.5; echo script survived"
    proc = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, cwd=ROOT)
    try:
        wait_for(lambda: run.last_checkpoint() is not None or proc.poll() is not None, what="a first checkpoint")
        assert proc.poll() is None, proc.communicate()[0]
        st = run.read_status()
        assert st.pid != proc.pid and os.getpgid(st.pid) == proc.pid  # the job is in the script's group
        runner = JobRunner(runs)
        assert runner.stop("fg").state == "stopped"
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "job exited 0" in out and "script survived" in out, out
