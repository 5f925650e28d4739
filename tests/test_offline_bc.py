"""Offline BC on Minari datasets from `vla`: `vla train il-bc-minari` on a dataset written here with minari's
DataCollector (loss falls, the run folder is complete, the normalised score is logged, `vla eval` loads the
checkpoint), weighted / filtered variants and resume, `vla datagen --format minari`, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("minari")

from vla_engine.cli import main  # noqa: E402
from vla_engine.data.minari_io import collect_minari, make_level_datasets  # noqa: E402
from vla_engine.data.minari_levels import HalfExpert, pendulum_swing_up  # noqa: E402

ENV = "Pendulum-v1"  # fast and state-based: 200 steps an episode, no MuJoCo


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory) -> Path:
    """-random / -medium / -expert / -mixed Pendulum sets (6 episodes each, reference scores) and a 20-episode
    expert set, all written by minari's DataCollector."""
    root = tmp_path_factory.mktemp("minari")
    medium = HalfExpert(pendulum_swing_up, -2.0, 2.0, 1, 0.5, seed=0)
    make_level_datasets(ENV, {"expert": pendulum_swing_up, "medium": medium}, episodes=6, root=root)
    meta = json.loads((root / "vla/pendulum/expert-v0/data/metadata.json").read_text())
    collect_minari(ENV, pendulum_swing_up, "test/pendulum/expert20-v0", 20, root=root, seed=50,
                   ref_min_score=meta["ref_min_score"], ref_max_score=meta["ref_max_score"])
    return root


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _only_run(runs: Path, name: str) -> Path:
    found = [p for p in runs.iterdir() if name in p.name]
    assert len(found) == 1, found
    return found[0]


def test_vla_train_offline_bc_then_vla_eval(minari_root, tmp_path):
    runs = tmp_path / "runs"
    rc = main(["--runs-dir", str(runs), "train", "il-bc-minari", "--name", "obc",
               "--set", "dataset.minari_id=test/pendulum/expert20-v0", "--set", f"dataset.minari_root={minari_root}",
               "--set", "training.max_steps=1500", "--set", "training.save_every=750", "--set", "training.log_every=50",
               "--set", "eval.episodes=3", "--set", "eval.num_videos=0"])
    assert rc == 0
    run = _only_run(runs, "obc")
    st = json.loads((run / "status.json").read_text())
    assert st["state"] == "done", st.get("error")
    # the run folder of every job: config, status, metrics, TensorBoard, log, checkpoints
    assert (run / "config.yaml").exists() and list(run.glob("events.out.tfevents*"))
    for step in (750, 1500):
        ckpt = run / "checkpoints" / f"step-{step}"
        assert {"model.safetensors", "config.json", "optimizer.pt", "trainer_state.json"} <= {
            p.name for p in ckpt.iterdir()}
    assert json.loads((run / "checkpoints/step-1500/config.json").read_text())["type"] == "rl_mlp"
    from vla_engine.train.rl.policies import load_rl_policy

    policy = load_rl_policy(run / "checkpoints/step-1500")  # what vla eval and a PPO warm start load
    assert bool(policy.obs_rms.enabled) and float(policy.obs_rms.count) == 4000  # the data's state statistics
    rows = _metrics(run)
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(losses) == 30 and losses[-1] < 0.2 * losses[0]
    assert rows[0]["data/episodes"] == 20 and rows[0]["data/transitions"] == 4000
    final = rows[-1]
    assert final["eval/episodes"] == 3 and np.isfinite(final["eval/normalized_score"])
    assert final["eval/normalized_score"] > 50  # the clone swings the pendulum up (random = 0, expert = 100)
    assert st["eval"]["eval/normalized_score"] == final["eval/normalized_score"]

    # `vla eval <run>`: the checkpoint loads as an RL MLP policy and acts in the dataset's env (its default task)
    assert main(["--runs-dir", str(runs), "eval", str(run), "--episodes", "2", "--videos", "0"]) == 0
    ev_run = _only_run(runs, "eval-")
    ev = json.loads((ev_run / "eval.json").read_text())
    assert ev["task"] == "gym/Pendulum-v1" and len(ev["episodes"]) == 2


def test_weighted_and_filtered_data_and_resume(minari_root, tmp_path):
    import torch

    from vla_engine.config.training_config import ILConfig
    from vla_engine.data.bc_datasets import FilteredBCDataset, WeightedBCDataset
    from vla_engine.train.il import OfflineBC

    ref = "vla/pendulum/mixed-v0"
    cfg = ILConfig(algorithm="offline-bc", weighting="return", temperature=0.5, max_steps=60, batch_size=64,
                   warmup_steps=0, log_every=20, save_every=30, policy_hidden_sizes=[32, 32])
    sampled = OfflineBC(ref, cfg, root=minari_root, progress=False)
    assert isinstance(sampled.dataset, WeightedBCDataset) and sampled.task == "gym/Pendulum-v1"
    # the loss-weighted form (weighted_sampling: false) is the weighted mean of the per-step errors
    weighted = OfflineBC(ref, cfg.replace(weighted_sampling=False), root=minari_root, progress=False)
    ds = weighted.dataset
    batch = ds.__getitems__(list(range(0, len(ds), 97)))
    loss, _ = weighted.model(batch, True)
    with torch.no_grad():
        pred = weighted.model.actor_mean(weighted.model.obs_rms(batch["observation.state"]))
        per = ((pred - batch["action"]) / weighted.model.action_scale).pow(2).mean(-1)
    assert torch.isclose(loss, (per * batch["weight"].float()).mean(), rtol=1e-4)
    assert not torch.isclose(loss, per.mean(), rtol=1e-3)

    top = OfflineBC(ref, ILConfig(algorithm="offline-bc", filter_top_percent=34), root=minari_root, progress=False)
    assert isinstance(top.dataset, FilteredBCDataset) and len(top.dataset.episodes) == 3  # ceil(6 * 0.34)
    summary = top.data_summary()
    assert summary["data/normalized_score"] > OfflineBC(ref, ILConfig(), root=minari_root).data_summary()[
        "data/normalized_score"]

    # resume: a run trained to step 30 goes on from its checkpoint to 60
    first = OfflineBC(ref, cfg.replace(max_steps=30), root=minari_root, run_dir=tmp_path / "run", progress=False)
    assert first.train()["step"] == 30
    again = OfflineBC(ref, cfg, root=minari_root, run_dir=tmp_path / "run", progress=False)
    out = again.train()
    assert out["state"] == "done" and out["step"] == 60
    assert [h["step"] for h in out["history"]] == [40, 60]
    assert "resumed from step-30" in (tmp_path / "run" / "log.txt").read_text()


def test_vla_datagen_minari_is_read_by_minari(tmp_path, monkeypatch, capsys):
    import minari

    out = tmp_path / "minari"
    rc = main(["datagen", "--format", "minari", "--task", "gym/Pendulum-v1", "--levels", "random,medium,expert,mixed",
               "--expert", "scripted", "--medium", "scripted", "--episodes", "3", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"mixed: {out}/vla/pendulum/mixed-v0" in printed
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out))
    for level in ("random", "medium", "expert", "mixed"):
        ds = minari.load_dataset(f"vla/pendulum/{level}-v0")
        assert ds.total_episodes == 3 and ds.total_steps == 600
        assert ds.env_spec.id == ENV
    expert = minari.load_dataset("vla/pendulum/expert-v0")
    ret = np.mean([ep.rewards.sum() for ep in expert.iterate_episodes()])
    assert 100 * minari.get_normalized_score(expert, np.array(ret)) > 80  # the scripted expert is the 100 mark
    # a level without a policy is skipped and said so; an unknown scripted policy is one line
    assert main(["datagen", "--format", "minari", "--task", ENV, "--levels", "random,medium", "--episodes", "1",
                 "--out", str(tmp_path / "m2")]) == 0
    assert "medium: skipped (no policy for it; pass --medium)" in capsys.readouterr().out
    assert main(["datagen", "--format", "minari", "--task", "Hopper-v5", "--expert", "scripted", "--out",
                 str(tmp_path / "m3")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no scripted expert policy for Hopper-v5" in err


def test_missing_data_is_made_or_named_in_one_line(minari_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    common = ["--set", "training.max_steps=20", "--set", "eval.after_training=false"]
    # a missing folder: one line, the run failed
    assert main(["--runs-dir", str(runs), "train", "il-bc-minari", "--name", "bad", "--set",
                 f"dataset.minari_id={tmp_path}/nowhere", *common]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: no Minari dataset") and "nowhere" in err
    assert json.loads((_only_run(runs, "bad") / "status.json").read_text())["state"] == "failed"
    # a missing level that needs a checkpoint: the exact datagen command
    assert main(["--runs-dir", str(runs), "train", "il-bc-minari", "--name", "hop", "--set",
                 "dataset.minari_id=vla/hopper/expert-v0", "--set", f"dataset.minari_root={tmp_path}/m",
                 "--set", "dataset.task=gym/Hopper-v5", "--set", "eval.task=gym/Hopper-v5", *common]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (f"vla datagen --format minari --task Hopper-v5 --levels random,expert --expert <checkpoint folder> "
            f"--episodes 50 --out {tmp_path}/m") in err
    # a corrupt dataset: one line naming it
    bad = tmp_path / "corrupt" / "data"
    bad.mkdir(parents=True)
    (bad / "metadata.json").write_text("{not json")
    assert main(["--runs-dir", str(runs), "train", "il-bc-minari", "--name", "corrupt", "--set",
                 f"dataset.minari_id={bad.parent}", *common]) == 1
    assert "cannot be read" in capsys.readouterr().err.strip().splitlines()[-1]
    # filtering and weighting at once: refused before any run folder is made
    assert main(["--runs-dir", str(runs), "train", "il-bc-minari", "--set", "training.weighting=return",
                 "--set", "training.filter_top_percent=10"]) == 2
    assert "training.weighting" in capsys.readouterr().err
    # a missing level that can be made offline (Pendulum's scripted swing-up) is collected, then trained on;
    # the env comes from eval.task when dataset.task names another (the Training tab's dataset box sets it)
    assert main(["--runs-dir", str(runs), "train", "il-bc-minari-weighted", "--name", "made", "--set",
                 f"dataset.minari_root={tmp_path}/made", "--set", "dataset.episodes=3", "--set", "dataset.task=reach",
                 *common]) == 0
    made = _only_run(runs, "made")
    assert (tmp_path / "made/vla/pendulum/mixed-v0/data/metadata.json").exists()
    assert "not found under" in (made / "log.txt").read_text()
    assert any("train/loss" in r for r in _metrics(made))
