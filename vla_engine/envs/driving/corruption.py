"""Sensor corruption at test time: Gaussian noise on one sensor's readings, and a closed-loop evaluation that
reports route completion and (for a gated fusion) the mean weight per modality, clean vs corrupted.

    >>> env = SensorNoise(make_env("driving/follow", image_size=48), sensor="lidar", scale=2.0, seed=0)
    >>> obs, info = env.reset(seed=0)           # obs["lidar"][:, :3] of the hits moved by N(0, 2 m) each
    >>> r = evaluate_corrupted(model, "driving/follow", sensor="radar", scale=5.0, episodes=20)
    >>> r["route_completion"], r["weights"]     # {"camera": 0.41, "lidar": 0.22, "radar": 0.18, "imu": 0.19}

Noise per sensor (``scale`` x the std below), added only where the sensor reports something (its mask):

* lidar: x, y, z of every hit point (1 m each) and intensity (0.1); missed rays stay zero.
* radar: range (1 m), azimuth (0.05 rad), radial velocity (1 m/s), rcs (1 dBsm) of every reported target.
* imu: accelerometer (1 m/s^2) and gyro (0.1 rad/s) of every sample.

The noise stream is seeded by the wrapper's ``seed`` and the episode's reset seed, so a corrupted evaluation
is repeatable and every model sees the same noise on the same held-out seed.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from vla_engine.models.configuration_multisensor import SENSOR_NOISE_STD

# the same units as the training-time noise augmentation (model.sensors.sensor_noise)
NOISE_STD = {k: np.array(v, np.float32) for k, v in SENSOR_NOISE_STD.items()}


class SensorNoise(gymnasium.ObservationWrapper):
    """Adds Gaussian noise (``scale`` x ``NOISE_STD[sensor]``) to ``obs[sensor]``; every other key is untouched."""

    def __init__(self, env: gymnasium.Env, sensor: str, scale: float = 1.0, seed: int = 0):
        super().__init__(env)
        if sensor not in NOISE_STD:
            raise ValueError(f"SensorNoise: unknown sensor {sensor!r}; choose one of {', '.join(NOISE_STD)}")
        if not np.isfinite(scale) or scale < 0:
            raise ValueError(f"SensorNoise: scale must be a finite number >= 0; got {scale}")
        self.sensor, self.scale, self.seed = sensor, float(scale), int(seed)
        self._rng = np.random.default_rng(self.seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:  # the same noise for the same episode, whatever model is driving
            self._rng = np.random.default_rng([self.seed, int(seed)])
        return super().reset(seed=seed, options=options)

    def observation(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.asarray(obs[self.sensor], dtype=np.float32)
        noise = self._rng.normal(0.0, 1.0, x.shape).astype(np.float32) * (self.scale * NOISE_STD[self.sensor])
        mask = obs.get(self.sensor + "_mask")
        if mask is not None:  # only what the sensor reported: padding and missed rays stay zeros
            noise *= np.asarray(mask, dtype=np.float32).reshape(-1, *([1] * (x.ndim - 1)))
        out = dict(obs)
        out[self.sensor] = (x + noise).astype(np.float32)
        return out


def evaluate_corrupted(model: Any, task: str, sensor: str | None = None, scale: float = 1.0, episodes: int = 20,
                       seed_start: int = 1_000_000, noise_seed: int = 0, max_episode_steps: int | None = None
                       ) -> dict[str, Any]:
    """Closed-loop episodes of ``model`` on ``task`` with ``sensor`` corrupted (None: clean), on the held-out
    seeds ``seed_start, seed_start + 1, ...``. Returns per-episode ``rows`` (seed, success, route_completion,
    collisions, distance), their means, and ``weights``: the gated fusion's mean weight per modality over every
    step (``{}`` for a fusion without weights)."""
    import torch

    from vla_engine.envs import make_env

    from .metrics import driving_metrics

    env = make_env(task, image_size=int(getattr(model.config, "image_size", 96)), max_episode_steps=max_episode_steps)
    if sensor is not None:
        env = SensorNoise(env, sensor, scale, seed=noise_seed)
    names = list(getattr(model, "modality_names", []))
    fusion = getattr(model, "fusion", None)
    model.eval()
    rows, weight_sum, weight_n = [], np.zeros(len(names)), 0
    with torch.no_grad():
        for ep in range(episodes):
            obs, info = env.reset(seed=seed_start + ep)
            text = env.unwrapped.instruction
            model.reset()
            success = False
            while True:
                action = model.select_action(model.prepare_observation(obs, text))[0].float().cpu().numpy()
                w = getattr(fusion, "last_weights", None)
                if w is not None and names:
                    weight_sum += w.float().cpu().numpy().sum(0)
                    weight_n += w.shape[0]
                obs, _, term, trunc, info = env.step(action)
                success = success or bool(info["is_success"])
                if term or trunc:
                    break
            rows.append({"seed": seed_start + ep, "success": success, "route_completion": info["route_completion"],
                         "collisions": info["collisions"], "distance": info["distance"]})
    env.close()
    m = driving_metrics(rows)
    weights = {n: float(v) for n, v in zip(names, weight_sum / max(weight_n, 1))} if weight_n else {}
    return {"sensor": sensor, "scale": scale, "rows": rows, "route_completion": m["route_completion"],
            "success_rate": m["success_rate"], "collisions_per_km": m["collisions_per_km"], "weights": weights}
