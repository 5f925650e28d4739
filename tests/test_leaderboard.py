"""The benchmark leaderboard, the eval job config it is fed with, and the benchmark queue: rows from finished
eval jobs, each checkpoint against its task's leader seed by seed, a queue that goes on past a bad job and
waits for a free job slot."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from vla_engine.config.base import ConfigError
from vla_engine.config.run_config import EVAL_SEED_START
from vla_engine.eval.benchmark_queue import BenchmarkQueue
from vla_engine.eval.job_config import check_inference, eval_job_config
from vla_engine.eval.leaderboard import COLUMNS, Leaderboard, latest_per_checkpoint, row_from_eval, table_rows
from vla_engine.runs.run_dir import RunDir
from vla_engine.runs.runner import JobRunner


def row(name, outcomes, seed_start=EVAL_SEED_START, task="push", t=0.0):
    n, s = len(outcomes), outcomes.count("1")
    return {"checkpoint": name, "task": task, "episodes": n, "successes": s, "success_rate": s / n, "ci_low": 0.0,
            "ci_high": 1.0, "outcomes": outcomes, "seed_start": seed_start, "time": t}


def test_each_checkpoint_is_compared_with_its_task_leader_seed_by_seed():
    leader = row("a", "1" * 30)
    close = row("b", "1" * 28 + "00")  # 2 seeds apart: could be luck
    far = row("c", "1" * 10 + "0" * 20)  # 20 seeds only the leader solved
    rows = [leader, close, far, row("d", "1" * 30, seed_start=5), row("e", "1" * 20)]
    col = [r[COLUMNS.index("vs leader (same seeds)")] for r in table_rows(rows)]
    assert col[0] == "leader" and col[3] == col[4] == "other seeds"
    assert col[1].startswith("-7 pts") and float(col[1].split("p = ")[1].rstrip(")")) > 0.4
    assert col[2].startswith("-67 pts") and float(col[2].split("p = ")[1].rstrip(")")) < 0.01
    assert table_rows([leader])[0][COLUMNS.index("success (95% CI)")] == "100% (0%–100%)"


def test_task_metrics_of_driving_and_pusht_reach_the_table():
    """Route completion and collisions (driving) or coverage (PushT) are in the row and its task-metrics column."""
    summary = {"eval/episodes": 2, "eval/successes": 1, "eval/success_rate": 0.5, "eval/success_ci_low": 0.1,
               "eval/success_ci_high": 0.9, "eval/mean_return": 1.0, "eval/route_completion": 0.8125,
               "eval/collisions_per_km": 1.5}
    r = row_from_eval({"checkpoint": "ck", "task": "driving/turn"}, {"summary": summary, "episodes": []})
    assert r["task_metrics"] == {"route_completion": 0.8125, "collisions_per_km": 1.5}
    cell = table_rows([r])[0][COLUMNS.index("task metrics")]
    assert cell == "route completion 0.812 · collisions per km 1.5"
    pusht = row_from_eval({"checkpoint": "ck", "task": "pusht/push-t"},
                          {"summary": {**{k: v for k, v in summary.items() if "route" not in k and "coll" not in k},
                                       "eval/coverage": 0.97}, "episodes": []})
    assert table_rows([pusht])[0][COLUMNS.index("task metrics")] == "coverage 0.97"
    assert table_rows([row("a", "11")])[0][COLUMNS.index("task metrics")] == ""  # older rows: none


def test_latest_result_per_checkpoint_and_task_best_first():
    rows = [row("a", "10", t=1), row("a", "11", t=2), row("b", "00", t=3), row("b", "1", task="reach", t=4)]
    latest = latest_per_checkpoint(rows)
    assert [(r["checkpoint"], r["task"], r["outcomes"]) for r in latest] == [
        ("a", "push", "11"), ("b", "push", "00"), ("b", "reach", "1")]


def finished_eval(runs: Path, run_id: str, successes: list[bool], state: str = "done") -> RunDir:
    """An eval run folder as the eval job leaves it: status and eval.json with per-seed episodes."""
    run = RunDir.create(runs, run_id, {"job": "eval", "checkpoint": "x", "task": "push"})
    eps = [{"episode": i, "seed": EVAL_SEED_START + i, "success": s, "return": float(s), "length": 10}
           for i, s in enumerate(successes)]
    n, k = len(eps), sum(successes)
    summary = {"eval/episodes": n, "eval/successes": k, "eval/success_rate": k / n, "eval/success_ci_low": 0.1,
               "eval/success_ci_high": 0.9, "eval/mean_return": k / n, "eval/mean_length": 10.0,
               "eval/ms_per_step": 1.5}
    (run.path / "eval.json").write_text(json.dumps({"task": "push", "summary": summary, "episodes": eps}))
    run.write_status(state)
    return run


def test_sync_records_each_announced_finished_job_once(tmp_path):
    runs = tmp_path / "runs"
    runner = JobRunner(runs)
    board = Leaderboard.of(runs)
    finished_eval(runs, "e1", [True, False, True])
    finished_eval(runs, "e2", [True], state="running")
    finished_eval(runs, "other", [True])  # an evaluation that is not part of a benchmark
    board.expect("e1", "my-run/step-100", "push", "batch-1")
    board.expect("e2", "my-run", "push", "batch-1")
    assert board.sync(runner) == 1
    [r] = board.read()
    assert r["checkpoint"] == "my-run/step-100" and r["eval_run"] == "e1" and r["benchmark"] == "batch-1"
    assert r["outcomes"] == "101" and r["seed_start"] == EVAL_SEED_START and r["successes"] == 2
    assert board.sync(runner) == 0  # once only
    runner.get("e2").write_status("done")
    assert board.sync(runner) == 1 and {r["eval_run"] for r in board.read()} == {"e1", "e2"}
    reread = Leaderboard.of(runs)  # another process (an app restart) reads the same board
    assert [r["eval_run"] for r in reread.latest()] == ["e2", "e1"]  # best success rate first
    assert reread.signature() == board.signature()


def checkpoint(tmp_path: Path, **fields) -> Path:
    from vla_engine.config.model_config import ModelConfig

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir(exist_ok=True)
    (ckpt / "config.json").write_text(json.dumps(ModelConfig(**fields).to_dict()))
    return ckpt


def test_eval_job_config_checks_numbers_action_size_and_inference(tmp_path):
    ckpt = checkpoint(tmp_path, action_dim=2, chunk_size=4)
    cfg = eval_job_config(ckpt, "push", episodes=3, num_videos=0, instruction="  push the red block ",
                          inference={"n_action_steps": 2}, runs_dir=tmp_path)
    assert cfg["task"] == "push" and cfg["episodes"] == 3 and cfg["seed_start"] == EVAL_SEED_START
    assert cfg["instruction"] == "push the red block" and cfg["inference"] == {"n_action_steps": 2}
    with pytest.raises(ConfigError, match="episodes"):
        eval_job_config(ckpt, "push", episodes=0)
    with pytest.raises(ConfigError, match="4-D actions"):
        eval_job_config(ckpt, "pick-place")
    with pytest.raises(ConfigError, match="n_action_steps"):
        check_inference(ckpt, {"n_action_steps": 8})  # more than the chunk holds
    with pytest.raises(ConfigError, match="config.json"):
        eval_job_config(tmp_path / "nowhere", "push")


class FakeRunner:
    """A JobRunner whose eval jobs finish at once (their results written by ``start``)."""

    def __init__(self, runs: Path, fail_task: str | None = None, busy_for: int = 0):
        self.real = JobRunner(runs)
        self.runs_dir = runs
        self.max_concurrent = 1 if busy_for else None
        self.fail_task = fail_task
        self.busy_for = busy_for  # list_runs calls that report another job running
        self.started: list[dict] = []

    def list_runs(self, job=None):
        if self.busy_for > 0:
            self.busy_for -= 1
            return [type("Busy", (), {"status": type("S", (), {"active": True})()})()]
        return []

    def start(self, job, config, name=None):
        if config["task"] == self.fail_task:
            raise ValueError(f"task {config['task']} is broken")
        run_id = f"e{len(self.started)}"
        self.started.append(config)
        finished_eval(self.runs_dir, run_id, [True, len(self.started) % 2 == 0])
        return run_id

    def wait(self, run_id, poll=0.5):
        return self.real.status(run_id)

    def status(self, run_id):
        return self.real.status(run_id)

    def get(self, run_id):
        return self.real.get(run_id)


def wait_idle(queue: BenchmarkQueue, polls: int = 3000) -> None:
    """Wait for the queue's thread to finish its jobs (a bounded number of 10 ms polls)."""
    for _ in range(polls):
        if queue.idle():
            return
        time.sleep(0.01)
    raise AssertionError(f"queue still busy: {queue.state()}")


def test_queue_runs_each_evaluation_and_goes_on_past_a_bad_one(tmp_path):
    runner = FakeRunner(tmp_path / "runs", fail_task="reach", busy_for=3)
    errors = []
    queue = BenchmarkQueue(runner, retry_s=0.01, on_error=errors.append)
    configs = [{"checkpoint": "/c/a", "task": "push"}, {"checkpoint": "/c/a", "task": "reach"},
               {"checkpoint": "/c/b", "task": "push"}]
    batch = queue.submit(configs, labels=["a", "a", "b"])
    wait_idle(queue)
    assert runner.busy_for == 0  # it waited for the busy slot
    assert [c["task"] for c in runner.started] == ["push", "push"]
    board = queue.leaderboard.read()
    assert [(r["checkpoint"], r["benchmark"]) for r in board] == [("a", batch), ("b", batch)]
    assert len(errors) == 1 and any("a on reach: task reach is broken" in line for line in queue.state().log)
    with pytest.raises(ValueError, match="at least one"):
        queue.submit([])
