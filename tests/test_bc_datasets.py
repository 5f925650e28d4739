"""Offline BC datasets over Minari: written with minari's DataCollector, read back by our loader and by
minari.load_dataset; filtered and weighted datasets select and weight as specified."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("minari")

from vla_engine.data.bc_datasets import (  # noqa: E402
    BCDataset,
    FilteredBCDataset,
    WeightedBCDataset,
    create_bc_dataloader,
    normalized_score,
)
from vla_engine.data.lerobot_io import DatasetError  # noqa: E402
from vla_engine.data.minari_io import collect_minari, make_level_datasets, rollout_returns  # noqa: E402

ENV = "Pendulum-v1"  # a fast state-based gymnasium task (200 steps, no MuJoCo)


def _swing_up(obs):
    """Energy pumping blended smoothly into a PD catch near the top (smooth, so an MLP can clone it):
    mean return about -130 on Pendulum against about -1150 for random torques."""
    c, s, w = (float(x) for x in obs)
    pd = -(12.0 * np.arctan2(s, c) + 2.5 * w)  # hold upright
    energy = 0.5 * w * w + 15.0 * c  # 15 at the upright rest
    pump = 2.0 * np.tanh(2.0 * w) * np.tanh((15.0 - energy) / 2.0)
    near_top = 1.0 / (1.0 + np.exp(-40.0 * (c - 0.85)))
    return np.array([np.clip(near_top * pd + (1 - near_top) * pump, -2.0, 2.0)], dtype=np.float32)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    ids = make_level_datasets(ENV, {"expert": _swing_up}, episodes=6, root=root, levels=("random", "expert", "mixed"))
    return root, ids


def test_datacollector_dataset_reads_back_through_ours_and_minari(root, monkeypatch):
    import minari

    root, ids = root
    ours = BCDataset(ids["expert"], root=root)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    theirs = minari.load_dataset(ids["expert"])
    assert theirs.total_episodes == 6 == ours.num_episodes
    assert len(ours) == theirs.total_steps == 6 * 200
    first = next(theirs.iterate_episodes())
    np.testing.assert_allclose(ours.observations[:200], first.observations[:-1], rtol=1e-6)
    np.testing.assert_allclose(ours.actions[:200], first.actions, rtol=1e-6)
    assert ours.state_dim == 3 and ours.action_dim == 1
    # by path too, and the same episode returns as the rewards minari stored
    by_path = BCDataset(root / ids["expert"])
    assert len(BCDataset(env_name="pendulum-expert-v2", root=root)) == len(ours)  # the seed's D4RL-style name
    np.testing.assert_allclose(by_path.episode_returns[0], first.rewards.sum(), rtol=1e-5)
    # reference scores: random = 0, expert = 100, also through minari's own helper
    assert ours.ref_min_score < ours.ref_max_score
    np.testing.assert_allclose(ours.normalized_score([ours.ref_min_score, ours.ref_max_score]), [0.0, 100.0])
    np.testing.assert_allclose(100 * minari.get_normalized_score(theirs, np.array(ours.ref_max_score)), 100.0)


def test_batches_have_lerobot_keys(root):
    root, ids = root
    ds = BCDataset(ids["mixed"], root=root)
    loader = create_bc_dataloader(ds, batch_size=32, weighted_sampling=False, seed=0)
    batch = next(iter(loader))
    assert batch["observation.state"].shape == (32, 3) and batch["action"].shape == (32, 1)
    assert len(loader) == len(ds) // 32
    assert set(ds.stats) == {"observation.state", "action"}


def test_filtered_keeps_top_episodes_by_return(root):
    root, ids = root
    full = BCDataset(ids["mixed"], root=root)
    top = FilteredBCDataset(ids["mixed"], root=root, top_percent=34)
    k = int(np.ceil(full.num_episodes * 0.34))
    best = np.sort(np.argsort(-full.episode_returns)[:k])
    np.testing.assert_array_equal(top.episodes, best)
    assert len(top) == full.episode_lengths[best].sum()
    assert top.episode_returns[top.episode_index].min() >= np.sort(full.episode_returns)[-k]
    # the seed's fraction keyword is the same selection
    np.testing.assert_array_equal(FilteredBCDataset(ids["mixed"], root=root, filter_top_k=0.34).episodes, best)
    thr = float(np.median(full.episode_returns))
    by_thr = FilteredBCDataset(ids["mixed"], root=root, return_threshold=thr)
    np.testing.assert_array_equal(by_thr.episodes, np.nonzero(full.episode_returns >= thr)[0])
    with pytest.raises(DatasetError, match="lower return_threshold"):
        FilteredBCDataset(ids["mixed"], root=root, return_threshold=1e9)


def test_weighted_by_return_and_advantage(root):
    root, ids = root
    ds = WeightedBCDataset(ids["mixed"], root=root, weighting="return", temperature=1.0)
    r = ds.episode_returns
    expect = np.exp((r - r.max()) / r.std())[ds.episode_index]
    np.testing.assert_allclose(ds.weights, expect / expect.mean(), rtol=1e-6)
    best, worst = np.argmax(r), np.argmin(r)
    assert ds.weights[ds.episode_index == best][0] > ds.weights[ds.episode_index == worst][0]
    # a lower temperature concentrates the weight on the best episode
    cold = WeightedBCDataset(ids["mixed"], root=root, weighting="return", temperature=0.2)
    assert cold.weights[cold.episode_index == best].sum() > ds.weights[ds.episode_index == best].sum()
    adv = WeightedBCDataset(ids["mixed"], root=root, weighting="advantage", temperature=1.0, max_weight=20.0)
    assert np.isclose(adv.weights.mean(), 1.0) and adv.weights.max() <= 20.0 / adv.weights.mean() * 20.0
    # steps of the best episodes are drawn more often by the weighted sampler
    loader = create_bc_dataloader(ds, batch_size=256, weighted_sampling=True, seed=0)
    assert type(loader.sampler).__name__ == "WeightedRandomSampler"
    batch = next(iter(loader))
    assert "weight" in batch and batch["weight"].mean() > 1.0
    with pytest.raises(DatasetError, match="choose one of"):
        WeightedBCDataset(ids["mixed"], root=root, weighting="rank")


def test_bc_trains_on_a_minari_dataset(root):
    import torch

    from vla_engine.config.training_config import ILConfig
    from vla_engine.train.il.bc import BehavioralCloning
    from vla_engine.train.il.policies import StateMLPPolicy

    root, ids = root
    ref = BCDataset(ids["expert"], root=root)
    # 50 expert episodes (10k steps): enough states near the upright catch for a clone that holds it
    collect_minari(ENV, _swing_up, "vla/pendulum/expert50-v0", 50, root=root, seed=100,
                   ref_min_score=ref.ref_min_score, ref_max_score=ref.ref_max_score)
    ds = BCDataset("vla/pendulum/expert50-v0", root=root)
    torch.manual_seed(0)
    policy = StateMLPPolicy(state_dim=ds.state_dim, action_dim=ds.action_dim, hidden_sizes=[128, 128])
    loader = create_bc_dataloader(ds, batch_size=64, weighted_sampling=False, seed=0)
    res = BehavioralCloning(policy, ILConfig(learning_rate=3e-3, max_steps=3000, warmup_steps=0, log_every=100,
                                     num_threads=1),
                            progress=False).train(loader)
    assert res.final_loss < 0.1 * res.first_loss
    # the cloned policy acts: its D4RL-style normalised score on fresh seeds is near the expert's (100)
    returns = rollout_returns(ENV, policy.as_callable(), 5, seed=500)
    assert ds.normalized_score(returns).mean() > 75.0


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="minari_io"):
        BCDataset("nope/none-v0", root=tmp_path)
    with pytest.raises(DatasetError, match="reference scores"):
        normalized_score([1.0], None, 10.0)
    collect_minari(ENV, lambda o: np.zeros(1, np.float32), "test/zeros-v0", 1, root=tmp_path)
    with pytest.raises(DatasetError, match="already exists"):
        collect_minari(ENV, lambda o: np.zeros(1, np.float32), "test/zeros-v0", 1, root=tmp_path)
    with pytest.raises(DatasetError, match="namespace/name-v0"):
        collect_minari(ENV, lambda o: np.zeros(1, np.float32), "x/y", 1, root=tmp_path)


def test_rl_expert_actions_are_clipped_to_the_action_bounds(tmp_path):
    """A PPO checkpoint's Gaussian mean is unbounded; minari_io records the action the env executes."""
    import torch

    from vla_engine.config.training_config import RLConfig
    from vla_engine.data.minari_io import load_policy
    from vla_engine.train.rl.policies import build_policy

    policy = build_policy("ppo", 3, 2, [-1.0, -0.5], [1.0, 0.5], RLConfig(algorithm="ppo"))
    with torch.no_grad():
        policy.actor_mean[-1].bias.copy_(torch.tensor([5.0, -5.0]))  # a mean far outside the bounds
    policy.save_pretrained(tmp_path / "ppo")
    act = load_policy(str(tmp_path / "ppo"))(np.zeros(3, np.float32))
    assert act.tolist() == [1.0, -0.5]
