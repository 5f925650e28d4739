"""SAC learns Pendulum; the replay buffer samples uniformly and survives save/load; a SAC job saves its buffer."""

import numpy as np
import pytest

from vla_engine.config.training_config import RLConfig


def test_replay_buffer_uniform_wraps_and_round_trips(tmp_path):
    from vla_engine.train.rl.buffers import ReplayBuffer

    rb = ReplayBuffer(capacity=100, seed=0)
    for i in range(130):  # wraps: the first 30 are overwritten
        rb.add(np.full((1, 3), i), np.full((1, 2), -i), [i], np.full((1, 3), i + 1), [i % 7 == 0])
    assert len(rb) == 100 and rb.pos == 30
    assert set(rb.obs[:, 0].astype(int)) == set(range(30, 130))
    counts = np.bincount(rb.sample_indices(200_000), minlength=100)
    assert counts.min() > 1700 and counts.max() < 2300  # uniform: 2000 each, within sampling noise
    b = rb.sample(8)
    assert b["obs"].shape == (8, 3) and b["actions"].shape == (8, 2)
    assert np.allclose(b["next_obs"][:, 0].numpy(), b["obs"][:, 0].numpy() + 1)
    assert np.allclose(b["actions"][:, 0].numpy(), -b["obs"][:, 0].numpy())
    path = rb.save(tmp_path / "replay.npz")
    loaded = ReplayBuffer.load(path)
    assert len(loaded) == 100 and loaded.pos == 30 and loaded.capacity == 100
    for k in ("obs", "next_obs", "actions", "rewards", "dones"):
        assert np.array_equal(getattr(loaded, k), getattr(rb, k))
    # the sampler goes on where it was
    assert np.array_equal(loaded.sample_indices(16), rb.sample_indices(16))


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_sac_learns_pendulum(precision):
    """Also with the update's matmuls in bfloat16 (mixed_precision: bf16 applies to SAC on a CPU)."""
    from vla_engine.train.rl.ppo import evaluate_returns
    from vla_engine.train.rl.sac import SACTrainer

    cfg = RLConfig(algorithm="sac", num_envs=1, learning_starts=500, batch_size=64, total_timesteps=5000,
                   steps_per_update=500, normalize_observations=False, hidden_sizes=[64, 64], activation="relu",
                   learning_rate=2e-3, seed=1, mixed_precision=precision)
    trainer = SACTrainer(None, "Pendulum-v1", cfg, progress=False)
    out = trainer.train()
    alphas = [h["losses/alpha"] for h in out["history"]]
    assert alphas[-1] < alphas[0]  # the temperature adapted towards the target entropy
    returns = evaluate_returns(trainer.policy, "Pendulum-v1", episodes=5)
    assert returns.mean() > -400  # a random policy scores about -1200; swung up and held scores above -200


def test_sac_job_saves_the_buffer_and_resumes_with_it(tmp_path):
    from vla_engine.config.presets import load_preset
    from vla_engine.runs.run_dir import RunDir
    from vla_engine.runs.jobs import run_job
    from vla_engine.train.rl.buffers import ReplayBuffer

    cfg = load_preset("rl-sac-pendulum", ["training.total_timesteps=600", "training.learning_starts=200",
                                          "training.steps_per_update=200", "training.save_every=1",
                                          "eval.after_training=false"]).to_dict()
    run = RunDir.create(tmp_path / "runs", "sac", {"job": "train", **cfg})
    assert run_job(run.path, progress=False) == 0
    ckpt = run.last_checkpoint()
    assert ckpt.name == "step-600" and len(ReplayBuffer.load(ckpt / "replay.npz")) == 600
    cfg["training"]["total_timesteps"] = 1000
    run.write_config({"job": "train", **cfg})
    assert run_job(run.path, progress=False) == 0
    assert "resumed from step-600" in run.log_path.read_text()
    assert len(ReplayBuffer.load(run.last_checkpoint() / "replay.npz")) == 1000
