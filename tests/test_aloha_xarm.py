"""ALOHA sim and xArm: tiny copies of the hub datasets read back in the workbench's keys; the aloha/* tasks on the
mujoco bindings (seeded object poses, the gripper mapping, gym-aloha's reward stages); xarm/lift refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from vla_engine.data import AlohaDataset, DatasetError, XArmDataset, write_hub_dataset
from vla_engine.data.hub_layout import HUB_SPECS


def _episode(spec, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    ep = {key: np.full((n, h, w, 3), 40 * seed + 20, np.uint8) for key, (h, w) in spec.cameras.items()}
    ep["observation.state"] = rng.normal(size=(n, spec.state_dim)).astype(np.float32)
    ep["action"] = rng.normal(size=(n, spec.action_dim)).astype(np.float32)
    if "next.reward" in spec.scalars:
        ep["next.reward"] = rng.uniform(size=n).astype(np.float32)
    return ep


def test_aloha_dataset_reads_the_hub_layout(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    repo = "lerobot/aloha_sim_transfer_cube_human"
    spec = HUB_SPECS[repo]
    eps = [_episode(spec, 3, 0), _episode(spec, 4, 1)]
    root = write_hub_dataset(repo, tmp_path / "aloha", eps)
    ref = LeRobotDataset(repo, root=root, video_backend="pyav")  # lerobot's reader opens it too
    assert tuple(ref.meta.features["observation.images.top"]["shape"]) == (480, 640, 3) and ref.fps == 50
    ds = AlohaDataset(repo, root=root, chunk_size=2)
    assert ds.image_keys == ["observation.images.top"] and (ds.state_dim, ds.action_dim) == (14, 14)
    item = ds[4]  # episode 1, frame 1
    assert tuple(item["observation.images.top"].shape) == (3, 480, 640)
    assert abs(float(item["observation.images.top"].mean()) - 60 / 255) < 0.02
    np.testing.assert_allclose(item["action"].numpy(), eps[1]["action"][1:3], rtol=1e-6)
    np.testing.assert_allclose(item["observation.state"].numpy(), eps[1]["observation.state"][1], rtol=1e-6)
    assert item["task"] == "Pick up the cube with the right arm and transfer it to the left arm."
    assert [bool(ds[i]["next.done"]) for i in range(len(ds))] == [False, False, True, False, False, False, True]
    assert len(AlohaDataset(repo, root=root, split="train[50%:]")) == 4


def test_xarm_datasets_map_the_camera_to_the_workbench_key(tmp_path):
    for repo, action_dim in (("lerobot/xarm_lift_medium", 4), ("lerobot/xarm_push_medium_image", 3)):
        spec = HUB_SPECS[repo]
        root = write_hub_dataset(repo, tmp_path / repo.split("/")[1], [_episode(spec, 5, 0), _episode(spec, 5, 2)])
        ds = XArmDataset(repo, root=root, split="train[:6]")
        assert len(ds) == 6 and ds.image_keys == ["observation.images.front"] and ds.action_dim == action_dim
        item = ds[5]
        assert tuple(item["observation.images.front"].shape) == (3, 84, 84) and item["action"].shape[-1] == action_dim
        assert "next.reward" in item and "next.done" in item
        assert XArmDataset(repo, root=root, image_keys=["observation.images.front"]).image_keys == \
            ["observation.images.front"]


def test_wrong_family_or_unknown_repo_is_one_line(tmp_path):
    with pytest.raises(DatasetError, match=r"^AlohaDataset reads the aloha_sim datasets, not 'lerobot/pusht'; "
                                           r"choose one of: lerobot/aloha_sim_insertion_human"):
        AlohaDataset("lerobot/pusht", root=tmp_path)
    with pytest.raises(DatasetError, match=r"^'lerobot/xarm_fly' is not a known hub simulation dataset"):
        XArmDataset("lerobot/xarm_fly", root=tmp_path)
    with pytest.raises(DatasetError, match="episode 0: 'observation.images.top' of .* must be uint8 \\(2, 480, 640, 3\\)"):
        write_hub_dataset("lerobot/aloha_sim_insertion_human", tmp_path / "bad",
                          [{"observation.images.top": np.zeros((2, 48, 64, 3), np.uint8),
                            "observation.state": np.zeros((2, 14)), "action": np.zeros((2, 14))}])


# -------------------------------------------------------------------------------- environments
def test_aloha_reward_stages_by_hand():
    from vla_engine.envs.aloha import stage_reward

    right = ("red_box", "vx300s_right/10_right_gripper_finger")
    left = ("red_box", "vx300s_left/10_left_gripper_finger")
    table = ("red_box", "table")
    assert stage_reward("transfer-cube", set()) == 0
    assert stage_reward("transfer-cube", {right, table}) == 1
    assert stage_reward("transfer-cube", {right}) == 2
    assert stage_reward("transfer-cube", {right, left, table}) == 3
    assert stage_reward("transfer-cube", {left}) == 4
    grip = {("red_peg", "vx300s_right/10_right_gripper_finger"), ("socket-2", "vx300s_left/10_left_gripper_finger")}
    assert stage_reward("insertion", grip | {("red_peg", "table")}) == 1
    assert stage_reward("insertion", grip) == 2
    assert stage_reward("insertion", grip | {("red_peg", "socket-3")}) == 3
    assert stage_reward("insertion", {("red_peg", "pin")}) == 4


@pytest.mark.parametrize("task", ["aloha/insertion", "aloha/transfer-cube"])
def test_aloha_task_runs_on_the_mujoco_bindings(task):
    pytest.importorskip("gym_aloha")
    from gym_aloha import constants
    from gym_aloha.utils import sample_box_pose, sample_insertion_pose

    from vla_engine.envs import make_env, task_info

    assert (task_info(task)["action_dim"], task_info(task)["fps"]) == (14, 50)
    env = make_env(task, image_size=64)
    obs, info = env.reset(seed=7)
    u = env.unwrapped
    objects = sample_box_pose(7) if task.endswith("cube") else np.concatenate(sample_insertion_pose(7))
    np.testing.assert_allclose(u.data.qpos[-len(objects):], objects, atol=1e-9)
    start = np.asarray(constants.START_ARM_POSE)
    want = np.concatenate([start[:6], [constants.normalize_puppet_gripper_position(start[6])],
                           start[8:14], [constants.normalize_puppet_gripper_position(start[14])]])
    np.testing.assert_allclose(obs["agent_pos"], want, atol=1e-6)
    assert obs["pixels"]["top"].shape == (64, 64, 3) and obs["pixels"]["top"].std() > 0
    assert info["instruction"] and not info["is_success"]
    hold = obs["agent_pos"].copy()
    for _ in range(20):  # commanding the start pose keeps the arms there (joint position control)
        obs, reward, terminated, truncated, info = env.step(hold)
    assert np.abs(obs["agent_pos"] - hold).max() < 0.05 and reward == 0.0 and not terminated
    opened = hold.copy()
    opened[[6, 13]] = 1.0  # open both grippers: the finger joints follow
    for _ in range(25):
        obs, *_ = env.step(opened)
    assert obs["agent_pos"][6] > hold[6] + 0.3 and obs["agent_pos"][13] > hold[13] + 0.3
    env.close()


def test_aloha_evaluation_writes_videos(tmp_path):
    """The evaluator plays a policy on aloha/* with the top camera in the batch and in the videos."""
    pytest.importorskip("gym_aloha")
    import torch

    from vla_engine.eval import evaluate_policy
    from vla_engine.models import VLAModel

    torch.manual_seed(0)
    policy = VLAModel(action_dim=14, state_dim=14, image_size=48, image_keys=["observation.images.top"])
    res = evaluate_policy(policy, "aloha/transfer-cube", episodes=1, num_videos=1, video_dir=tmp_path,
                          max_episode_steps=3, progress=False)
    assert res.episodes[0]["length"] == 3 and not res.episodes[0]["success"]
    assert len(res.videos) == 1 and (tmp_path / res.episodes[0]["video"]).stat().st_size > 0


def test_xarm_lift_is_refused_in_one_line():
    from vla_engine.envs import make_env, task_info
    from vla_engine.envs.xarm import XArmUnavailable, blockers

    assert task_info("xarm/lift")["action_dim"] == 4 and task_info("xarm/lift")["runnable"] is False
    with pytest.raises(XArmUnavailable) as e:
        make_env("xarm/lift")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("xarm/lift cannot run here: ")
    assert "separate environment" in msg and all(reason in msg for reason in blockers())
