"""The runner's fast MuJoCo steps are gymnasium's own steps, bit for bit."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from vla_engine.train.rl.fast_mujoco import fast_step_for
from vla_engine.train.rl.vec_env import make_vec_env


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5"])
def test_fast_step_matches_gymnasium_step(env_id):
    ours, ref = gymnasium.make(env_id).unwrapped, gymnasium.make(env_id).unwrapped
    fast = fast_step_for(ours)
    assert fast is not None
    rng = np.random.default_rng(0)
    ours.reset(seed=1), ref.reset(seed=1)
    ends = 0
    for i in range(400):  # random actions: Hopper and Walker2d fall, so unhealthy ends are covered too
        a = rng.uniform(-1, 1, ours.action_space.shape)
        o1, r1, t1 = fast(a)
        o2, r2, t2, _, _ = ref.step(a)
        assert np.array_equal(o1, o2) and r1 == r2 and t1 == t2, (env_id, i)
        if t1:
            ends += 1
            ours.reset(seed=i), ref.reset(seed=i)
    assert ends > 0 or env_id == "HalfCheetah-v5"


def test_no_fast_step_where_it_would_differ():
    assert fast_step_for(gymnasium.make("Ant-v5").unwrapped) is None  # another env
    assert fast_step_for(gymnasium.make("Hopper-v5", render_mode="rgb_array").unwrapped) is None  # renders
    keep_x = gymnasium.make("Hopper-v5", exclude_current_positions_from_observation=False).unwrapped
    assert fast_step_for(keep_x) is None  # another observation


def test_runner_with_fast_steps_is_the_sync_vector_env():
    """Same seeds and actions: our runner (fast steps, same-step auto-reset) and gymnasium's SyncVectorEnv agree."""
    ours = make_vec_env("Hopper-v5", 2, max_episode_steps=50)
    ref = make_vec_env("Hopper-v5", 2, max_episode_steps=50, kind="sync")
    assert all(f is not None for f in ours._fast)
    o1, (o2, _) = ours.reset(seed=0), ref.reset(seed=0)
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(120):
        a = rng.uniform(-1, 1, (2, 3)).astype(np.float32)
        o1, r1, t1, tr1, _, eps = ours.step(a)
        o2, r2, t2, tr2, _ = ref.step(a)
        np.testing.assert_allclose(o1, o2, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(r1, r2, rtol=1e-6)
        assert (t1 == t2).all() and (tr1 == tr2).all()
        finished += len(eps)
    assert finished >= 2  # episodes ended (falls or the 50-step limit) and both reset alike
