"""Every action head and every model recipe trains through the same job the Training tab starts
(``run_job`` on a run folder), then acts in its MuJoCo task: the parts are interchangeable end to end."""

from __future__ import annotations

import pytest

from vla_engine.config.presets import load_preset
from vla_engine.runs.jobs import run_job
from vla_engine.runs.run_dir import RunDir

CHUNK = ["model.chunk_size=4", "model.n_action_steps=2"]
ROWS = {
    "gaussian": ["model.action_head=gaussian"],
    "diffusion": ["model.action_head=diffusion", *CHUNK, "model.head.num_inference_steps=5"],
    "transformer": ["model.action_head=transformer", "model.chunk_size=4", "model.n_action_steps=1",
                    "model.temporal_ensemble_coeff=0.01"],
    "flow": ["model.action_head=flow", *CHUNK, "model.head.hidden_dim=64"],
    "tokens": ["model.action_head=tokens"],
    "keypoints+perceiver": ["model.vision_encoder=cnn-keypoints", "model.projector=perceiver",
                            "model.projection.num_tokens=8"],
}


@pytest.fixture(scope="module")
def reach_data(tmp_path_factory):
    pytest.importorskip("mujoco")
    from vla_engine.data import generate_dataset

    return generate_dataset("reach", 4, tmp_path_factory.mktemp("heads") / "reach", progress=False, workers=0)


@pytest.mark.parametrize("row", list(ROWS))
def test_each_head_trains_and_acts_through_the_job(row, reach_data, tmp_path):
    cfg = load_preset("quickstart", [f"dataset.root={reach_data}", "dataset.episodes=4", "training.max_steps=12",
                                     "training.batch_size=16", "training.log_every=4", "training.save_every=100",
                                     "training.warmup_steps=2", "eval.episodes=1", "eval.num_videos=0",
                                     "training.init_from=",
                                     *ROWS[row]])
    run = RunDir.create(tmp_path / "runs", row.replace("+", "-"), {"job": "train", **cfg.to_dict()})
    assert run_job(run.path, progress=False) == 0, run.read_status().get("error")
    st = run.read_status()
    assert st.state == "done" and st.step == 12 and st.eval_summary.episodes == 1
    rows = [r for r in run.read_metrics(0)[0] if "train/loss" in r]
    assert rows and all(r["train/loss"] == r["train/loss"] for r in rows)  # logged, finite
    from vla_engine.models import VLAModel

    model = VLAModel.from_pretrained(run.last_checkpoint())
    assert model.config.action_head == cfg.model.action_head
