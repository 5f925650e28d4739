"""MultiSensorVLA: the seed's call shapes build offline, every fusion trains, a short BC run on driving data
lowers the loss, the checkpoint round-trips through VLAModel.from_pretrained, and an absent sensor gets no weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from vla_engine.config.base import ConfigError
from vla_engine.config.training_config import FineTuningConfig, ILConfig
from vla_engine.models import (GatedFusion, MultiSensorVLA, PointNetEncoder, PointTransformerEncoder, RadarEncoder,
                               VLAModel)
from vla_engine.train.finetune import VLAFineTuner
from vla_engine.train.il.bc import BehavioralCloning

torch.set_num_threads(1)
SMALL = {"lidar_dim": 32, "radar_dim": 16, "imu_dim": 16, "fusion_dim": 32,
         "encoder_settings": {"lidar": {"hidden_dims": [16, 32]}}}


class ToyDriving(Dataset):
    """Frames whose action (steer) is where the nearest lidar point lies (left/right): only lidar tells it."""

    action_dim, state_dim = 3, 2

    def __init__(self, n: int = 64, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.items = []
        for _ in range(n):
            side = rng.choice([-1.0, 1.0])
            pts = rng.normal(0, 1, (40, 4)).astype(np.float32) + np.array([10, 0, 1, 0.5], np.float32)
            pts[:8, 1] = side * 3.0  # a cluster on one side
            self.items.append({
                "observation.images.front": torch.rand(3, 32, 32), "observation.state": torch.zeros(2),
                "observation.lidar": torch.from_numpy(pts), "observation.lidar_mask": torch.ones(40),
                "observation.radar": torch.zeros(16, 4), "observation.radar_mask": torch.zeros(16),
                "observation.imu": torch.randn(4, 6) * 0.1,
                "action": torch.tensor([[side * 0.5, 0.3, 0.0]]), "action_is_pad": torch.zeros(1, dtype=torch.bool),
                "action.waypoints": torch.tensor([[2.0 * k, side * 0.2 * k] for k in range(1, 7)]),
                "task": "take the next left" if side > 0 else "take the next right"})
        acts = torch.stack([i["action"][0] for i in self.items])
        self.stats = {"action": {"mean": acts.mean(0), "std": acts.std(0) + 1e-3, "min": acts.min(0).values,
                                 "max": acts.max(0).values},
                      "observation.state": {"mean": torch.zeros(2), "std": torch.ones(2), "min": torch.zeros(2),
                                            "max": torch.ones(2)}}

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _batch(ds, n=8):
    items = [ds[i] for i in range(n)]
    out = {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "task"}
    out["task"] = [it["task"] for it in items]
    return out


def test_seed_call_shapes_build_offline():
    m = MultiSensorVLA(vlm_name_or_path="Qwen/Qwen2-VL-2B-Instruct",
                       sensor_encoders={"lidar": PointNetEncoder(output_dim=512), "radar": RadarEncoder(output_dim=256)},
                       action_dim=3)
    assert m.config.vision_encoder == "siglip" and m.modality_names == ["camera", "lidar", "radar"]
    m2 = MultiSensorVLA(vlm="qwen2-vl", sensor_encoders={"lidar": PointTransformerEncoder(output_dim=512)},
                        action_dim=3, prediction_horizon=10)
    assert m2.config.sensors.prediction_horizon == 10 and m2.config.sensors.lidar == "point-transformer"
    # the seed's GatedFusion over lidar, radar, IMU only: the camera feature is concatenated after it
    m3 = MultiSensorVLA(sensor_encoders={"lidar": PointNetEncoder(output_dim=512), "radar": RadarEncoder(output_dim=256),
                                         "imu": "imu"}, fusion=GatedFusion(modality_dims=[512, 256, 128], output_dim=512),
                        imu_dim=128, action_dim=3)
    assert m3.config.sensors.fuse_camera is False and m3.modality_names == ["lidar", "radar", "imu"]
    with pytest.raises(ConfigError, match="not a sensor"):
        MultiSensorVLA(sensor_encoders={"sonar": PointNetEncoder()})


@pytest.mark.parametrize("fusion", ["gated", "concat", "cross-modal", "hierarchical"])
def test_each_fusion_gives_a_loss_and_gradients(fusion):
    ds = ToyDriving(8)
    m = MultiSensorVLA(fusion=fusion, state_dim=2, image_size=32, prediction_horizon=6, **SMALL)
    m.set_normalization(ds.stats)
    loss, info = m(_batch(ds))
    loss.backward()
    assert torch.isfinite(loss) and "waypoint_loss" in info
    assert m.sensor_encoders["lidar"].out[0].weight.grad.abs().sum() > 0  # the lidar encoder learns


def test_absent_sensor_gets_no_weight():
    ds = ToyDriving(8)
    m = MultiSensorVLA(fusion="gated", state_dim=2, image_size=32, **SMALL).eval()
    m.set_normalization(ds.stats)
    b = _batch(ds)  # radar masks are all zeros: absent
    m.predict_action_chunk(b)
    w = m.fusion.last_weights  # (B, 4): camera, lidar, radar, imu
    torch.testing.assert_close(w.sum(1), torch.ones(len(w)))
    assert (w[:, m.modality_names.index("radar")] == 0).all()


def test_bc_lowers_the_loss_and_the_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    ds = ToyDriving(64)
    m = MultiSensorVLA(fusion="gated", state_dim=2, image_size=32, prediction_horizon=6, **SMALL)
    before = float(m.eval()(_batch(ds, 32))[0]) if m.set_normalization(ds.stats) is None else None
    cfg = ILConfig(learning_rate=2e-3, batch_size=16, max_steps=120, warmup_steps=0, save_every=120)
    result = BehavioralCloning(m, cfg, run_dir=tmp_path / "run", progress=False).train(ds)
    after = float(m.eval()(_batch(ds, 32))[0])
    assert after < 0.5 * before, (before, after)
    # the policy reads the lidar: steering follows the cluster's side
    pred = m.predict_action_chunk(_batch(ds, 32))[:, 0, 0]
    truth = _batch(ds, 32)["action"][:, 0, 0]
    assert (torch.sign(pred) == torch.sign(truth)).float().mean() > 0.9
    assert m.predict_waypoints(_batch(ds, 4)).shape == (4, 6, 2)
    ckpt = result.checkpoint
    loaded = VLAModel.from_pretrained(ckpt)
    assert isinstance(loaded, MultiSensorVLA) and loaded.config.sensors == m.config.sensors
    b = _batch(ds, 8)
    torch.testing.assert_close(loaded.predict_action_chunk(b), m.predict_action_chunk(b))
    torch.testing.assert_close(MultiSensorVLA.from_pretrained(ckpt).predict_waypoints(b), m.predict_waypoints(b))


def test_fine_tuner_trains_it():
    ds = ToyDriving(16)
    m = MultiSensorVLA(fusion="concat", state_dim=2, image_size=32, **SMALL)
    res = VLAFineTuner(m, FineTuningConfig(learning_rate=1e-3, batch_size=8, max_steps=4, save_every=100),
                       progress=False).train(ds)
    assert res.step == 4 and np.isfinite(res.final_loss)


def test_sensor_noise_corrupts_one_reported_sensor_per_sample_in_training_only():
    ds = ToyDriving(8)
    m = MultiSensorVLA(fusion="gated", state_dim=2, image_size=32, sensor_noise=1.0, **SMALL)
    m.set_normalization(ds.stats)
    b = _batch(ds)
    b["observation.lidar_mask"][:, 30:] = 0  # the last 10 rays missed: they must stay as they are
    torch.manual_seed(0)
    noisy = m.train()._add_sensor_noise(b)
    changed = torch.stack([(noisy[f"observation.{s}"] != b[f"observation.{s}"]).flatten(1).any(1)
                           for s in ("lidar", "imu")], 1)  # (B, 2); radar reports nothing here
    radar_same = (noisy["observation.radar"] == b["observation.radar"]).all()
    assert radar_same and (changed.sum(1) <= 1).all() and changed.any()
    assert (noisy["observation.lidar"][:, 30:] == b["observation.lidar"][:, 30:]).all()
    assert noisy["action"] is b["action"]  # labels untouched
    # eval mode: sensor_features leaves the readings alone (same features twice)
    m.eval()
    f1, _ = m.sensor_features(b)
    f2, _ = m.sensor_features(b)
    assert all(torch.equal(x, y) for x, y in zip(f1, f2))
