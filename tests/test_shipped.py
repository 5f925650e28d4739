"""The checkpoint shipped in the package loads by name and acts: a fresh install can roll it out."""

from __future__ import annotations

import json

import pytest

from vla_engine.pretrained import list_shipped, shipped_checkpoint
from vla_engine.runs.jobs import resolve_checkpoint
from vla_engine.runs.run_dir import RunError


def test_shipped_reach_checkpoint_succeeds_on_held_out_seeds():
    pytest.importorskip("mujoco")
    from vla_engine.eval import evaluate_policy
    from vla_engine.models import VLAModel

    info = {s["name"]: s for s in list_shipped()}["reach-tiny"]
    assert info["task"] == "reach" and "ship_checkpoint.py" in info["command"]
    path = resolve_checkpoint("shipped:reach-tiny")
    assert path == shipped_checkpoint("reach-tiny")
    meta = json.loads((path.parent / "shipped.json").read_text())
    assert meta["eval"]["eval/success_rate"] >= 0.5  # what the recipe measured when it was made
    model = VLAModel.from_pretrained(path)
    result = evaluate_policy(model, "reach", episodes=5, num_videos=0, progress=False)
    assert result.summary["eval/successes"] >= 1  # a trained policy, not a random one


def test_shipped_push_checkpoint_pushes_the_named_block():
    """push-tiny (il-bc preset, FiLM): on held-out seeds it moves the block the words name into the zone."""
    pytest.importorskip("mujoco")
    from vla_engine.eval import evaluate_policy
    from vla_engine.models import VLAModel

    info = {s["name"]: s for s in list_shipped()}["push-tiny"]
    assert info["task"] == "push" and "--preset il-bc" in info["command"]
    assert info["success_rate"] >= 0.6  # the push target, as measured when it was made
    model = VLAModel.from_pretrained(resolve_checkpoint("shipped:push-tiny"))
    assert model.config.vision.film  # the words condition the image features
    result = evaluate_policy(model, "push", episodes=6, num_videos=0, progress=False)
    assert result.summary["eval/successes"] >= 2  # 78% measured; six seeds with fewer than 2 is < 1% likely


def test_unknown_shipped_name_is_one_clear_line():
    with pytest.raises(RunError, match="no shipped checkpoint named 'nope'; shipped: .*reach-tiny"):
        resolve_checkpoint("shipped:nope")
