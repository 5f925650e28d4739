"""Sensor corruption at test time: the noise wrapper changes only the named sensor (where it reported
something), repeats by seed, and the corrupted evaluation reports gate weights per modality that sum to one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_engine.envs import make_env
from vla_engine.envs.driving.corruption import SensorNoise, evaluate_corrupted


@pytest.mark.parametrize("sensor", ["lidar", "radar"])
def test_noise_changes_only_the_named_sensor(sensor):
    clean_env = make_env("driving/stop-behind", image_size=32)
    noisy_env = SensorNoise(make_env("driving/stop-behind", image_size=32), sensor, scale=2.0, seed=0)
    clean, _ = clean_env.reset(seed=5)
    noisy, _ = noisy_env.reset(seed=5)
    a = np.array([0.0, 0.3, 0.0], np.float32)
    for _ in range(3):
        clean, *_ = clean_env.step(a)
        noisy, *_ = noisy_env.step(a)
    for k in clean:
        if k == sensor:
            continue
        np.testing.assert_array_equal(clean[k], noisy[k], err_msg=f"{k} changed when only {sensor} is corrupted")
    mask = clean[sensor + "_mask"].astype(bool)
    assert mask.any()
    assert np.abs(noisy[sensor][mask] - clean[sensor][mask]).mean() > 0.05  # the reported entries moved
    np.testing.assert_array_equal(noisy[sensor][~mask], clean[sensor][~mask])  # padding / misses stay zero
    again = SensorNoise(make_env("driving/stop-behind", image_size=32), sensor, scale=2.0, seed=0)
    o, _ = again.reset(seed=5)
    o2, _ = noisy_env.reset(seed=5)
    np.testing.assert_array_equal(o[sensor], o2[sensor])  # same seed, same noise


def test_bad_sensor_or_scale_is_a_clear_error():
    env = make_env("driving/turn", image_size=32)
    with pytest.raises(ValueError, match="unknown sensor"):
        SensorNoise(env, "sonar")
    with pytest.raises(ValueError, match="scale"):
        SensorNoise(env, "lidar", scale=-1.0)


def test_corrupted_evaluation_reports_gate_weights_summing_to_one():
    from vla_engine.models import MultiSensorVLA

    torch.manual_seed(0)
    model = MultiSensorVLA(vlm="tiny", action_dim=3, state_dim=2, image_size=32, fusion="gated", fusion_dim=32,
                           lidar_dim=32, radar_dim=16, imu_dim=16,
                           encoder_settings={"lidar": {"hidden_dims": [16, 32]}})
    r = evaluate_corrupted(model, "driving/stop-behind", "lidar", 2.0, episodes=1, max_episode_steps=8)
    assert set(r["weights"]) == {"camera", "lidar", "radar", "imu"}
    assert sum(r["weights"].values()) == pytest.approx(1.0, abs=1e-4)
    assert len(r["rows"]) == 1 and 0.0 <= r["route_completion"] <= 1.0
    clean = evaluate_corrupted(model, "driving/stop-behind", None, episodes=1, max_episode_steps=8)
    assert clean["sensor"] is None and sum(clean["weights"].values()) == pytest.approx(1.0, abs=1e-4)
