"""Meta-World as a task family: tasks register lightly, build and render upright headless, the scripted
experts succeed, `vla datagen` writes LeRobot v3 datasets (one task or a suite) that lerobot reads back, and a
suite evaluation reports each task and the mean with Wilson intervals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("metaworld")

from vla_engine.envs import make_env, make_expert, task_info  # noqa: E402
from vla_engine.envs.metaworld_tasks import MT10, MT50, suite_tasks  # noqa: E402
from vla_engine.registry import TASKS, RegistryError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_tasks_and_suites_register():
    names = [t for t in TASKS.names() if t.startswith("metaworld/")]
    assert len(names) == 50 and len(MT50) == 50 and len(MT10) == 10
    meta = task_info("metaworld/push-v3")
    assert meta["action_dim"] == 4 and meta["state_dim"] == 4 and meta["has_expert"]
    assert meta["example_instruction"] == "push the puck to the goal"
    assert "metaworld/mt10" in meta["suites"]
    assert suite_tasks("mt10")[0] == "metaworld/reach-v3" and len(suite_tasks("metaworld/mt50")) == 50
    with pytest.raises(RegistryError, match="mt10"):
        suite_tasks("mt7")
    # registering is light: no metaworld / MuJoCo import
    code = "import sys, vla_engine.envs; assert 'metaworld' not in sys.modules and 'mujoco' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("task", ["metaworld/reach-v3", "metaworld/drawer-close-v3"])
def test_task_renders_upright_and_the_scripted_expert_succeeds(task):
    env = make_env(task, image_size=64)
    obs, info = env.reset(seed=7)
    assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8 and obs["pixels"].std() > 5
    assert obs["agent_pos"].shape == (4,) and info["instruction"] == env.unwrapped.instruction
    # the corner camera renders upside down; the frame we give is Meta-World's turned 180 degrees
    u = env.unwrapped
    u._renderer.update_scene(u._env.data, camera="corner")
    raw = u._renderer.render()
    np.testing.assert_array_equal(obs["pixels"], raw[::-1, ::-1])
    assert not np.array_equal(obs["pixels"], raw)
    # a seed fixes the object / goal positions
    first = env.unwrapped.raw_obs.copy()
    env.reset(seed=8)
    other = env.unwrapped.raw_obs.copy()
    env.reset(seed=7)
    np.testing.assert_allclose(env.unwrapped.raw_obs, first)
    assert not np.allclose(other[36:39], first[36:39])  # another goal
    expert = make_expert(env)
    success, steps = False, 0
    obs, _ = env.reset(seed=7)
    while True:
        obs, _, term, trunc, info = env.step(expert(obs))
        steps += 1
        success = success or info["is_success"]
        if term or trunc:
            break
    assert success and term and steps < 500


def test_datagen_cli_writes_a_task_and_a_suite(tmp_path, monkeypatch):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from vla_engine.envs import metaworld_tasks

    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}

    def vla(*args):
        p = subprocess.run([sys.executable, "-m", "vla_engine.cli", *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        return p

    vla("datagen", "--task", "metaworld/reach-v3", "--episodes", "2", "--out", "mw-reach", "--image-size", "32",
        "--action-noise", "0")
    ds = LeRobotDataset("local/metaworld/reach-v3", root=tmp_path / "mw-reach")
    assert ds.meta.total_episodes == 2 and ds[0]["action"].shape == (4,) and ds[0]["observation.state"].shape == (4,)
    assert ds[0]["task"] == "reach the goal position with the gripper"

    # a suite: every task's episodes in one dataset, each with its instruction (a 2-task suite keeps it short)
    from vla_engine.envs.metaworld.suite import generate_suite_dataset

    monkeypatch.setitem(metaworld_tasks.SUITES, "two", ("reach-v3", "drawer-close-v3"))
    out = generate_suite_dataset("two", 2, tmp_path / "mw-two", image_size=32, progress=False)
    ds = LeRobotDataset("local/metaworld-two", root=out)
    assert ds.meta.total_episodes == 4
    assert {ds[i]["task"] for i in range(len(ds))} == {"reach the goal position with the gripper",
                                                       "push the drawer closed"}
    p = subprocess.run([sys.executable, "-m", "vla_engine.cli", "datagen", "--suite", "mt7", "--out", "x"],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    assert p.returncode != 0 and "choose one of" in p.stderr


class _Random(torch.nn.Module):
    """A policy with the evaluator's interface that acts at random (the suite's bookkeeping is under test)."""

    def __init__(self):
        super().__init__()
        self.g = torch.Generator().manual_seed(0)

    def reset(self):
        pass

    def prepare_observation(self, obs, text):
        return {"observation.state": torch.as_tensor(obs["agent_pos"])[None]}

    def select_action(self, batch):
        return torch.rand(1, 4, generator=self.g) * 2 - 1


def test_suite_evaluation_reports_each_task_and_the_mean(tmp_path, monkeypatch):
    from vla_engine.envs import metaworld_tasks
    from vla_engine.envs.metaworld.suite import evaluate_suite

    monkeypatch.setitem(metaworld_tasks.SUITES, "two", ("reach-v3", "drawer-close-v3"))
    res = evaluate_suite(_Random(), "two", episodes_per_task=2, max_episode_steps=15, num_videos=1,
                         video_dir=tmp_path, progress=False)
    assert list(res.per_task) == ["metaworld/reach-v3", "metaworld/drawer-close-v3"]
    s = res.summary
    rates = [t["eval/success_rate"] for t in res.per_task.values()]
    assert s["suite/mean_success_rate"] == pytest.approx(np.mean(rates))
    assert 0 <= s["suite/success_ci_low"] <= s["suite/mean_success_rate"] <= s["suite/success_ci_high"] <= 1
    assert s["suite/episodes"] == 4 and len(res.videos) == 2 and all(Path(v).exists() for v in res.videos)
    assert "mean over 2 tasks" in res.format()


def test_vla_eval_of_a_suite_reports_each_task_and_the_mean(tmp_path, monkeypatch, capsys):
    """`vla eval CKPT --task metaworld/<suite>`: each task on the same seeds, the mean in the run's status."""
    from vla_engine.cli import main
    from vla_engine.config.presets import load_preset
    from vla_engine.envs import metaworld_tasks
    from vla_engine.models import VLAModel
    from vla_engine.runs.run_dir import RunDir

    monkeypatch.setitem(metaworld_tasks.SUITES, "two", ("reach-v3", "drawer-close-v3"))
    torch.manual_seed(0)
    cfg = load_preset("il-bc-metaworld-mt10").model.replace(state_dim=4, image_size=32)
    VLAModel(cfg).save_pretrained(tmp_path / "ckpt")
    rc = main(["--runs-dir", str(tmp_path / "runs"), "eval", str(tmp_path / "ckpt"), "--task", "metaworld/two",
               "--episodes", "2", "--max-steps", "10", "--videos", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "metaworld/reach-v3: success" in out and "metaworld/drawer-close-v3: success" in out
    assert "metaworld/two: mean success" in out
    (run_path,) = (tmp_path / "runs").iterdir()
    st = RunDir(run_path).read_status()
    data = json.loads((run_path / "eval.json").read_text())
    assert list(data["per_task"]) == ["metaworld/reach-v3", "metaworld/drawer-close-v3"]
    rates = [t["eval/success_rate"] for t in data["per_task"].values()]
    assert st.eval_summary.episodes == 4 and st.eval_summary.success_rate == pytest.approx(np.mean(rates))
    assert len(list((run_path / "videos").rglob("*.mp4"))) == 2  # one per task
    # an unknown task or suite still fails in one line before anything runs
    assert main(["--runs-dir", str(tmp_path / "runs"), "eval", str(tmp_path / "ckpt"), "--task", "metaworld/mt7"]) != 0
    assert "metaworld/mt7" in capsys.readouterr().err and len(list((tmp_path / "runs").iterdir())) == 1
    assert main(["--runs-dir", str(tmp_path / "runs"), "eval", str(tmp_path / "ckpt"), "--task", "metaworld/two",
                 "--instruction", "open it"]) != 0
    assert "suite" in capsys.readouterr().err and len(list((tmp_path / "runs").iterdir())) == 1
