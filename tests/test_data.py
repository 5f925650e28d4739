"""The LeRobot v3 data path: our writer is read back by lerobot's own reader, our fast reader
matches lerobot's __getitem__ item for item, and broken datasets fail with one clear line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vla_engine.config.base import ConfigError
from vla_engine.config.dataset_config import DatasetConfig
from vla_engine.data import (
    DatasetError,
    DatasetExistsError,
    LeRobotVLADataset,
    PushTDataset,
    build_datasets,
    collate_batch,
    create_lerobot_dataloader,
    read_sidecar,
    write_dataset,
)

FPS = 10
H, W = 24, 32
LENGTHS = [7, 5, 9, 6]
TASKS = ["push the red block to the left", "push the blue block to the right"]


def _episodes(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    eps = []
    for k, n in enumerate(LENGTHS):
        eps.append(
            {
                "observation.images.front": rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8),
                "observation.state": rng.standard_normal((n, 4)).astype(np.float32),
                "action": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
                "task": TASKS[k % 2],
            }
        )
    return eps


SIDECAR = {"task": "push", "image_size": W, "seeds": [0, 1, 2, 3], "generator_version": "test"}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("data") / "tiny"
    eps = _episodes()
    write_dataset(root, eps, repo_id="local/tiny", fps=FPS, sidecar=SIDECAR)
    return root, eps


def _fresh_copy(written, tmp_path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(written[0], root, ignore=shutil.ignore_patterns(".vla_cache"))
    return root


def _assert_same_item(ours: dict, theirs: dict) -> None:
    assert set(ours) == set(theirs), set(ours) ^ set(theirs)
    for k, v in theirs.items():
        if isinstance(v, str):
            assert ours[k] == v, k
        else:
            assert ours[k].dtype == v.dtype and ours[k].shape == v.shape, (k, ours[k].shape, v.shape)
            assert torch.equal(ours[k], v), k


# -------------------------------------------------------------------------------- writer
def test_written_dataset_reads_back_with_lerobot(written):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, eps = written
    ds = LeRobotDataset("local/tiny", root=root, video_backend="pyav")
    assert ds.fps == FPS
    assert ds.num_episodes == len(LENGTHS)
    assert ds.num_frames == sum(LENGTHS)
    assert set(ds.meta.tasks.index) == set(TASKS)
    assert ds.meta.info["codebase_version"] == "v3.0"
    assert ds.meta.features["observation.images.front"]["dtype"] == "image"
    # every frame: pixels, state, action, task and episode bookkeeping equal what was written
    i = 0
    for e, ep in enumerate(eps):
        for t in range(len(ep["action"])):
            item = ds[i]
            img = (item["observation.images.front"] * 255).round().to(torch.uint8).permute(1, 2, 0)
            assert np.array_equal(img.numpy(), ep["observation.images.front"][t])
            assert np.array_equal(item["observation.state"].numpy(), ep["observation.state"][t])
            assert np.array_equal(item["action"].numpy(), ep["action"][t])
            assert item["task"] == ep["task"]
            assert int(item["episode_index"]) == e and int(item["frame_index"]) == t
            i += 1
    side = read_sidecar(root)
    assert side == SIDECAR
    assert not (root / "images").exists()  # lerobot's temporary PNG folders are cleaned up


def test_writer_refuses_non_empty_output(written, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "something.txt").write_text("keep me")
    with pytest.raises(DatasetExistsError, match="--overwrite") as e:
        write_dataset(out, _episodes()[:1], repo_id="local/x", fps=FPS)
    assert "\n" not in str(e.value)
    assert (out / "something.txt").read_text() == "keep me"
    write_dataset(out, _episodes()[:1], repo_id="local/x", fps=FPS, overwrite=True)
    assert not (out / "something.txt").exists() and (out / "meta" / "info.json").is_file()


# -------------------------------------------------------------------------------- reader
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(n_obs_steps=3, chunk_size=5),
        dict(n_obs_steps=2, chunk_size=4, episodes=[1, 3]),
    ],
    ids=["plain", "history+chunk", "episode-subset"],
)
def test_reader_matches_lerobot_getitem(written, kw):
    root, _ = written
    ds = LeRobotVLADataset("local/tiny", root=root, **kw)
    theirs = ds.lerobot  # lerobot's LeRobotDataset with the same delta_timestamps and episodes
    assert theirs.delta_timestamps == ds.delta_timestamps
    assert len(ds) == len(theirs)
    for i in range(len(ds)):
        _assert_same_item(ds[i], theirs[i])


def test_item_layout_and_pad_flags_at_episode_ends(written):
    root, eps = written
    ds = LeRobotVLADataset("local/tiny", root=root, n_obs_steps=3, chunk_size=4)
    start, end = ds.episode_bounds(0)
    assert (start, end) == (0, LENGTHS[0])
    first, last = ds[start], ds[end - 1]
    assert first["observation.images.front"].shape == (3, 3, H, W)
    assert first["observation.state"].shape == (3, 4)
    assert first["action"].shape == (4, 2) and first["action_is_pad"].dtype == torch.bool
    # history before the episode start: clamped to frame 0 and flagged
    assert first["observation.state_is_pad"].tolist() == [True, True, False]
    assert torch.equal(first["observation.state"][0], first["observation.state"][2])
    # chunk past the episode end: last action repeated and flagged
    assert last["action_is_pad"].tolist() == [False, True, True, True]
    expected_last = torch.from_numpy(eps[0]["action"][-1])
    assert all(torch.equal(last["action"][j], expected_last) for j in range(4))
    # the next episode's first frame never leaks into the chunk
    assert not torch.equal(last["action"][1], torch.from_numpy(eps[1]["action"][0]))
    # plain layout: no history axis, chunk axis kept
    plain = LeRobotVLADataset("local/tiny", root=root)[3]
    assert plain["observation.images.front"].shape == (3, H, W)
    assert plain["observation.state"].shape == (4,)
    assert plain["action"].shape == (1, 2) and plain["action_is_pad"].shape == (1,)
    assert 0.0 <= plain["observation.images.front"].min() and plain["observation.images.front"].max() <= 1.0


def test_properties_and_stats(written):
    root, eps = written
    ds = LeRobotVLADataset("local/tiny", root=root)
    assert ds.fps == FPS and ds.num_episodes == len(LENGTHS) and ds.num_frames == sum(LENGTHS)
    assert ds.action_dim == 2 and ds.state_dim == 4
    assert ds.image_keys == ["observation.images.front"]
    assert sorted(ds.tasks) == sorted(TASKS)
    assert ds.meta_info == SIDECAR
    stats = ds.stats
    for key in ("observation.images.front", "observation.state", "action"):
        assert set(stats[key]) == {"mean", "std", "min", "max"}
        assert all(v.dtype == torch.float32 for v in stats[key].values())
    assert stats["observation.images.front"]["mean"].shape == (3, 1, 1)
    all_actions = np.concatenate([e["action"] for e in eps])
    np.testing.assert_allclose(stats["action"]["mean"].numpy(), all_actions.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["action"]["max"].numpy(), all_actions.max(0), rtol=1e-6)


def test_dataloader_batches_match_items_and_are_reproducible(written):
    root, _ = written
    ds = LeRobotVLADataset("local/tiny", root=root, chunk_size=3)
    dl = create_lerobot_dataloader(ds, batch_size=8, shuffle=True, seed=3)
    batches = list(dl)
    assert len(batches) == sum(LENGTHS) // 8  # drop_last
    b = batches[0]
    assert b["observation.images.front"].shape == (8, 3, H, W)
    assert b["action"].shape == (8, 3, 2) and b["action_is_pad"].shape == (8, 3)
    assert isinstance(b["task"], list) and all(isinstance(t, str) for t in b["task"])
    # the batched fast path equals stacking single items
    stacked = collate_batch([ds[int(i)] for i in b["index"]])
    for k, v in stacked.items():
        assert v == b[k] if k == "task" else torch.equal(v, b[k]), k
    again = next(iter(create_lerobot_dataloader(ds, batch_size=8, shuffle=True, seed=3)))
    assert torch.equal(again["index"], b["index"])
    # a worker process gets the dataset by pickling (memory maps re-open there)
    dl1 = create_lerobot_dataloader(ds, batch_size=8, shuffle=False, num_workers=1)
    first = next(iter(dl1))
    assert first["index"].tolist() == list(range(8))
    # a dataset smaller than one batch still yields one
    tiny = LeRobotVLADataset("local/tiny", root=root, split="train[:5]")
    assert len(list(create_lerobot_dataloader(tiny, batch_size=64))) == 1


def test_frame_cache_is_reused_and_rebuilt_when_files_change(written, tmp_path):
    root = _fresh_copy(written, tmp_path)
    ds = LeRobotVLADataset("local/tiny", root=root)
    ds.build_cache()
    cache = ds._cache_path
    frames = cache / "observation.images.front.npy"
    assert cache.parent == root / ".vla_cache" and frames.is_file()
    assert np.load(frames, mmap_mode="r").shape == (sum(LENGTHS), H, W, 3)
    mtime = frames.stat().st_mtime_ns
    again = LeRobotVLADataset("local/tiny", root=root)
    again.build_cache()
    assert again._cache_path == cache and frames.stat().st_mtime_ns == mtime
    # regenerate different data at the same root: new fingerprint, old cache dropped, new frames
    eps = _episodes(seed=1)
    write_dataset(root, eps, repo_id="local/tiny", fps=FPS, overwrite=True)
    fresh = LeRobotVLADataset("local/tiny", root=root)
    assert fresh._cache_path != cache and not cache.exists()
    img = (fresh[0]["observation.images.front"] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(img, eps[0]["observation.images.front"][0])


def test_splits(written):
    root, _ = written
    assert len(LeRobotVLADataset("local/tiny", root=root, split="train[:10]")) == 10
    assert len(LeRobotVLADataset("local/tiny", root=root, split="train[10:]")) == sum(LENGTHS) - 10
    train = LeRobotVLADataset("local/tiny", root=root, split="train[:75%]")
    val = LeRobotVLADataset("local/tiny", root=root, split="train[75%:]")
    assert train.episode_indices == [0, 1, 2] and val.episode_indices == [3]
    assert len(train) + len(val) == sum(LENGTHS)
    with pytest.raises(DatasetError, match="split"):
        LeRobotVLADataset("local/tiny", root=root, split="test[:3")


def test_build_datasets_from_config(written, tmp_path):
    root = _fresh_copy(written, tmp_path)
    cfg = DatasetConfig(repo_id="local/tiny", root=str(root), task=None, val_fraction=0.25)
    train, val = build_datasets(cfg, chunk_size=2, progress=False)
    assert train.chunk_size == 2 and val is not None
    assert set(train.episode_indices).isdisjoint(val.episode_indices)


# -------------------------------------------------------------------------------- errors
def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_truncated_parquet_gives_one_clear_line(written, tmp_path):
    root = _fresh_copy(written, tmp_path)
    data = root / "data" / "chunk-000" / "file-000.parquet"
    blob = data.read_bytes()
    data.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError) as e:
        LeRobotVLADataset("local/tiny", root=root)
    msg = _one_line(e)
    assert str(data) in msg and "truncated" in msg
    assert "vla datagen --task push" in msg and "--overwrite" in msg


def test_missing_files_give_one_clear_line(written, tmp_path):
    with pytest.raises(DatasetError) as e:
        LeRobotVLADataset("local/nothing", root=tmp_path / "nowhere")
    assert "does not exist" in _one_line(e) and "vla datagen" in str(e.value)

    root = _fresh_copy(written, tmp_path)
    (root / "meta" / "tasks.parquet").unlink()
    with pytest.raises(DatasetError) as e:
        LeRobotVLADataset("local/tiny", root=root)
    assert "tasks.parquet" in _one_line(e)

    root2 = tmp_path / "copy2"
    shutil.copytree(written[0], root2, ignore=shutil.ignore_patterns(".vla_cache"))
    shutil.rmtree(root2 / "meta" / "episodes")
    with pytest.raises(DatasetError) as e:
        LeRobotVLADataset("local/tiny", root=root2)
    assert "meta/episodes" in _one_line(e)

    with pytest.raises(DatasetError, match="not cameras"):
        LeRobotVLADataset("local/tiny", root=written[0], image_keys=["observation.images.wrist"])
    with pytest.raises(DatasetError, match="out of range"):
        LeRobotVLADataset("local/tiny", root=written[0], episodes=[0, 99])

    root3 = tmp_path / "copy3"
    shutil.copytree(written[0], root3, ignore=shutil.ignore_patterns(".vla_cache"))
    info = json.loads((root3 / "meta" / "info.json").read_text())
    info["codebase_version"] = "v2.1"
    (root3 / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="v2.1.*convert") as e:
        LeRobotVLADataset("local/tiny", root=root3)
    _one_line(e)


def test_pusht_without_files_or_network_names_the_root(tmp_path):
    root = tmp_path / "pusht"
    with pytest.raises(DatasetError) as e:
        PushTDataset(root=root)
    msg = _one_line(e)
    assert "lerobot/pusht" in msg and str(root) in msg and "hub" in msg
    assert not root.exists()  # nothing left behind


# -------------------------------------------------------------------------------- config
def test_dataset_config_validation():
    cfg = DatasetConfig()
    assert cfg.repo_id == "local/push" and cfg.task == "push"
    assert DatasetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"dataset.task: 'fly' is not a known task; choose one of: .*push"):
        DatasetConfig(task="fly")
    with pytest.raises(ConfigError, match="dataset.val_fraction"):
        DatasetConfig(val_fraction=1.0)
    with pytest.raises(ConfigError, match="dataset.action_noise"):
        DatasetConfig(action_noise=float("nan"))
    assert DatasetConfig(task=None, root=None, repo_id="lerobot/pusht").task is None


# -------------------------------------------------------------------------------- video option
def test_video_dataset_decodes_through_the_cache(tmp_path):
    """use_videos=True writes mp4s with lerobot's encoder; our reader decodes them once with PyAV
    (lerobot 0.4.4's own video decoder needs torchcodec or an older torchvision, absent here)."""
    rng = np.random.default_rng(0)
    eps = []
    for k, n in enumerate([6, 8]):
        img = np.full((n, 32, 32, 3), 60, np.uint8)
        for t in range(n):  # a bright bar that moves 4 px a frame, in another half per episode
            img[t, 16 * k : 16 * k + 16, 4 * t : 4 * t + 4] = (230, 40, 40)
        eps.append({"observation.images.front": img, "observation.state": rng.random((n, 4), dtype=np.float32),
                    "action": rng.random((n, 2), dtype=np.float32), "task": "go"})
    root = write_dataset(tmp_path / "vid", eps, repo_id="local/vid", fps=FPS, use_videos=True)
    assert list((root / "videos" / "observation.images.front").rglob("*.mp4"))
    ds = LeRobotVLADataset("local/vid", root=root)
    originals = np.concatenate([e["observation.images.front"] for e in eps]).astype(np.float32) / 255
    for i in range(len(ds)):
        got = ds[i]["observation.images.front"].permute(1, 2, 0).numpy()
        err = np.abs(originals - got[None]).mean(axis=(1, 2, 3))
        assert err.argmin() == i and err[i] < 0.03  # lossy, but each frame lands on its own row

    # a missing mp4 is named, with the fix; lerobot alone would try the hub and report no network
    broken = tmp_path / "vid-broken"
    shutil.copytree(root, broken, ignore=shutil.ignore_patterns(".vla_cache"))
    mp4 = next((broken / "videos").rglob("*.mp4"))
    mp4.unlink()
    with pytest.raises(DatasetError) as e:
        LeRobotVLADataset("local/vid", root=broken)
    msg = _one_line(e)
    assert str(mp4) in msg and "missing" in msg and "re-download" in msg
    assert "hub" not in msg and "Connection" not in msg
    with pytest.raises(DatasetError) as e:  # a hub repo id: lerobot may try to fetch it; the file is still named
        LeRobotVLADataset("someone/vid", root=broken)
    assert str(mp4) in _one_line(e) and "Connection" not in str(e.value)


# -------------------------------------------------------------------------------- datagen
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    pytest.importorskip("vla_engine.envs.experts")
    from vla_engine.data import generate_dataset

    out = tmp_path_factory.mktemp("gen") / "reach"
    calls = []
    path = generate_dataset(
        "reach", 3, out, seed=0, image_size=32, progress=False, workers=0,
        on_episode=lambda i, n: calls.append((i, n)),
    )
    return path, calls


def test_generate_dataset_on_a_real_task(generated, tmp_path):
    from vla_engine.data import generate_dataset

    out, calls = generated
    assert calls == [(0, 3), (1, 3), (2, 3)]  # episode index just written, total
    side = read_sidecar(out)
    assert side["task"] == "reach" and side["image_size"] == 32 and side["num_episodes"] == 3
    assert len(side["seeds"]) == 3 and min(side["seeds"]) >= 0 and max(side["seeds"]) < side["eval_seed_start"]
    assert side["expert"]["successes"] >= 3 and side["generator_version"]
    ds = LeRobotVLADataset("local/reach", root=out, chunk_size=4)
    assert ds.num_episodes == 3 and ds.image_shape == (3, 32, 32)
    assert all(t and isinstance(t, str) for t in ds.tasks)
    item = ds[0]
    assert item["action"].shape == (4, ds.action_dim) and item["action"].abs().max() <= 1.0
    _assert_same_item(item, ds.lerobot[0])
    with pytest.raises(DatasetExistsError, match="--overwrite"):
        generate_dataset("reach", 1, out, progress=False, workers=0)
    with pytest.raises(DatasetError, match="1000000"):
        generate_dataset("reach", 3, tmp_path / "x", seed=999_999, progress=False, workers=0)
    # an overwrite that fails half-way leaves the old dataset intact and no temporary folder
    before = sorted(p.relative_to(out) for p in out.rglob("*") if ".vla_cache" not in p.parts)

    def interrupt(i, n):
        raise RuntimeError("stopped by the user")

    with pytest.raises(RuntimeError, match="stopped"):
        generate_dataset("reach", 2, out, progress=False, workers=0, overwrite=True, on_episode=interrupt)
    assert sorted(p.relative_to(out) for p in out.rglob("*") if ".vla_cache" not in p.parts) == before
    assert [p.name for p in out.parent.iterdir()] == ["reach"]
    with pytest.raises(DatasetError, match="unknown task 'fly'"):
        generate_dataset("fly", 3, tmp_path / "y", progress=False, workers=0)


def test_build_datasets_generates_missing_data_with_worker_processes(generated, tmp_path):
    """The config path generates into a missing root (worker-process pipeline); the result is
    the same data as the in-process run: episodes depend on the seeds only."""
    ref = LeRobotVLADataset("local/reach", root=generated[0])
    cfg = DatasetConfig(repo_id="local/reach", root=str(tmp_path / "reach"), task="reach", episodes=3, image_size=32)
    train, val = build_datasets(cfg, progress=False)
    assert val is None and read_sidecar(train.root)["seeds"] == read_sidecar(ref.root)["seeds"]
    assert len(train) == len(ref)
    for ep in range(3):
        assert np.array_equal(train.episode_frames(ep), ref.episode_frames(ep))
        np.testing.assert_array_equal(train.episode_data(ep)["action"], ref.episode_data(ep)["action"])


def test_contrastive_datagen_shows_each_layout_with_every_block_named(tmp_path):
    """targets_per_layout=3: one layout, three episodes, each naming another block; only the words
    (and what follows from them) differ, so a cloned policy has to ground them."""
    from vla_engine.data import generate_dataset

    out = generate_dataset("reach", 3, tmp_path / "reach", image_size=32, progress=False, workers=0,
                           targets_per_layout=3)
    side = read_sidecar(out)
    assert side["seeds"] == [0, 0, 0] and side["target_offsets"] == [0, 1, 2] and side["targets_per_layout"] == 3
    ds = LeRobotVLADataset("local/reach", root=out)
    colours = [next(c for c in ("red", "green", "blue") if c in ds.episode_data(e)["task"]) for e in range(3)]
    assert sorted(colours) == ["blue", "green", "red"]
    first = [ds.episode_frames(e)[0] for e in range(3)]
    assert np.array_equal(first[0], first[1]) and np.array_equal(first[0], first[2])  # the same scene
    with pytest.raises(DatasetError, match="targets_per_layout"):
        generate_dataset("reach", 3, tmp_path / "x", progress=False, workers=0, targets_per_layout=4)


def test_expert_plans_as_chunk_labels(tmp_path):
    """plan_horizon records the expert's noise-free plan per frame; lerobot reads it back, and
    chunk_labels='plan' trains chunks on it. With DART noise it differs from the recorded future
    actions; the first action and everything else in the item are the same."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from vla_engine.data import generate_dataset

    # the config path: generated in a worker process, then read with the plans as labels
    cfg = DatasetConfig(repo_id="local/push", root=str(tmp_path / "push"), task="push", episodes=2, image_size=32,
                        action_noise=0.3, plan_horizon=6, chunk_labels="plan")
    built, _ = build_datasets(cfg, chunk_size=6, progress=False)
    out = built.root
    assert read_sidecar(out)["plan_horizon"] == 6 and built.chunk_labels == "plan"
    theirs = LeRobotDataset("local/push", root=out)[0]
    assert tuple(theirs["action.plan"].shape) == (6, 2) and tuple(theirs["action.plan_valid"].shape) == (6,)
    plan = LeRobotVLADataset("local/push", root=out, chunk_size=6, chunk_labels="plan")
    rec = LeRobotVLADataset("local/push", root=out, chunk_size=6, chunk_labels="recorded")
    assert LeRobotVLADataset("local/push", root=out, chunk_size=6).chunk_labels == "plan"  # auto
    assert LeRobotVLADataset("local/push", root=out, chunk_size=1).chunk_labels == "recorded"
    assert len(plan) == len(rec) and "action.plan" not in plan[0]
    np.testing.assert_allclose(plan[0]["action"].numpy(), theirs["action.plan"].numpy())
    differ = 0
    for i in range(len(plan)):
        p, r = plan[i], rec[i]
        torch.testing.assert_close(p["action"][0], r["action"][0])  # the action taken at t is the plan's first
        torch.testing.assert_close(p["observation.images.front"], r["observation.images.front"])
        differ += int(not torch.allclose(p["action"][1:][~p["action_is_pad"][1:]],
                                         r["action"][1:][~p["action_is_pad"][1:]]))
    assert differ > len(plan) // 2  # the noise the expert answered later is not in the plan
    last = plan[len(plan) - 1]  # the last frame: only its own action is left before the episode ends
    assert last["action_is_pad"].tolist() == [False] + [True] * 5
    with pytest.raises(DatasetError, match="plan-horizon 8"):
        LeRobotVLADataset("local/push", root=out, chunk_size=8, chunk_labels="plan")
    plain = generate_dataset("reach", 1, tmp_path / "reach", image_size=32, progress=False, workers=0)
    with pytest.raises(DatasetError, match="no expert plans"):
        LeRobotVLADataset("local/reach", root=plain, chunk_size=2, chunk_labels="plan")


def test_generate_dataset_refuses_bad_numbers_in_one_line(tmp_path):
    """NaN/inf/fractions never reach the sidecar JSON; a count past the evaluation seeds says so."""
    from vla_engine.data import EVAL_SEED_START, DatagenError, generate_dataset

    out = tmp_path / "never"
    for kw, words in [
        ({"action_noise": float("nan")}, "action_noise must be a finite number"),
        ({"action_noise": float("inf")}, "action_noise must be a finite number"),
        ({"action_noise": -0.1}, "action_noise must be >= 0"),
        ({"image_size": float("nan")}, "image_size must be a whole number"),
        ({"episodes": 2.5}, "episodes must be a whole number"),
        ({"episodes": float("inf")}, "episodes must be a whole number"),
        ({"seed": EVAL_SEED_START}, "is an evaluation seed"),
    ]:
        args = {"task": "reach", "episodes": 3, "out": out, "progress": False, "workers": 0, **kw}
        with pytest.raises(DatagenError) as e:
            generate_dataset(**args)
        assert words in _one_line(e), (kw, str(e.value))
    with pytest.raises(DatagenError) as e:
        generate_dataset("reach", 10**9, out, progress=False, workers=0)
    msg = _one_line(e)
    assert "too many" in msg and f"at most {EVAL_SEED_START} episodes" in msg and "--episodes" in msg
    assert "--seed" not in msg  # from seed 0 a smaller seed cannot help
    with pytest.raises(DatagenError, match="at most 3 episodes fit.*--episodes or --seed"):
        generate_dataset("reach", 5, out, seed=EVAL_SEED_START - 3, progress=False, workers=0)
    assert not out.exists()


def test_public_names_keep_their_import_paths():
    """The dataset module was split by concern; its names import from where they always did, and
    the evaluation seed start has one owner, the run config."""
    import vla_engine
    import vla_engine.data as data
    import vla_engine.data.dataset as dataset
    from vla_engine.config.run_config import EVAL_SEED_START

    for name in ("LeRobotVLADataset", "PushTDataset", "create_lerobot_dataloader", "collate_batch",
                 "build_datasets", "check_dataset_files"):
        assert getattr(dataset, name) is getattr(data, name)
    for name in ("LeRobotVLADataset", "PushTDataset", "create_lerobot_dataloader", "generate_dataset"):
        assert getattr(vla_engine, name) is getattr(data, name)
    assert data.EVAL_SEED_START is EVAL_SEED_START
    from vla_engine.data import lerobot_io

    assert not hasattr(lerobot_io, "EVAL_SEED_START")
