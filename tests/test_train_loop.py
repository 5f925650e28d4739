"""The shared training loop: loss goes down, checkpoints, exact resume, SIGTERM, NaN, corrupt files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.toy_training import ToyData, ToyPolicy
from vla_engine.config.training_config import TrainingConfig
from vla_engine.runs.run_dir import RunDir
from vla_engine.train.loop import CheckpointError, TrainingError, TrainLoop

ROOT = Path(__file__).resolve().parent.parent


def _cfg(**kw):
    base = dict(max_steps=60, batch_size=16, save_every=20, log_every=5, warmup_steps=5, learning_rate=1e-2)
    base.update(kw)
    return TrainingConfig(**base)


def test_loss_goes_down_and_run_folder_is_written(tmp_path):
    torch.manual_seed(0)
    res = TrainLoop(ToyPolicy(), _cfg(), tmp_path / "run", progress=False).fit(ToyData())
    assert res.state == "done" and res.step == 60
    assert res.final_loss < 0.2 * res.first_loss
    run = RunDir(tmp_path / "run")
    rows = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(5, 61, 5))
    assert {"train/loss", "train/lr", "perf/samples_per_s", "train/grad_norm"} <= set(rows[0])
    assert run.read_status().state == "done"
    assert [p.name for p in run.checkpoints()] == ["step-20", "step-40", "step-60"]
    ck = run.last_checkpoint()
    assert {"model.safetensors", "optimizer.pt", "trainer_state.json"} <= {p.name for p in ck.iterdir()}
    assert list(run.path.glob("events.out.tfevents*")), "TensorBoard events missing"


def test_gradient_accumulation_and_ema(tmp_path):
    torch.manual_seed(0)
    res = TrainLoop(ToyPolicy(), _cfg(gradient_accumulation_steps=2, ema_decay=0.9, max_steps=30),
                    tmp_path / "run", progress=False).fit(ToyData())
    assert res.step == 30 and res.final_loss < res.first_loss
    ck = RunDir(tmp_path / "run").last_checkpoint()
    ema = load_file(ck / "model.safetensors")
    raw = load_file(ck / "train_model.safetensors")
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
    loop = TrainLoop(ToyPolicy(nan_at=45), _cfg(), tmp_path / "run", progress=False)
    with pytest.raises(TrainingError, match=r"loss became nan at step 44.*step-40.*learning_rate"):
        loop.fit(ToyData())
    run = RunDir(tmp_path / "run")
    st = run.read_status()
    assert st.state == "failed" and "nan" in st.error
    assert run.last_checkpoint().name == "step-40"
    w = load_file(run.last_checkpoint() / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in w.values())


def test_resume_continues_exactly(tmp_path):
    """Stop after 30 steps, resume to 60: the weights equal an uninterrupted 60-step run's."""
    torch.manual_seed(0)
    TrainLoop(ToyPolicy(), _cfg(), tmp_path / "full", progress=False).fit(ToyData())
    # first half: same schedule (total 60) but interrupted by a stop request at step 30
    torch.manual_seed(0)
    loop = TrainLoop(ToyPolicy(), _cfg(save_every=30), tmp_path / "split", progress=False)
    orig = loop.loss_fn
    def loss_fn(m, b):
        out = orig(m, b)
        if m.calls == 30:
            loop.request_stop()
        return out
    loop.loss_fn = loss_fn
    res = loop.fit(ToyData())
    assert res.state == "stopped" and res.step == 30
    torch.manual_seed(123)  # a different fresh init: everything must come from the checkpoint
    res2 = TrainLoop(ToyPolicy(), _cfg(save_every=30), tmp_path / "split", progress=False).fit(ToyData())
    assert res2.step == 60
    a = load_file(RunDir(tmp_path / "full").last_checkpoint() / "model.safetensors")
    b = load_file(RunDir(tmp_path / "split").last_checkpoint() / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def _start_script(run_dir: Path, steps: int, delay: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "toy_training.py"), str(run_dir), str(steps),
                             str(delay)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_checkpoint(run: RunDir, min_step: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        last = run.last_checkpoint()
        if last is not None and int(last.name.split("-")[1]) >= min_step:
            return
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def test_kill_9_then_resume_keeps_step_and_optimizer_state(tmp_path):
    run = RunDir(tmp_path / "run")
    proc = _start_script(run.path, 400, 0.01)
    _wait_for_checkpoint(run, 10)
    proc.kill()  # SIGKILL: no chance to save anything
    proc.wait()
    killed_at = int(run.last_checkpoint().name.split("-")[1])
    half_written = run.checkpoints_dir / f".tmp-step-{killed_at + 1}-99999"  # as a kill mid-save leaves it
    half_written.mkdir()
    opt = torch.load(run.last_checkpoint() / "optimizer.pt", weights_only=True)
    step_count = next(iter(opt["optimizer"]["state"].values()))["step"]
    assert int(step_count) == killed_at
    proc = _start_script(run.path, killed_at + 10, 0.0)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert f"RESULT done {killed_at + 10}" in out
    assert f"resumed from step-{killed_at}" in run.log_path.read_text()
    opt2 = torch.load(run.last_checkpoint() / "optimizer.pt", weights_only=True)
    assert int(next(iter(opt2["optimizer"]["state"].values()))["step"]) == killed_at + 10
    state = json.loads((run.last_checkpoint() / "trainer_state.json").read_text())
    assert state["step"] == killed_at + 10
    # rows logged after the checkpoint before the kill are dropped, then logged again: each step once
    steps = [r["step"] for r in run.read_metrics(0)[0]]
    assert steps == sorted(set(steps)) and steps[-1] == killed_at + 10
    assert not half_written.exists()


def test_sigterm_saves_checkpoint_and_marks_stopped(tmp_path):
    run = RunDir(tmp_path / "run")
    proc = _start_script(run.path, 10_000, 0.01)
    _wait_for_checkpoint(run, 5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    st = run.read_status()
    assert st.state == "stopped"
    assert run.last_checkpoint().name == f"step-{st.step}"
    assert "RESULT stopped" in out


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    torch.manual_seed(0)
    TrainLoop(ToyPolicy(), _cfg(max_steps=20, save_every=10), tmp_path / "run", progress=False).fit(ToyData())
    ck = RunDir(tmp_path / "run").last_checkpoint()
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"corrupt.*delete .*step-20"):
        TrainLoop(ToyPolicy(), _cfg(max_steps=30), tmp_path / "run", progress=False).fit(ToyData())


def test_prepare_resume_drops_rows_after_the_checkpoint_and_half_written_checkpoints(tmp_path):
    run = RunDir(tmp_path / "run")
    for step in (5, 10, 15, 20):
        run.log_metrics(step, {"train/loss": 1.0 / step})
    run.close()
    with open(run.metrics_path, "a") as f:
        f.write('{"step": 25, "train/lo')  # the half-written line of a killed process
    (run.checkpoints_dir / ".tmp-step-20-123").mkdir(parents=True)
    _, offset = run.read_metrics(0)
    run.prepare_resume(10)
    assert [r["step"] for r in run.read_metrics(0)[0]] == [5, 10]
    assert not list(run.checkpoints_dir.glob(".tmp-step-*"))
    assert run.metrics_truncated(offset)  # a reader that had read further knows to start again
    assert "dropped 3 metric rows" in run.log_path.read_text()
