"""PPO on a state-based gymnasium task, GAE against a hand computation, the vector-env runner."""

import numpy as np
import pytest
import torch

from vla_engine.config.training_config import RLConfig


def test_gae_matches_hand_computation():
    from vla_engine.train.rl.buffers import compute_gae

    gamma, lam = 0.9, 0.8
    # one env, 3 steps; the observation of step 2 starts a new episode (dones[2] = 1)
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [1.5]])
    dones = torch.tensor([[0.0], [0.0], [1.0]])
    last_value, last_done = torch.tensor([2.0]), torch.tensor([0.0])
    adv, ret = compute_gae(rewards, values, dones, last_value, last_done, gamma, lam)
    d2 = 3.0 + gamma * 2.0 - 1.5  # bootstraps from the value after the rollout
    d1 = 2.0 - 1.0  # step 1 ends its episode: no bootstrap
    d0 = 1.0 + gamma * 1.0 - 0.5
    a2, a1 = d2, d1
    a0 = d0 + gamma * lam * a1
    assert torch.allclose(adv[:, 0], torch.tensor([a0, a1, a2]))
    assert torch.allclose(ret, adv + values)


def test_flat_parameters_train_like_separate_ones_and_checkpoints_round_trip(tmp_path):
    from vla_engine.train.rl.common import flatten_parameters
    from vla_engine.train.rl.policies import MLPActorCritic, RLPolicyConfig, load_rl_policy

    torch.manual_seed(0)
    cfg = RLPolicyConfig(kind="ppo", state_dim=5, action_dim=2, hidden_sizes=[16, 16])
    ref, flat_pol = MLPActorCritic(cfg), MLPActorCritic(cfg)
    flat_pol.load_state_dict(ref.state_dict())
    flat = flatten_parameters(list(flat_pol.parameters()))
    assert all(p.data_ptr() >= flat.data_ptr() for p in flat_pol.parameters())  # views of the flat tensor
    opt_ref = torch.optim.Adam(ref.parameters(), lr=1e-2)
    opt_flat = torch.optim.Adam([flat], lr=1e-2)
    x, a = torch.randn(8, 5), torch.randn(8, 2)
    for _ in range(3):  # the same Adam steps with the clip, through the flat gradient buffer
        opt_ref.zero_grad()
        flat.grad.zero_()
        for pol in (ref, flat_pol):
            logp, ent, v = pol.evaluate(x, a)
            (-(logp.mean()) + v.pow(2).mean() - 0.01 * ent.mean()).backward()
        torch.nn.utils.clip_grad_norm_(list(ref.parameters()), 0.5)
        torch.nn.utils.clip_grad_norm_([flat], 0.5)
        opt_ref.step()
        opt_flat.step()
    for (k, p_ref), p_flat in zip(ref.state_dict().items(), flat_pol.state_dict().values()):
        assert torch.allclose(p_ref, p_flat, atol=1e-6), k
    # a checkpoint of flattened weights saves (copies), loads as a policy, and resumes in place
    flat_pol.save_pretrained(tmp_path / "ckpt")
    loaded = load_rl_policy(tmp_path / "ckpt")
    assert torch.allclose(loaded.value(x), flat_pol.value(x))
    with torch.no_grad():
        flat.zero_()
    flat_pol.load_state_for_resume(tmp_path / "ckpt")
    assert torch.allclose(flat_pol.value(x), ref.value(x), atol=1e-6) and flat.abs().sum() > 0
    # an optimiser state saved per tensor (runs from before the flat layout) loads into the flat optimiser
    from vla_engine.train.rl.common import _as_flat_adam_state

    opt_flat.load_state_dict(_as_flat_adam_state(opt_ref.state_dict(), opt_flat))
    merged = opt_flat.state_dict()["state"][0]["exp_avg"]
    assert torch.allclose(merged, torch.cat([opt_ref.state[p]["exp_avg"].reshape(-1) for p in ref.parameters()]))


def test_batched_vec_env_autoresets_and_reports_episodes():
    from vla_engine.train.rl.vec_env import make_vec_env

    venv = make_vec_env("gym/InvertedPendulum-v5", 3, max_episode_steps=20)
    obs = venv.reset(seed=0)
    assert obs.shape == (3, 4) and obs.dtype == np.float32
    finished = []
    for _ in range(20):
        obs, r, term, trunc, final, eps = venv.step(np.zeros((3, 1), np.float32))
        finished += eps
        for i in final:
            assert term[i] or trunc[i]
    assert len(finished) >= 3  # every env ended at least once within its 20-step limit
    assert all(e.length <= 20 and e.episodic_return > 0 for e in finished)
    venv.close()


def test_ppo_solves_inverted_pendulum(tmp_path):
    from vla_engine.train.rl.ppo import PPOTrainer, evaluate_returns

    cfg = RLConfig(algorithm="ppo", num_envs=4, steps_per_update=256, num_minibatches=8, update_epochs=10,
                   learning_rate=1e-3, entropy_coef=0.0, total_timesteps=30_000, seed=0)
    trainer = PPOTrainer(None, "gym/InvertedPendulum-v5", cfg, progress=False)
    out = trainer.train()
    hist = [h["charts/episodic_return"] for h in out["history"] if "charts/episodic_return" in h]
    assert hist[-1] > 5 * hist[0]  # the return went up
    returns = evaluate_returns(trainer.policy, "gym/InvertedPendulum-v5", episodes=3)
    assert returns.mean() >= 900
    # the checkpoint folder loads as a policy with the same actions (observation statistics included)
    from vla_engine.train.rl.policies import load_rl_policy

    trainer.policy.save_pretrained(tmp_path / "ckpt")
    loaded = load_rl_policy(tmp_path / "ckpt")
    s = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    assert torch.allclose(loaded.select_action(s), trainer.policy.select_action(s))
    assert bool(loaded.obs_rms.enabled) and loaded.obs_rms.count > 1000


def test_gym_tasks_register_with_meta_and_build_envs_the_evaluator_reads():
    from vla_engine.envs import make_env, task_info

    info = task_info("gym/Hopper-v5")
    assert (info["state_dim"], info["action_dim"], info["family"], info["has_expert"]) == (11, 3, "gym", False)
    assert info["state_based"] and info["gym_id"] == "Hopper-v5" and info["fps"] == 125
    env = make_env("gym/Reacher-v5", image_size=32, max_episode_steps=5)
    u = env.unwrapped
    assert (u.action_dim, u.instruction, u.task_name) == (2, "reach the target", "gym/Reacher-v5")
    obs, _ = env.reset(seed=0)
    assert obs["agent_pos"].shape == (10,) and obs["agent_pos"].dtype == np.float32
    frame = obs["pixels"]  # rendered when read
    assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8 and frame.std() > 0
    for _ in range(5):
        obs, r, term, trunc, info = env.step(np.zeros(2, np.float32))
    assert trunc and info["is_success"] in (True, False)
    env.close()
