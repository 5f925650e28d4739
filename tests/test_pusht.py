"""PushT: a tiny copy of lerobot/pusht in the hub's layout reads back (ours and lerobot's reader), HF split strings,
the missing-folder error; coverage against hand-computed overlaps and against gym-pusht's own; the pusht/push-t
task through the evaluator reports coverage and success."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vla_engine.data import DatasetError, PushTDataset, create_lerobot_dataloader, write_hub_dataset
from vla_engine.envs.pusht import GOAL_POSE, SUCCESS_COVERAGE, coverage, max_coverage, t_polygon

LENGTHS = (6, 4, 5)


def _frames(n: int, ep: int) -> np.ndarray:
    """Smooth frames (a shade per episode and step), so the lossy video codec returns them nearly unchanged."""
    base = np.linspace(0, 200, 96, dtype=np.float32)[None, :, None]
    return np.stack([np.broadcast_to(base + 10 * ep + 3 * t, (96, 96, 3)) for t in range(n)]).astype(np.uint8)


def _episodes(image_key: str = "observation.image") -> list[dict]:
    rng = np.random.default_rng(0)
    eps = []
    for ep, n in enumerate(LENGTHS):
        eps.append({image_key: _frames(n, ep), "observation.state": rng.uniform(0, 512, (n, 2)).astype(np.float32),
                    "action": rng.uniform(0, 512, (n, 2)).astype(np.float32),
                    "next.reward": np.linspace(0, 1, n).astype(np.float32), "next.success": np.arange(n) == n - 1})
    return eps


@pytest.fixture(scope="module")
def pusht_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub") / "lerobot" / "pusht"
    return write_hub_dataset("lerobot/pusht", root, _episodes()), _episodes()


def test_tiny_pusht_is_in_the_hub_layout(pusht_root):
    root, _ = pusht_root
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".vla_cache" not in p.parts)
    assert files == ["data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet",
                     "meta/info.json", "meta/stats.json", "meta/tasks.parquet",
                     "videos/observation.image/chunk-000/file-000.mp4"]
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10 and info["total_frames"] == sum(LENGTHS)
    feats = info["features"]
    assert feats["observation.image"]["dtype"] == "video" and feats["observation.image"]["shape"] == [96, 96, 3]
    assert feats["observation.state"]["shape"] == [2] and feats["action"]["shape"] == [2]
    for key, dtype in (("next.reward", "float32"), ("next.done", "bool"), ("next.success", "bool")):
        assert feats[key] == {"dtype": dtype, "shape": [1], "names": None}
    stats = json.loads((root / "meta" / "stats.json").read_text())
    assert stats["next.reward"]["max"] == [1.0] and stats["next.reward"]["count"] == [sum(LENGTHS)]


def test_lerobot_reads_the_tiny_pusht(pusht_root):
    """lerobot's own LeRobotDataset opens the folder: metadata, tasks, stats and every frame's columns."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, eps = pusht_root
    ds = LeRobotDataset("lerobot/pusht", root=root, video_backend="pyav")
    assert ds.num_episodes == len(LENGTHS) and ds.num_frames == sum(LENGTHS)
    assert list(ds.meta.tasks.index) == ["Push the T-shaped block onto the T-shaped target."]
    row = ds.hf_dataset[LENGTHS[0] + 1]  # episode 1, frame 1
    assert int(row["episode_index"]) == 1 and int(row["frame_index"]) == 1
    np.testing.assert_allclose(row["action"].numpy(), eps[1]["action"][1], rtol=1e-6)
    assert float(row["next.reward"]) == pytest.approx(eps[1]["next.reward"][1])
    assert bool(row["next.done"]) is False and bool(ds.hf_dataset[sum(LENGTHS) - 1]["next.done"]) is True
    assert float(ds.meta.stats["next.reward"]["max"][0]) == 1.0


def test_pusht_dataset_items_in_the_workbench_format(pusht_root):
    root, eps = pusht_root
    ds = PushTDataset(split="train", root=root, chunk_size=3)
    assert len(ds) == sum(LENGTHS) and ds.num_episodes == 3
    assert ds.image_keys == ["observation.images.front"] and ds.raw_image_keys == ["observation.image"]
    assert (ds.action_dim, ds.state_dim, ds.fps) == (2, 2, 10)
    item = ds[LENGTHS[0] + 2]  # episode 1, frame 2 of 4: the chunk runs one step past the end
    assert item["task"] == "Push the T-shaped block onto the T-shaped target."
    assert tuple(item["observation.images.front"].shape) == (3, 96, 96) and "observation.image" not in item
    np.testing.assert_allclose(item["observation.state"].numpy(), eps[1]["observation.state"][2], rtol=1e-6)
    np.testing.assert_allclose(item["action"][:2].numpy(), eps[1]["action"][2:4], rtol=1e-6)
    assert item["action_is_pad"].tolist() == [False, False, True]
    assert float(item["next.reward"]) == pytest.approx(eps[1]["next.reward"][2])
    want = eps[1]["observation.image"][2].astype(np.float32).transpose(2, 0, 1) / 255.0
    assert np.abs(item["observation.images.front"].numpy() - want).mean() < 0.03  # AV1 is lossy, not this lossy
    assert "observation.images.front" in ds.stats
    batch = next(iter(create_lerobot_dataloader(ds, batch_size=4, seed=0)))
    assert tuple(batch["observation.images.front"].shape) == (4, 3, 96, 96) and len(batch["task"]) == 4


def test_hf_split_strings(pusht_root):
    root, _ = pusht_root
    assert len(PushTDataset(split="train[:7]", root=root)) == 7
    assert len(PushTDataset(split="train[7:]", root=root)) == sum(LENGTHS) - 7
    tail = PushTDataset(split="train[60%:]", root=root)  # episodes: the last 40% of 3 is episode 2
    assert tail.episode_indices == [2] and len(tail) == LENGTHS[2]
    assert PushTDataset(split="train[:60%]", root=root).episode_indices == [0, 1]
    with pytest.raises(DatasetError, match="one split, 'train'"):
        PushTDataset(split="test", root=root)


def test_missing_folder_names_where_to_put_it(tmp_path):
    root = tmp_path / "nowhere" / "pusht"
    with pytest.raises(DatasetError) as e:
        PushTDataset(root=root)
    msg = str(e.value)
    assert "\n" not in msg and str(root) in msg
    assert f"huggingface-cli download lerobot/pusht --repo-type dataset --local-dir {root}" in msg
    assert not root.exists()


def test_a_different_dataset_is_refused(tmp_path):
    from vla_engine.data import write_dataset

    root = write_dataset(tmp_path / "push", [{"observation.images.front": np.zeros((3, 16, 16, 3), np.uint8),
                                              "observation.state": np.zeros((3, 4)), "action": np.zeros((3, 2)),
                                              "task": "push"}], repo_id="local/push")
    with pytest.raises(DatasetError, match=r"not in the layout of lerobot/pusht: no camera 'observation.image'; "
                                           r"'observation.state' is 4-D, not 2-D"):
        PushTDataset(root=root)


# -------------------------------------------------------------------------------- coverage
def test_coverage_against_hand_cases():
    """The T is a 120x30 bar over a 30x90 stem: area 6300."""
    assert t_polygon((0, 0, 0)).area == pytest.approx(6300.0)
    assert coverage(GOAL_POSE) == pytest.approx(1.0)
    # shifted 30 px along the bar: the bars overlap 90x30, the stems only touch -> 2700 / 6300
    assert coverage((30, 0, 0), (0, 0, 0)) == pytest.approx(2700 / 6300)
    # shifted 15 px along the bar: bars 105x30, stems 15x90 -> (3150 + 1350) / 6300
    assert coverage((15, 0, 0), (0, 0, 0)) == pytest.approx(4500 / 6300)
    # half a turn about the body origin (the middle of the bar's lower edge): the T lands below y = 0, no overlap
    assert coverage((0, 0, math.pi), (0, 0, 0)) == pytest.approx(0.0)
    assert coverage((0, 500, 0)) == 0.0
    assert max_coverage([(30, 0, 0), (15, 0, 0), (200, 0, 0)], (0, 0, 0)) == pytest.approx(4500 / 6300)


def test_coverage_matches_gym_pusht():
    pytest.importorskip("gym_pusht")
    from vla_engine.envs.pusht import PushTTaskEnv

    env = PushTTaskEnv(render_images=False)
    rng = np.random.default_rng(0)
    seen = []
    for ep in range(4):
        env.reset(seed=ep)
        for _ in range(10):
            _, _, _, _, info = env.step(rng.uniform(0, 512, 2))
            assert coverage(info["block_pose"], info["goal_pose"]) == pytest.approx(info["coverage"], abs=1e-9)
            seen.append(info["coverage"])
    env.close()
    assert max(seen) > 0  # some steps overlap the goal, so the comparison is not only 0 == 0


def test_pusht_task_success_and_evaluator_coverage():
    pytest.importorskip("gym_pusht")
    from vla_engine.envs import make_env, task_info

    info = task_info("pusht/push-t")
    assert (info["action_dim"], info["state_dim"], info["fps"], info["max_episode_steps"]) == (2, 2, 10, 300)
    env = make_env("pusht/push-t", image_size=64)
    obs, first = env.reset(seed=3)
    assert obs["pixels"].shape == (64, 64, 3) and obs["agent_pos"].dtype == np.float32
    assert first["instruction"] == "push the T-shaped block onto the target"
    inner = env.unwrapped._env
    inner.block.angle = GOAL_POSE[2]  # put the T on its target; the agent holds still
    inner.block.position = GOAL_POSE[:2]
    _, _, terminated, truncated, step = env.step(obs["agent_pos"])
    assert step["coverage"] >= SUCCESS_COVERAGE and step["is_success"] and terminated and not truncated
    assert env.unwrapped.episode_metrics(step) == {"coverage": pytest.approx(step["max_coverage"])}
    env.close()

    import torch

    from vla_engine.eval import evaluate_policy
    from vla_engine.models import VLAModel

    torch.manual_seed(0)
    policy = VLAModel(action_dim=2, state_dim=2, image_size=64)
    res = evaluate_policy(policy, "pusht/push-t", episodes=2, num_videos=0, max_episode_steps=4, progress=False)
    for row in res.episodes:
        assert 0.0 <= row["coverage"] <= 1.0 and row["success"] == (row["coverage"] >= SUCCESS_COVERAGE)
    assert res.summary["eval/coverage"] == pytest.approx(np.mean([r["coverage"] for r in res.episodes]))
