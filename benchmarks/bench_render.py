"""Steps per second of the built-in tabletop tasks: env.step + a rendered camera frame.

    python benchmarks/bench_render.py                 # 96 px, pinned to one CPU core
    python benchmarks/bench_render.py --image-size 128 --steps 2000 --cores 0

For each task it prints three figures: step + render (the observation every policy rollout
pays for), step only (``render_images=False``, what expert data generation without images
pays) and step + render + scripted expert (what demonstration generation pays). Actions are
random in the first two; episodes reset when they end. ``--cores 1`` pins the process (and
the software GL rasteriser's threads) to one core, the figure the design targets (>= 150/s).
"""

from __future__ import annotations

import argparse
import os
import time


def _pin(cores: int) -> str:
    if cores <= 0 or not hasattr(os, "sched_setaffinity"):
        return "all cores"
    allowed = sorted(os.sched_getaffinity(0))[:cores]
    os.sched_setaffinity(0, set(allowed))
    os.environ.setdefault("LP_NUM_THREADS", str(cores))  # llvmpipe (Mesa software GL)
    return f"{len(allowed)} core(s) {allowed}"


def _run(task: str, image_size: int, steps: int, render: bool, expert: bool) -> float:
    import numpy as np

    from vla_engine.envs import make_env, make_expert

    env = make_env(task, image_size=image_size, render_images=render)
    policy = make_expert(env) if expert else None
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for _ in range(10):  # warm-up (GL context, caches)
        env.step(env.action_space.sample())
    obs, _ = env.reset(seed=1)
    episode = 1
    t0 = time.perf_counter()
    for _ in range(steps):
        if policy is not None:
            action = policy(obs)
        else:
            action = rng.uniform(-1.0, 1.0, env.unwrapped.action_dim).astype(np.float32)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=episode)
    elapsed = time.perf_counter() - t0
    env.close()
    return steps / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--cores", type=int, default=1, help="pin to this many cores (0: no pinning)")
    ap.add_argument("--tasks", default="reach,push,pick-place")
    args = ap.parse_args()
    where = _pin(args.cores)
    # After pinning, so GL threads inherit the affinity; importing vla_engine.envs picks MUJOCO_GL
    # (egl when headless) before mujoco loads.
    from vla_engine.envs.tabletop import mujoco

    print(f"tabletop env throughput, {args.image_size}px, {args.steps} steps, {where}, "
          f"MUJOCO_GL={os.environ.get('MUJOCO_GL', '(default)')}, mujoco {mujoco.__version__}")
    print(f"{'task':<12} {'step+render/s':>14} {'step only/s':>12} {'render+expert/s':>16}")
    for task in args.tasks.split(","):
        sr = _run(task, args.image_size, args.steps, render=True, expert=False)
        so = _run(task, args.image_size, args.steps, render=False, expert=False)
        se = _run(task, args.image_size, args.steps, render=True, expert=True)
        print(f"{task:<12} {sr:>14.0f} {so:>12.0f} {se:>16.0f}")


if __name__ == "__main__":
    main()
