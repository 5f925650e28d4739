"""DAgger: the beta schedules; the aggregate grows on disk (read back by lerobot's own reader) by exactly
the visited states, each labelled by the expert; the learner acts with probability 1 - beta; the
`vla train il-dagger` job runs end to end in a run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vla_engine.config.training_config import ILConfig
from vla_engine.train.il.dagger import DAgger, beta_schedule


def test_beta_schedules():
    assert [beta_schedule("linear", i, 5) for i in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert beta_schedule("linear", 0, 1) == 1.0
    np.testing.assert_allclose([beta_schedule("exponential", i, 4, 0.5) for i in range(4)], [1, 0.5, 0.25, 0.125])
    assert {beta_schedule("constant", i, 4, 0.3) for i in range(4)} == {0.3}
    with pytest.raises(ValueError, match="choose one of"):
        beta_schedule("cosine", 0, 4)
    from vla_engine.config.base import ConfigError

    with pytest.raises(ConfigError, match="beta_schedule"):
        ILConfig(beta_schedule="cosine")
    with pytest.raises(ConfigError, match="training.beta"):
        ILConfig(beta=1.5)


class RecordingExpert:
    """The task's scripted expert, keeping every (state, label) pair it was asked for."""

    def __init__(self, expert):
        self.expert, self.states, self.labels = expert, [], []

    def reset(self):
        self.expert.reset()

    def __call__(self, obs):
        a = np.asarray(self.expert(obs), dtype=np.float32)
        self.states.append(np.asarray(obs["agent_pos"], dtype=np.float32).copy())
        self.labels.append(a.copy())
        return a


def _tiny_model():
    from vla_engine.config.presets import load_preset
    from vla_engine.models import VLAModel

    torch.manual_seed(0)
    return VLAModel(load_preset("quickstart").model.replace(state_dim=2, image_size=48))


def test_dagger_aggregates_expert_labels_of_visited_states(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from vla_engine.envs import make_env, make_expert

    env = make_env("reach", image_size=48)
    expert = RecordingExpert(make_expert(env))
    cfg = ILConfig(beta_schedule="linear", num_iterations=2, rollouts_per_iteration=3, max_steps=20,
                   batch_size=16, warmup_steps=0, learning_rate=1e-3, log_every=5, num_threads=1,
                   eval_episodes_per_iteration=2)
    trainer = DAgger(_tiny_model(), env, expert, cfg, run_dir=tmp_path / "run", progress=False)
    res = trainer.train()
    assert res.state == "done" and res.iterations == 2
    h = res.history
    # linear: the expert alone acts first, the learner alone last; every visited state got a label
    assert h[0]["dagger/beta"] == 1.0 and h[0]["dagger/learner_action_share"] == 0.0
    assert h[1]["dagger/beta"] == 0.0 and h[1]["dagger/learner_action_share"] == 1.0
    assert h[1]["dagger/expert_labels"] > h[0]["dagger/expert_labels"] > 0
    assert res.expert_labels == len(expert.labels)

    # on disk: a LeRobot v3 dataset that lerobot opens, holding exactly the visited states and labels
    ds = LeRobotDataset("local/dagger", root=res.dataset_dir)
    assert ds.meta.total_episodes == 6 and ds.num_frames == len(expert.labels)
    actions = np.stack([ds[i]["action"].numpy() for i in range(len(ds))])
    states = np.stack([ds[i]["observation.state"].numpy() for i in range(len(ds))])
    np.testing.assert_allclose(actions, np.stack(expert.labels), atol=1e-6)
    np.testing.assert_allclose(states, np.stack(expert.states), atol=1e-6)
    side = json.loads((res.dataset_dir / "meta" / "vla_engine.json").read_text())
    assert [it["beta"] for it in side["iterations"]] == [1.0, 0.0]
    assert sum(it["frames"] for it in side["iterations"]) == len(expert.labels)

    # the run folder: per-iteration rows (labels, success, the learner's success) and a checkpoint each
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    it_rows = [r for r in rows if "dagger/expert_labels" in r]
    assert [r["dagger/iteration"] for r in it_rows] == [1, 2]
    assert all("dagger/learner_success_rate" in r and "dagger/rollout_success_rate" in r for r in it_rows)
    fit_rows = [r for r in rows if "train/loss" in r]  # each fit's loss rows stream into the run as they come
    assert fit_rows and all("dagger/iteration" in r for r in fit_rows)
    assert any("train/loss" in r for r in rows)
    assert res.checkpoint is not None and (res.checkpoint / "model.safetensors").exists()

    # rollout_max_steps cuts the data rollouts (not the learner's evaluation episodes)
    short = DAgger(_tiny_model(), env, make_expert(env), cfg.replace(num_iterations=1, rollout_max_steps=3),
                   run_dir=tmp_path / "short", progress=False).train()
    ds = LeRobotDataset("local/dagger", root=short.dataset_dir)
    assert ds.meta.total_episodes == 3 and ds.num_frames <= 9 and short.expert_labels == ds.num_frames


def test_dagger_job_runs_from_the_preset(tmp_path, monkeypatch):
    from vla_engine.config.presets import load_preset_dict
    from vla_engine.runs.jobs import run_job
    from vla_engine.runs.run_dir import RunDir

    monkeypatch.chdir(tmp_path)
    cfg = load_preset_dict("il-dagger", [
        "dataset.task=reach", "dataset.root=null", "eval.task=reach", "model.image_size=48",
        "dataset.image_size=48", "training.num_iterations=2", "training.rollouts_per_iteration=2",
        "training.max_steps=10", "training.batch_size=16", "training.eval_episodes_per_iteration=1",
        "training.num_threads=1", "eval.episodes=2", "eval.num_videos=1"])
    run = RunDir.create(tmp_path / "runs", "dagger", {**cfg, "job": "train"})
    assert run_job(run.path, progress=False) == 0, run.tail_log()
    st = run.read_status()
    assert st.state == "done", st
    out = st.to_dict()["result"]
    assert out["iterations"] == 2 and out["expert_labels"] > 0 and "eval/success_rate" in out["eval"]
    assert (run.path / "dataset" / "meta" / "info.json").exists()
    assert list(run.videos_dir.glob("*.mp4"))
