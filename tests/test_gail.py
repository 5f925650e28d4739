"""GAIL: the discriminator (with its gradient penalty) separates expert from random pairs; the PPO trainer
receives the discriminator's reward, not the env's; a run writes the discriminator's and PPO's curves and
checkpoints; `vla train il-gail` runs as a job."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("minari")

from vla_engine.config.training_config import ILConfig  # noqa: E402
from vla_engine.data.minari_io import collect_minari  # noqa: E402
from vla_engine.train.il.gail import GAIL, Discriminator, discriminator_loss, load_expert_pairs  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_bc_datasets import _swing_up  # noqa: E402

ENV = "Pendulum-v1"


@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    collect_minari(ENV, _swing_up, "vla/pendulum/expert-v0", 10, root=root)
    return root


def _random_pairs(n: int = 2000):
    env = gym.make(ENV)
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    s, a = [], []
    for _ in range(n):
        act = env.action_space.sample()
        s.append(obs)
        a.append(act)
        obs, _, term, trunc, _ = env.step(act)
        if term or trunc:
            obs, _ = env.reset()
    return np.asarray(s, np.float32), np.asarray(a, np.float32)


@pytest.mark.parametrize("gp_weight", [0.0, 10.0])
def test_discriminator_separates_expert_from_random(expert, gp_weight):
    torch.manual_seed(0)
    es, ea, ret = load_expert_pairs("vla/pendulum/expert-v0", 10, root=expert)
    assert len(es) == 10 * 200 and ret > -400  # the swing-up expert's return
    rs, ra = _random_pairs()
    disc = Discriminator(3, 1, [64, 64], es.mean(0), es.std(0))
    opt = torch.optim.Adam(disc.parameters(), 1e-3)
    ex, px = disc.inputs(torch.tensor(es), torch.tensor(ea)), disc.inputs(torch.tensor(rs), torch.tensor(ra))
    for _ in range(300):
        eb, pb = torch.randint(0, len(ex), (128,)), torch.randint(0, len(px), (128,))
        loss, m = discriminator_loss(disc, ex[eb], px[pb], gp_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (m["gail/grad_penalty"] > 0) == (gp_weight > 0)
    with torch.no_grad():
        e_acc, p_acc = (disc(ex) > 0).float().mean(), (disc(px) < 0).float().mean()
    assert e_acc > 0.8 and p_acc > 0.8
    # the reward -log(1 - D) is higher on expert pairs than on random ones
    assert disc.reward(torch.tensor(es), torch.tensor(ea)).mean() > disc.reward(torch.tensor(rs), torch.tensor(ra)).mean()


def test_gail_trains_ppo_on_the_discriminator_reward(expert, tmp_path):
    cfg = ILConfig(algorithm="gail", total_timesteps=2048, num_envs=4, steps_per_update=128, batch_size=128,
                   num_threads=1, save_every=1)
    g = GAIL(ENV, "vla/pendulum/expert-v0", cfg, expert_root=expert, run_dir=tmp_path / "run", progress=False)
    # what the runner hands PPO is the discriminator's reward of the pairs it saw, not the env's
    obs = g.runner.reset(seed=0)
    raw = g.runner._raw.copy()
    act = torch.zeros(4, 1)
    _, r, *_ = g.runner.step(act)
    want = g.disc.reward(torch.as_tensor(raw), act).numpy()
    np.testing.assert_allclose(r, want, rtol=1e-5)
    assert (r > 0).all()  # softplus: positive, unlike Pendulum's own (negative) reward
    g._states, g._actions, g._env_steps = [], [], 0

    out = g.train()
    assert out["state"] == "done" and out["step"] == 2048 and out["expert_return"] > -400
    assert len(g.disc_history) == 2048 // (4 * 128)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("gail/expert_acc" in r and "gail/grad_penalty" in r for r in rows)
    assert any("charts/episodic_return" in r for r in rows) and any("losses/policy_loss" in r for r in rows)
    assert out["checkpoint"] and (Path(out["checkpoint"]) / "model.safetensors").exists()


def test_gail_job_from_the_preset(expert, tmp_path, monkeypatch):
    from vla_engine.config.presets import load_preset_dict
    from vla_engine.runs.jobs import run_job
    from vla_engine.runs.run_dir import RunDir

    monkeypatch.chdir(tmp_path)
    cfg = load_preset_dict("il-gail", [
        f"dataset.task=gym/{ENV}", f"eval.task=gym/{ENV}", f"training.expert_dataset={expert}/vla/pendulum/expert-v0",
        "training.total_timesteps=1024", "training.num_envs=2", "training.steps_per_update=256",
        "training.num_threads=1", "eval.episodes=2", "eval.num_videos=0"])
    run = RunDir.create(tmp_path / "runs", "gail", {**cfg, "job": "train"})
    assert run_job(run.path, progress=False) == 0, run.tail_log()
    st = run.read_status()
    assert st.state == "done", st
    assert "eval/success_rate" in st.to_dict()["eval"]

    bad = load_preset_dict("il-gail", [f"dataset.task=gym/{ENV}", f"eval.task=gym/{ENV}",
                                       "training.expert_dataset=nowhere/none-v0"])
    run = RunDir.create(tmp_path / "runs", "gail-bad", {**bad, "job": "train"})
    assert run_job(run.path, progress=False) == 1
    assert "minari_io" in run.read_status().error


def test_gail_with_the_vla_on_push_from_the_preset(tmp_path, monkeypatch):
    """`vla train il-gail-push` with a tiny VLA: expert features from the demonstrations, the discriminator trained
    on them against the policy's, PPO on its reward, a VLA checkpoint that `vla eval` loads, the evaluation."""
    from vla_engine.config.presets import load_preset_dict
    from vla_engine.models import VLAModel
    from vla_engine.runs.jobs import run_job
    from vla_engine.runs.run_dir import RunDir

    monkeypatch.chdir(tmp_path)
    cfg = load_preset_dict("il-gail-push", [
        f"dataset.root={tmp_path / 'push'}", "dataset.episodes=3", "dataset.image_size=32", "model.image_size=32",
        "model.vision.dim=16", "model.llm_hidden_size=32", "model.llm_num_heads=2", "model.llm_intermediate_size=64",
        "training.init_from=", "training.total_timesteps=48", "training.num_envs=2", "training.steps_per_update=12",
        "training.batch_size=16", "training.discriminator_steps=2", "eval.episodes=1", "eval.num_videos=0",
        "eval.max_episode_steps=5"])
    run = RunDir.create(tmp_path / "runs", "gail-vla", {**cfg, "job": "train"})
    assert run_job(run.path, progress=False) == 0, run.tail_log()
    st = run.read_status()
    assert st.state == "done" and "eval/success_rate" in st.to_dict()["eval"], st
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    disc = [r for r in rows if "gail/expert_acc" in r]
    assert len(disc) == 2 and all(np.isfinite(r["gail/disc_loss"]) for r in disc)  # one D update per rollout
    assert any("losses/value_loss" in r for r in rows)  # PPO updated on the discriminator's reward
    VLAModel.from_pretrained(RunDir(run.path).last_checkpoint())  # the policy saves as a VLA
