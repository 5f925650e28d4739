"""Driving benchmarks: world step rates with each sensor, the scripted expert's success, and (``--train``) BC of
MultiSensorVLA with each fusion against camera-only on the same data, evaluated on the same held-out seeds.

    python benchmarks/bench_driving.py                     # step rates + expert success (20 seeds per task)
    python benchmarks/bench_driving.py --train --steps 1500 --episodes 60 --eval 30   # fusions vs camera-only
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

torch.set_num_threads(1)


def step_rates(steps: int = 300) -> None:
    from vla_engine.envs import make_env

    for label, kw in (("camera 96 px + lidar 64x16 + radar + IMU", {}), ("no camera (lidar, radar, IMU)",
                      {"render_images": False}), ("camera only (no lidar)", {"lidar": False})):
        env = make_env("driving/turn", image_size=96, **kw)
        env.reset(seed=0)
        a = np.array([0.0, 0.3, 0.0], np.float32)
        t0, n = time.perf_counter(), 0
        while n < steps:
            _, _, term, trunc, _ = env.step(a)
            n += 1
            if term or trunc:
                env.reset(seed=n)
        print(f"  {label:45s} {n / (time.perf_counter() - t0):7.1f} steps/s")


def expert_success(seeds: int) -> None:
    from vla_engine.envs import make_env, make_expert
    from vla_engine.envs.driving import DRIVING_TASKS
    from vla_engine.envs.driving.metrics import driving_metrics

    for task in DRIVING_TASKS:
        env = make_env(task.name, image_size=32, render_images=False)
        expert = make_expert(env)
        rows = []
        for seed in range(1_000_000, 1_000_000 + seeds):
            env.reset(seed=seed)
            while True:
                _, _, term, trunc, info = env.step(expert.act())
                if term or trunc:
                    break
            rows.append({**info, "success": info["is_success"]})
        m = driving_metrics(rows)
        print(f"  {task.name:22s} success {m['success_rate']:.0%}  route completion {m['route_completion']:.2f}  "
              f"collisions/km {m['collisions_per_km']:.2f}  ({m['km']:.2f} km)")


def fusion_comparison(steps: int, episodes: int, eval_episodes: int) -> None:
    from vla_engine.config.presets import load_preset
    from vla_engine.data import build_datasets
    from vla_engine.eval.evaluator import evaluate_policy
    from vla_engine.models import MultiSensorVLA, VLAModel
    from vla_engine.train.il.bc import BehavioralCloning

    cfg = load_preset("driving-bc", [f"dataset.episodes={episodes}", "dataset.root=datasets/bench-driving-turn",
                                     "dataset.repo_id=local/bench-driving-turn"])
    data, _ = build_datasets(cfg.dataset, n_obs_steps=1, chunk_size=1)
    rows = {}
    for name in ("camera-only", "gated", "concat", "cross-modal", "hierarchical"):
        torch.manual_seed(0)
        if name == "camera-only":
            model = VLAModel(cfg.model.replace(sensors=None))
        else:
            model = MultiSensorVLA(cfg.model.replace(sensors=cfg.model.sensors.replace(fusion=name)))
        BehavioralCloning(model, cfg.training.replace(max_steps=steps), progress=False).train(data)
        ev = evaluate_policy(model, "driving/turn", episodes=eval_episodes, num_videos=0, progress=False)
        rows[name] = ev.summary
        s = ev.summary
        print(f"  {name:13s} success {s['eval/success_rate']:.0%}  route completion "
              f"{s.get('eval/route_completion', float('nan')):.2f}  collisions/km {s.get('eval/collisions_per_km', 0):.1f}",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--train", action="store_true")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--episodes", type=int, default=60)
    p.add_argument("--eval", type=int, default=30)
    a = p.parse_args()
    print("world step rates (one core, driving/turn):")
    step_rates()
    print(f"scripted expert on {a.seeds} held-out seeds per task:")
    expert_success(a.seeds)
    if a.train:
        print(f"BC on driving/turn ({a.episodes} episodes, {a.steps} steps), evaluated on {a.eval} held-out seeds:")
        fusion_comparison(a.steps, a.episodes, a.eval)


if __name__ == "__main__":
    main()
