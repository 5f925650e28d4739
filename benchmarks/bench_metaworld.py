"""Meta-World on this stack: the scripted experts' success per task, render speed, and the MT10 multi-task
language-conditioned policy (scripted demonstrations -> one VLA -> per-task success on held-out seeds).

    python benchmarks/bench_metaworld.py experts --suite mt50 --episodes 20 [--noise 0.0]
    python benchmarks/bench_metaworld.py render --task metaworld/reach-v3 --size 128
    python benchmarks/bench_metaworld.py mt10 --episodes-per-task 100 --steps 20000 --eval-episodes 50

Figures go to docs/benchmarks.md by hand (with the machine they were measured on).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cmd_experts(a) -> None:
    from vla_engine.envs.metaworld.suite import scripted_success
    from vla_engine.envs.metaworld_tasks import suite_tasks

    rows = []
    t0 = time.time()
    for task in suite_tasks(a.suite):
        r = scripted_success(task, episodes=a.episodes, seed_start=a.seed, action_noise=a.noise)
        rows.append(r)
        print(f"{task:36s} {r['success_rate']:6.0%}  [{r['ci_low']:.0%}-{r['ci_high']:.0%}]  "
              f"mean length {r['mean_length']:.0f}", flush=True)
    mean = sum(r["success_rate"] for r in rows) / len(rows)
    print(f"mean over {len(rows)} tasks: {mean:.1%} ({time.time() - t0:.0f} s)")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


def cmd_render(a) -> None:
    import numpy as np

    from vla_engine.envs import make_env, make_expert

    env = make_env(a.task, image_size=a.size)
    ex = make_expert(env)
    obs, _ = env.reset(seed=0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < a.seconds:
        obs, _, term, trunc, _ = env.step(ex(obs))
        n += 1
        if term or trunc:
            obs, _ = env.reset(seed=n)
    dt = time.perf_counter() - t0
    print(f"{a.task} {a.size}px: {n / dt:.1f} steps/s with a frame each (shadows and multisampling off); "
          f"frame mean {np.asarray(obs['pixels']).mean():.1f}")


def cmd_mt10(a) -> None:
    import torch

    from vla_engine.config.presets import load_preset
    from vla_engine.envs.metaworld.suite import evaluate_suite, generate_suite_dataset
    from vla_engine.runs.jobs import build_model_for, prepare_datasets
    from vla_engine.train.il.bc import BehavioralCloning

    torch.set_num_threads(a.threads)
    data = Path(a.data)
    t0 = time.time()
    if not (data / "meta" / "info.json").exists():
        generate_suite_dataset("mt10", a.episodes_per_task, data, image_size=a.image_size, progress=False,
                               action_noise=a.noise,
                               on_task=lambda i, n, t: print(f"datagen {i + 1}/{n} {t} ({time.time() - t0:.0f} s)",
                                                             flush=True))
    t_data = time.time() - t0
    cfg = load_preset(a.preset, [f"dataset.root={data}", "dataset.repo_id=local/metaworld-mt10",
                                 f"training.max_steps={a.steps}", f"training.num_threads={a.threads}",
                                 f"model.image_size={a.image_size}"] + a.set)
    train, _ = prepare_datasets(cfg, None, progress=False)
    model = build_model_for(cfg.model, train)
    t1 = time.time()
    res = BehavioralCloning(model, config=cfg.training, run_dir=a.run, progress=True).train(train)
    t_train = time.time() - t1
    t2 = time.time()
    suite = evaluate_suite(model, "mt10", episodes_per_task=a.eval_episodes, num_videos=1,
                           video_dir=Path(a.run) / "videos" if a.run else None, progress=False,
                           max_episode_steps=a.max_steps,
                           on_task=lambda i, n, t, s: print(f"eval {t}: {s['eval/success_rate']:.0%}", flush=True))
    print(suite.format())
    print(f"data {t_data:.0f} s, train {t_train:.0f} s ({res.step} steps, final loss {res.final_loss:.4f}), "
          f"eval {time.time() - t2:.0f} s")
    if a.run:
        (Path(a.run) / "suite.json").write_text(json.dumps(suite.to_dict(), indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("experts")
    e.add_argument("--suite", default="mt50")
    e.add_argument("--episodes", type=int, default=20)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--noise", type=float, default=0.0)
    e.add_argument("--json", default=None)
    r = sub.add_parser("render")
    r.add_argument("--task", default="metaworld/reach-v3")
    r.add_argument("--size", type=int, default=128)
    r.add_argument("--seconds", type=float, default=10.0)
    m = sub.add_parser("mt10")
    m.add_argument("--data", default="datasets/metaworld-mt10")
    m.add_argument("--episodes-per-task", type=int, default=100)
    m.add_argument("--image-size", type=int, default=96)
    m.add_argument("--noise", type=float, default=0.0)
    m.add_argument("--preset", default="il-bc-metaworld-mt10")
    m.add_argument("--steps", type=int, default=20000)
    m.add_argument("--eval-episodes", type=int, default=50)
    m.add_argument("--max-steps", type=int, default=None,
                   help="cut evaluation episodes here (default: Meta-World's 500); a cut only lowers success")
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--run", default=None, help="a run folder for metrics/checkpoints/videos")
    m.add_argument("--set", action="append", default=[], help="preset override section.field=value")
    a = p.parse_args()
    {"experts": cmd_experts, "render": cmd_render, "mt10": cmd_mt10}[a.cmd](a)


if __name__ == "__main__":
    main()
