"""The `vla` command line end to end on tiny settings: datagen -> train (background) -> eval with videos."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vla_engine.config.run_config import EVAL_SEED_START

ROOT = Path(__file__).resolve().parent.parent


def vla(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "vla_engine.cli", *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"vla {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


TINY = ["--set", "training.max_steps=30", "--set", "training.save_every=10", "--set", "training.log_every=5",
        "--set", "training.batch_size=16", "--set", "eval.episodes=2", "--set", "eval.num_videos=1"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    vla("datagen", "--task", "reach", "--episodes", "4", "--out", "datasets/reach", cwd=d)
    return d


def test_datagen_refuses_to_overwrite(work):
    p = vla("datagen", "--task", "reach", "--episodes", "2", "--out", "datasets/reach", cwd=work, check=False)
    assert p.returncode == 2
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--overwrite" in err[0]


def test_train_in_background_then_eval_with_videos(work):
    p = vla("train", "quickstart", "--background", "--name", "bg", *TINY, "--set", "dataset.root=datasets/reach",
            cwd=work)
    run_id = p.stdout.split("started train job ")[1].split()[0]
    deadline = time.time() + 300
    while time.time() < deadline:
        st = json.loads(vla("status", run_id, cwd=work).stdout)
        if st["state"] in ("done", "failed", "stopped"):
            break
        time.sleep(1)
    assert st["state"] == "done", st
    run = work / "runs" / run_id
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in r for r in rows) and any("eval/success_rate" in r for r in rows)
    assert (run / "checkpoints" / "step-30" / "model.safetensors").exists()
    assert list((run / "videos").glob("*.mp4"))
    assert run_id in vla("runs", cwd=work).stdout

    p = vla("eval", run_id, "--task", "reach", "--episodes", "2", "--videos", "1", cwd=work)
    assert "eval done" in p.stdout
    evals = [r for r in (work / "runs").iterdir() if "eval-" in r.name]
    data = json.loads((evals[-1] / "eval.json").read_text())
    assert data["summary"]["eval/episodes"] == 2
    assert all(e["seed"] >= EVAL_SEED_START for e in data["episodes"])  # held-out seeds
    mp4 = next((evals[-1] / "videos").glob("*.mp4"))
    import imageio.v3 as iio

    frames = iio.imread(mp4, plugin="pyav")
    assert frames.ndim == 4 and frames.shape[0] >= 2 and frames.shape[-1] == 3

    # how the checkpoint acts is set at evaluation: recorded in the eval run's config
    p = vla("eval", run_id, "--task", "reach", "--episodes", "1", "--videos", "0", "--set",
            "model.temporal_ensemble_coeff=-0.5", cwd=work)
    assert "eval done" in p.stdout
    evals = sorted((r for r in (work / "runs").iterdir() if "eval-" in r.name), key=lambda r: r.stat().st_mtime)
    assert "temporal_ensemble_coeff: -0.5" in (evals[-1] / "config.yaml").read_text()


def test_stop_a_background_run(work):
    p = vla("train", "quickstart", "--background", "--name", "stopme", "--set", "training.max_steps=100000",
            "--set", "training.save_every=1000000", "--set", "dataset.root=datasets/reach", cwd=work)
    run_id = p.stdout.split("started train job ")[1].split()[0]
    run = work / "runs" / run_id
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().strip():
            break
        time.sleep(0.5)
    assert "stopped" in vla("stop", run_id, cwd=work).stdout
    st = json.loads((run / "status.json").read_text())
    assert st["state"] == "stopped"
    ck = sorted((run / "checkpoints").iterdir())
    assert ck and ck[-1].name == f"step-{st['step']}"


def test_bad_inputs_are_one_line_errors(work):
    for args, needle in [
        (("train", "il-bc", "--set", "training.learning_rate=-1"), "training.learning_rate"),
        (("train", "rl-ppo", "--set", "training.clip_range=0"), "training.clip_range"),
        (("train", "no-such-preset"), "no-such-preset"),
        (("eval", "no-such-run", "--task", "reach"), "neither a checkpoint folder nor a run"),
        (("eval", "no-such-run", "--set", "model.chunk_size=4"), "the rest is fixed by training"),
        (("datagen", "--task", "fly", "--episodes", "1", "--out", "x"), "'fly' is not a known task"),
        (("datagen", "--task", "reach", "--episodes", "2", "--out", "x", "--action-noise", "nan"),
         "datagen.action_noise: nan is not a finite number"),
        (("datagen", "--task", "reach", "--episodes", "2000000", "--out", "x"), "at most 1,000,000 episodes fit"),
        (("eval", "shipped:reach-tiny", "--task", "reach", "--episodes", "0"), "eval.episodes: 0 is out of range"),
        (("eval", "shipped:reach-tiny", "--task", "reach", "--episodes", "-5"), "eval.episodes: -5 is out of range"),
    ]:
        p = vla(*args, cwd=work, check=False)
        assert p.returncode != 0, args
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        assert lines and needle in lines[-1] and "Traceback" not in p.stderr, (args, p.stderr)
