"""RL runs as jobs: a background PPO run killed -9 resumes from its checkpoint; Stop saves; `vla eval` loads
the RL checkpoint (videos from the env's rgb_array render)."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.waiting import wait_for

from vla_engine.config.presets import load_preset
from vla_engine.runs.runner import JobRunner


def ppo_config(total: int) -> dict:
    return load_preset("rl-ppo-pendulum", [f"training.total_timesteps={total}", "training.save_every=1",
                                           "training.steps_per_update=128", "eval.after_training=false"]).to_dict()


def test_ppo_job_killed_resumes_and_evaluates(tmp_path):
    runs = tmp_path / "runs"
    runner = JobRunner(runs)
    run_id = runner.start("train", ppo_config(1_000_000), name="ppo-kill")
    run = runner.get(run_id)
    wait_for(lambda: len(run.checkpoints()) >= 2, what="two checkpoints")
    pid = run.read_status().pid
    os.killpg(pid, signal.SIGKILL)  # no chance to save or write its state
    st = wait_for(lambda: (s := runner.status(run_id)).state == "failed" and s, what="the dead job noticed")
    last = run.last_checkpoint()
    at = int(last.name.split("-")[1])

    # resume to a nearby end: it continues from the last checkpoint, each update logged once
    cfg = run.read_config()
    cfg["training"]["total_timesteps"] = at + 3 * 512
    cfg["eval"].update(after_training=True, episodes=2, num_videos=1)
    run.write_config(cfg)
    assert runner.resume(run_id, background=False) == 0
    st = run.read_status()
    assert st.state == "done" and st.step == at + 3 * 512, st.error
    rows = [r for r in run.read_metrics(0)[0] if "losses/policy_loss" in r]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == at + 3 * 512
    assert {"charts/episodic_return", "charts/success_rate", "charts/entropy", "losses/value_loss"} <= set(rows[-1])
    assert f"resumed from {last.name}" in run.log_path.read_text()
    assert list(run.videos_dir.rglob("*.mp4"))  # the end-of-training evaluation recorded a rollout

    # vla eval on the RL checkpoint (an eval job, like `vla eval <run>`)
    eval_id = runner.start("eval", {"checkpoint": str(run.path), "episodes": 2, "num_videos": 1}, name="ev")
    est = runner.wait(eval_id, timeout=120)
    assert est.state == "done", est.error
    ev = json.loads((runner.get(eval_id).path / "eval.json").read_text())
    assert ev["task"] == "gym/InvertedPendulum-v5" and len(ev["episodes"]) == 2
    assert list(runner.get(eval_id).videos_dir.rglob("*.mp4"))


def test_ppo_job_stop_saves_a_checkpoint(tmp_path):
    runner = JobRunner(tmp_path / "runs")
    run_id = runner.start("train", ppo_config(1_000_000), name="ppo-stop")
    run = runner.get(run_id)
    wait_for(lambda: run.last_checkpoint() is not None, what="a first checkpoint")
    st = runner.stop(run_id)
    assert st.state == "stopped"
    assert run.last_checkpoint().name == f"step-{st.step}"


def test_stop_during_a_long_rollout_ends_the_job(tmp_path):
    """Stop is honoured between env steps, not only between updates (a VLA's rollout takes minutes): the job
    exits stopped, with a checkpoint at the last finished update (here: the start)."""
    from vla_engine.runs.runner import _alive

    runner = JobRunner(tmp_path / "runs")
    cfg = load_preset("rl-ppo-pendulum", ["training.total_timesteps=100000000", "training.steps_per_update=1000000",
                                          "eval.after_training=false"]).to_dict()
    run_id = runner.start("train", cfg, name="ppo-long-rollout")
    run = runner.get(run_id)
    wait_for(lambda: "PPO" in run.log_path.read_text() if run.log_path.exists() else False, what="training start")
    time.sleep(1.0)  # inside the first rollout, which would take hours
    pid = run.read_status().pid
    st = runner.stop(run_id, timeout=60)
    assert st.state == "stopped" and st.step == 0
    assert not _alive(pid)  # the process itself ended (not only its status)
    assert run.last_checkpoint().name == "step-0"
