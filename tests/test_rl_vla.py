"""The VLA as an RL actor: GRPO's group-relative advantages and reference KL, GRPO and PPO updates of a tiny
VLA on the push task (a Gaussian head, and a deterministic head with a learned std), and a checkpoint that
`vla eval` loads as a VLA."""

import pytest
import torch

from vla_engine.config.training_config import RLConfig


def tiny_vla(head: str = "gaussian"):
    from vla_engine.models import create_vla_model

    return create_vla_model("tiny", action_head=head, action_dim=2, state_dim=2, image_size=32).train()


def test_group_advantages_are_zero_mean_per_group_and_kl_is_zero_for_equal_policies():
    from vla_engine.train.rl.grpo import group_advantages, kl_to_reference

    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 3.0, 1.0, 2.0, 0.0])
    adv = group_advantages(scores, 4).reshape(3, 4)
    assert torch.allclose(adv.mean(1), torch.zeros(3), atol=1e-6)
    assert torch.allclose(adv[1], torch.zeros(4))  # a group that all scored the same teaches nothing
    assert adv[2].argmax() == 0 and adv[2].argmin() == 3  # the best episode of a group is pushed up most
    # batch scaling: one std for all groups, so a group of near-equal scores keeps near-zero advantages
    near = torch.tensor([1.0, 1.01, 1.02, 1.0, 0.0, 1.0, 0.0, 1.0])
    adv_g = group_advantages(near, 4, scale="group").reshape(2, 4)
    adv_b = group_advantages(near, 4, scale="batch").reshape(2, 4)
    assert adv_g[0].abs().max() > 1.0 and adv_b[0].abs().max() < 0.05
    assert torch.allclose(adv_b.mean(1), torch.zeros(2), atol=1e-6)
    assert torch.allclose(group_advantages(near, 4, scale="none"), near - near.reshape(2, 4).mean(1).repeat_interleave(4))
    logp = torch.randn(10)
    assert torch.allclose(kl_to_reference(logp, logp), torch.zeros(10))
    assert (kl_to_reference(logp, logp + 0.3) > 0).all()


@pytest.mark.parametrize("head", ["gaussian", "mlp"])
def test_grpo_iteration_on_push_with_a_tiny_vla(head, tmp_path):
    from vla_engine.train.rl.grpo import GRPOTrainer

    cfg = RLConfig(algorithm="grpo", num_envs=4, group_size=2, num_minibatches=2, update_epochs=1,
                   total_timesteps=1, learning_rate=1e-4, max_episode_steps=6, num_threads=1)
    trainer = GRPOTrainer(tiny_vla(head), "push", cfg, progress=False)
    exp = trainer.rollout_groups(0)
    assert exp["seeds"][0] == exp["seeds"][1] and exp["seeds"][1] != exp["seeds"][2]  # groups share a seed
    out = trainer.train()
    (row,) = out["history"]
    assert row["losses/kl_first"] == pytest.approx(0.0, abs=1e-6)  # the policy starts at the reference
    assert 0.0 <= row["charts/success_rate"] <= 1.0 and out["success_curve"] == [row["charts/success_rate"]]
    moved = any(not torch.equal(p, q) for p, q in zip(trainer.policy.parameters(), trainer.reference.parameters()))
    assert moved  # the update changed the actor, not the frozen reference
    # the checkpoint is a VLA folder: the evaluator's loader reads it back
    from vla_engine.models import VLAModel

    trainer.policy.save_pretrained(tmp_path / "ckpt")
    loaded = VLAModel.from_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "rl_heads.safetensors").exists()
    assert loaded.config.action_head == head


def test_log_std_init_sets_the_vla_actors_exploration():
    from vla_engine.train.rl.grpo import GRPOTrainer

    cfg = RLConfig(algorithm="grpo", num_envs=2, group_size=2, total_timesteps=1, max_episode_steps=4,
                   num_threads=1, log_std_init=-2.5)
    trainer = GRPOTrainer(tiny_vla("mlp"), "push", cfg, progress=False)
    assert torch.allclose(trainer.policy.log_std, torch.full_like(trainer.policy.log_std, -2.5))
    default = GRPOTrainer(tiny_vla("mlp"), "push", cfg.replace(log_std_init=None), progress=False)
    assert torch.allclose(default.policy.log_std.exp(), torch.full_like(default.policy.log_std, 0.3))


def test_ppo_with_the_vla_actor_and_value_warmup():
    from vla_engine.train.rl.ppo import PPOTrainer

    cfg = RLConfig(algorithm="ppo", num_envs=2, steps_per_update=8, num_minibatches=2, update_epochs=2,
                   total_timesteps=32, learning_rate=1e-3, max_episode_steps=6, value_warmup_updates=1,
                   num_threads=1)
    vla = tiny_vla("gaussian")
    trainer = PPOTrainer(vla, "push", cfg, progress=False)
    head_before = {k: v.clone() for k, v in vla.action_head.state_dict().items()}
    value_before = {k: v.clone() for k, v in trainer.policy.value_head.state_dict().items()}
    out = trainer.train()
    assert out["updates"] == 2 and len(out["history"]) == 2
    # update 1 was the value warm-up; update 2 moved the actor too
    assert any(not torch.equal(v, trainer.policy.value_head.state_dict()[k]) for k, v in value_before.items())
    assert any(not torch.equal(v, vla.action_head.state_dict()[k]) for k, v in head_before.items())
    assert "losses/value_loss" in out["history"][-1]


def test_grpo_replays_the_seeds_whose_group_failed():
    import numpy as np

    from vla_engine.train.rl.grpo import GRPOTrainer

    cfg = RLConfig(algorithm="grpo", num_envs=8, group_size=2, total_timesteps=1, max_episode_steps=4,
                   num_threads=1, replay_failed_seeds=2)
    t = GRPOTrainer(tiny_vla("mlp"), "push", cfg, progress=False)
    first = t.group_seeds(0)
    assert first == [0, 1, 2, 3]  # nothing queued yet: four fresh seeds
    # groups of seeds 0 and 2 had a failure, 1 and 3 all succeeded
    t.requeue([s for s in first for _ in range(2)], np.array([1, 0, 1, 1, 0, 0, 1, 1], bool))
    assert t.group_seeds(1) == [0, 2, 4, 5]  # the failed ones first (at most half), then fresh ones
    t.requeue([0, 0, 2, 2, 4, 4, 5, 5], np.array([0, 0, 1, 1, 1, 1, 1, 1], bool))
    assert t.group_seeds(2) == [0, 6, 7, 8]  # seed 0 failed again (2nd try); seed 2 is solved
    t.requeue([0, 0, 6, 6, 7, 7, 8, 8], np.zeros(8, bool))
    assert 0 not in t.group_seeds(3)  # seed 0 used up its two replays
