"""Frames per second of the PushT and ALOHA sim tasks on one core (steps with an observation rendered).

    MUJOCO_GL=egl python benchmarks/bench_hub_envs.py [--steps 200]

* ``pusht/push-t`` at 96 px (gym-pusht: pymunk physics, pygame drawing);
* ``aloha/insertion`` and ``aloha/transfer-cube`` as the workbench runs them: one 128 px ``top`` camera,
  shadows and multisampling off;
* the same ALOHA physics rendered as gym-aloha renders every step (``top``, ``angle`` and ``front_close`` at
  640x480 with MuJoCo's default 4096 shadow map and multisampling), for the comparison;
* the ALOHA physics alone (no frame).
Random actions around the start pose (ALOHA) or uniform targets (PushT); one process, one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402


def _rate(env, steps: int, act, render=None) -> float:
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(act(rng, obs))
        if render is not None:
            render()
        if terminated or truncated:
            obs, _ = env.reset()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from vla_engine.envs import make_env
    from vla_engine.envs.aloha import AlohaEnv

    out: dict[str, float] = {}
    env = make_env("pusht/push-t", image_size=96)
    out["pusht/push-t 96px"] = _rate(env, args.steps, lambda rng, obs: rng.uniform(0, 512, 2))
    env.close()

    def around_start(rng, obs):
        return obs["agent_pos"] + rng.normal(0, 0.02, 14)

    for task in ("insertion", "transfer-cube"):
        env = AlohaEnv(task, image_size=128)
        out[f"aloha/{task} 1 camera 128px no shadows"] = _rate(env, args.steps, around_start)
        env.close()
        env = AlohaEnv(task, render_images=False)
        out[f"aloha/{task} physics only"] = _rate(env, args.steps, around_start)
        env.close()

    import mujoco

    env = AlohaEnv("insertion", render_images=False)
    env.model.vis.quality.shadowsize = 4096  # gym-aloha's scene as it ships (MuJoCo's defaults)
    env.model.vis.quality.offsamples = 4
    env.model.vis.global_.offwidth, env.model.vis.global_.offheight = 640, 480
    big = mujoco.Renderer(env.model, 480, 640)

    def three_cameras():
        for cam in ("top", "angle", "front_close"):
            big.update_scene(env.data, camera=cam)
            big.render()

    out["aloha/insertion 3 cameras 640x480 shadows (gym-aloha's rendering)"] = _rate(
        env, max(5, args.steps // 20), around_start, render=three_cameras)
    big.close()
    env.close()
    for k, v in out.items():
        print(f"{k:70s} {v:8.1f} frames/s")
    print(json.dumps({k: round(v, 1) for k, v in out.items()}))


if __name__ == "__main__":
    main()
