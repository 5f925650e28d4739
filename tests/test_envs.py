"""The built-in tabletop tasks: registry, gymnasium API, determinism, instructions, experts."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede `import mujoco`

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from vla_engine.envs import make_env, make_expert, task_info
from vla_engine.registry import TASKS, RegistryError

TASK_NAMES = ["reach", "push", "pick-place"]
GYM_IDS = {
    "reach": "vla_engine/Reach-v0",
    "push": "vla_engine/Push-v0",
    "pick-place": "vla_engine/PickPlace-v0",
}
DIMS = {"reach": (2, 2, 50), "push": (2, 2, 100), "pick-place": (4, 4, 120)}


def _rollout_expert(env, seed: int, takeover_after: int = 0, rng=None) -> tuple[bool, int]:
    expert = make_expert(env)
    obs, info = env.reset(seed=seed)
    action = np.zeros(env.unwrapped.action_dim)
    for k in range(env.unwrapped.max_episode_steps):
        if k < takeover_after:  # someone else drives first (as a learner would in DAgger)
            action = np.clip(0.7 * action + 0.6 * rng.uniform(-1, 1, action.shape), -1, 1)
            a = action
        else:
            a = expert(obs)
            assert a.dtype == np.float32 and a.shape == (env.unwrapped.action_dim,)
            assert np.all(np.abs(a) <= 1.0)
        obs, reward, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            break
    return bool(info["is_success"]), k + 1


def test_import_does_not_load_mujoco():
    code = (
        "import sys, vla_engine.envs, gymnasium as gym; "
        "assert 'mujoco' not in sys.modules, 'mujoco imported'; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'vla_engine/Push-v0' in gym.registry; "
        "from vla_engine.registry import TASKS; TASKS.meta('push'); "
        "assert 'mujoco' not in sys.modules, 'mujoco imported by meta'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("task", TASK_NAMES)
def test_registry_meta(task):
    assert task in TASKS
    info = task_info(task)
    action_dim, state_dim, limit = DIMS[task]
    assert info["action_dim"] == action_dim
    assert info["state_dim"] == state_dim
    assert info["max_episode_steps"] == limit
    assert info["fps"] == 10
    assert info["gym_id"] == GYM_IDS[task]
    assert info["camera_names"] == ["front"]
    assert isinstance(info["description"], str) and info["description"]
    assert gym.spec(GYM_IDS[task]).max_episode_steps == limit


def test_unknown_task_is_one_line_error_listing_choices():
    for call in (lambda: make_env("pusht"), lambda: task_info("pusht")):
        with pytest.raises(RegistryError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and "pusht" in msg
        assert all(name in msg for name in TASK_NAMES)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_gymnasium_make_spaces_and_attributes(task):
    env = gym.make(GYM_IDS[task], render_mode="rgb_array")
    obs, info = env.reset(seed=3)
    u = env.unwrapped
    action_dim, state_dim, limit = DIMS[task]
    assert set(obs) == {"pixels", "agent_pos"}
    assert obs["pixels"].shape == (96, 96, 3) and obs["pixels"].dtype == np.uint8
    assert obs["agent_pos"].shape == (state_dim,) and obs["agent_pos"].dtype == np.float32
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (action_dim,)
    assert (u.task_name, u.fps, u.max_episode_steps) == (task, 10, limit)
    assert (u.action_dim, u.state_dim, u.camera_names) == (action_dim, state_dim, ["front"])
    assert isinstance(u.instruction, str) and info["instruction"] == u.instruction
    assert info["is_success"] is False
    frame = env.render()
    assert np.array_equal(frame, obs["pixels"])
    assert obs["pixels"].std() > 10  # a real picture, not a blank
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and np.isfinite(reward)
    assert {"is_success", "instruction"} <= set(info)
    s = u.get_privileged_state()
    assert set(s["block_pos"]) == {"red", "green", "blue"} and s["target"] in s["block_pos"]
    env.close()


def test_image_size_and_render_images_option():
    env = make_env("push", image_size=64)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (64, 64, 3)
    env = make_env("push", render_images=False)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (96, 96, 3) and not obs["pixels"].any()
    with pytest.raises(ValueError, match="image_size"):
        make_env("push", image_size=3)


@pytest.mark.parametrize("task", ["push", "pick-place"])
def test_same_seed_same_episode(task):
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (15, DIMS[task][0])).astype(np.float32)
    runs = []
    for _ in range(2):
        env = make_env(task)
        obs, info = env.reset(seed=7)
        traj = [(obs["pixels"], obs["agent_pos"], 0.0)]
        for a in actions:
            obs, r, term, trunc, info = env.step(a)
            traj.append((obs["pixels"], obs["agent_pos"], r))
        runs.append((info["instruction"], traj))
        env.close()
    assert runs[0][0] == runs[1][0]
    for (p0, s0, r0), (p1, s1, r1) in zip(runs[0][1], runs[1][1]):
        assert np.array_equal(p0, p1) and np.array_equal(s0, s1) and r0 == r1
    # the same env instance, reset again with the seed after other episodes: same first obs
    env = make_env(task)
    env.reset(seed=1)
    for a in actions:
        env.step(a)
    obs, _ = env.reset(seed=7)
    assert np.array_equal(obs["pixels"], runs[0][1][0][0])


@pytest.mark.parametrize("task", TASK_NAMES)
def test_different_seeds_different_layouts(task):
    env = make_env(task)
    firsts, layouts = [], []
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        firsts.append(obs["pixels"])
        s = env.unwrapped.get_privileged_state()
        layouts.append(np.concatenate([s["block_pos"][c] for c in ("red", "green", "blue")]))
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.allclose(layouts[i], layouts[j])
            assert not np.array_equal(firsts[i], firsts[j])


@pytest.mark.parametrize("task", TASK_NAMES)
def test_instructions_vary_and_name_the_target(task):
    env = make_env(task, render_images=False)
    texts, targets = set(), set()
    for seed in range(40):
        _, info = env.reset(seed=seed)
        text = info["instruction"]
        assert text == env.unwrapped.instruction
        assert info["target"] in text
        assert sum(c in text for c in ("red", "green", "blue")) == 1
        if task != "reach":
            assert info["goal"] in text
        texts.add(text.replace(info["target"], "<c>").replace(str(info["goal"]), "<z>"))
        targets.add(info["target"])
    assert len(texts) >= 4  # several phrasings
    assert targets == {"red", "green", "blue"}


def test_reset_options_pick_target_and_goal():
    env = make_env("push", render_images=False)
    _, info = env.reset(seed=0, options={"target": "blue", "goal": "left"})
    assert info["target"] == "blue" and info["goal"] == "left"
    assert "blue" in info["instruction"] and "left" in info["instruction"]
    with pytest.raises(ValueError, match="choose one of"):
        env.reset(seed=0, options={"target": "purple"})


@pytest.mark.parametrize("task", TASK_NAMES)
def test_expert_succeeds_on_40_seeds(task):
    env = make_env(task, render_images=False)
    results = [_rollout_expert(env, seed) for seed in range(40)]
    rate = np.mean([ok for ok, _ in results])
    assert rate >= 0.95, f"{task} expert success {rate:.2f}"
    assert all(n <= DIMS[task][2] for _, n in results)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_expert_takes_over_from_states_others_reached(task):
    env = make_env(task, render_images=False)
    rng = np.random.default_rng(1)
    ok = [_rollout_expert(env, 100 + s, takeover_after=12, rng=rng)[0] for s in range(15)]
    assert np.mean(ok) >= 0.85
    # an expert built on one env acts on another env of the same task
    other = make_env(task, render_images=False)
    other.reset(seed=5)
    a = make_expert(env).act(other)
    assert a.shape == (DIMS[task][0],) and a.dtype == np.float32


def test_expert_rejects_other_task():
    reach, push = make_env("reach", render_images=False), make_env("push", render_images=False)
    push.reset(seed=0)
    with pytest.raises(ValueError, match="push"):
        make_expert(reach).act(push)


def test_pick_place_suction_grasps_lifts_and_releases():
    env = make_env("pick-place", render_images=False)
    env.reset(seed=0, options={"target": "red"})
    u = env.unwrapped

    def state():
        return u.get_privileged_state()

    # grasp command far from any block: nothing attaches
    env.step(np.array([0, 0, 0, 1.0]))
    assert state()["held"] is None
    # go above the red block and down onto it (the expert's descent), then grasp
    expert = make_expert(env)
    for _ in range(40):
        if state()["block_dist"]["red"] < 0.004:
            break
        a = expert.act()
        a[3] = -1.0
        env.step(a)
    obs, *_ = env.step(np.array([0, 0, 0, 1.0]))
    assert state()["held"] == "red" and obs["agent_pos"][3] == 1.0
    z0 = state()["block_pos"]["red"][2]
    for _ in range(3):
        env.step(np.array([0, 0, 1.0, 1.0]))
    assert state()["block_pos"]["red"][2] > z0 + 0.04  # the block came up with the effector
    env.step(np.array([0, 0, 0, -1.0]))
    assert state()["held"] is None
    for _ in range(5):
        obs, *_ = env.step(np.array([0, 0, 0, -1.0]))
    assert state()["block_pos"]["red"][2] < 0.03 and obs["agent_pos"][3] == 0.0  # fell back


def test_time_limit_truncates_and_success_terminates():
    env = make_env("reach", render_images=False, max_episode_steps=5)
    env.reset(seed=0)
    for k in range(5):
        _, _, terminated, truncated, info = env.step(np.zeros(2))
    assert truncated and not terminated and not info["is_success"]
    env = make_env("reach", render_images=False)
    ok, n = _rollout_expert(env, seed=0)
    assert ok and n < env.unwrapped.max_episode_steps


def test_a_block_pushed_off_the_table_ends_the_episode_as_a_failure():
    env = make_env("push", render_images=False)
    env.reset(seed=0)
    u = env.unwrapped
    a = u._block_qadr["green"]
    u.data.qpos[a : a + 3] = [0.0, 0.3, 0.025]  # just past the table's far edge (half depth 0.25 m)
    for k in range(30):
        _, reward, terminated, truncated, info = env.step(np.zeros(2))
        if terminated:
            break
    assert terminated and not truncated and not info["is_success"] and info["off_table"] == ["green"]
    assert k < 10 and reward > -2.0  # ends as it falls, not after metres of fall
    _, info = env.reset(seed=0)
    assert info["off_table"] == []


def test_bad_action_is_one_line_error():
    env = make_env("push", render_images=False)
    env.reset(seed=0)
    with pytest.raises(ValueError) as e:
        env.step(np.zeros(4))
    assert "\n" not in str(e.value) and "2 numbers" in str(e.value)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0.0]))


def test_dense_reward_improves_as_the_expert_acts():
    env = make_env("push", render_images=False)
    expert = make_expert(env)
    obs, _ = env.reset(seed=2)
    rewards = []
    for _ in range(100):
        obs, r, terminated, truncated, _ = env.step(expert(obs))
        rewards.append(r)
        if terminated or truncated:
            break
    assert terminated and rewards[-1] > rewards[0]


@pytest.mark.parametrize("task", ["push", "pick-place"])
def test_plan_ahead_leaves_the_episode_untouched_and_matches_a_noise_free_rollout(task):
    """plan_ahead simulates the expert forward and puts the simulator back: an episode that plans at
    every step is the same episode, frame for frame; and the plan is what the expert then does."""
    expert = make_expert(make_env(task, render_images=False))

    def run(plan: bool):
        env = make_env(task, image_size=32)
        obs, _ = env.reset(seed=3)
        frames, actions, plans = [obs["pixels"]], [], []
        for _ in range(env.unwrapped.max_episode_steps):
            if plan:
                p, n = env.unwrapped.plan_ahead(expert.act, 6)
                assert 1 <= n <= 6 and not p[n:].any()
                plans.append(p[:n])
            a = expert.act(env)
            actions.append(a)
            obs, _, term, trunc, info = env.step(a)
            frames.append(obs["pixels"])
            if term or trunc:
                break
        return np.stack(frames), np.stack(actions), plans, info["is_success"]

    f0, a0, _, ok0 = run(False)
    f1, a1, plans, ok1 = run(True)
    assert ok0 and ok1 and np.array_equal(f0, f1) and np.array_equal(a0, a1)
    for t, p in enumerate(plans):  # no noise: the plan from t is the actions t, t+1, ... the expert took
        np.testing.assert_allclose(p, a1[t:t + len(p)], atol=1e-6)
    assert len(plans[-1]) == 1  # the last step ends the episode (success): the plan stops there
