"""Driving benchmarks: world step rates with each sensor, the scripted expert's success, (``--train``) BC of
MultiSensorVLA with each fusion against camera-only on the same data and held-out seeds, and (``--corrupt``)
the trained gated and concatenation models with one sensor corrupted by noise at test time.

    python benchmarks/bench_driving.py                     # step rates + expert success (20 seeds per task)
    python benchmarks/bench_driving.py --skip-world --train --task driving/follow --image-size 48 \
        --episodes 30 --steps 1000 --eval 30 --out outputs/bench-driving      # camera-only vs the 4 fusions
    python benchmarks/bench_driving.py --skip-world --corrupt --out outputs/bench-driving --eval 20

On 2 cores, run one process per model on a shared ``--out`` (``--models camera-only``, ``--models gated``,
...; start the second once the first has printed its data line, so the data is generated once), then
``--skip-world --table --out ...`` prints them side by side.

``--train`` generates the task's data once (``datasets/bench-<task>-<size>px-<episodes>``, reused by later
runs), reads every frame into memory once (``InMemoryFrames``), then trains each model from the same seed for
the same number of steps with one torch thread and evaluates it with the shared evaluator on the same
held-out seeds (1,000,000+). Each fusion model is compared with camera-only per seed: McNemar's exact test on
success and Wilcoxon's signed-rank test on route completion. Checkpoints go to ``<out>/<model>/`` and the
table to ``<out>/comparison.json``; ``--corrupt`` reads the ``gated`` and ``concat`` checkpoints from there.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
os.environ.setdefault("LP_NUM_THREADS", "1")  # llvmpipe (Mesa's software GL) renders on one thread too

MODELS = ("camera-only", "gated", "concat", "cross-modal", "hierarchical")


def step_rates(steps: int = 300) -> None:
    from vla_engine.envs import make_env, make_expert

    for label, kw in (("camera 96 px + lidar 64x16 + radar + IMU", {}), ("no camera (lidar, radar, IMU)",
                      {"render_images": False}), ("camera only (no lidar)", {"lidar": False})):
        env = make_env("driving/turn", image_size=96, **kw)
        expert = make_expert(env)
        env.reset(seed=0)
        for _ in range(5):  # warm-up: the GL context and the renderer are made on the first frame
            env.step(expert.act())
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        while n < steps:  # the expert drives, so the scene (traffic, junctions) is what an episode sees
            _, _, term, trunc, _ = env.step(expert.act())
            n += 1
            if term or trunc:
                env.reset(seed=n)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        # steps per CPU second is the one-core rate whatever else runs on the machine; per wall second is
        # what this run got (lower when other processes share the core)
        print(f"  {label:45s} {n / cpu:7.1f} steps per CPU-second, {n / wall:7.1f} per wall-second")


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


def paired_tests(base: list[dict], other: list[dict]) -> dict[str, float]:
    """Per-seed comparison of two evaluations on the same seeds: McNemar's exact test on success (discordant
    pairs b = only ``other`` succeeds, c = only ``base``) and Wilcoxon's signed-rank test on route completion."""
    from scipy.stats import binomtest, wilcoxon

    if [r["seed"] for r in base] != [r["seed"] for r in other]:
        raise ValueError("paired tests need the same seeds in the same order for both evaluations")
    sb = np.array([bool(r["success"]) for r in base])
    so = np.array([bool(r["success"]) for r in other])
    b, c = int((so & ~sb).sum()), int((sb & ~so).sum())
    p_mcnemar = float(binomtest(min(b, c), b + c, 0.5).pvalue) if b + c else 1.0
    d = np.array([o["route_completion"] - r["route_completion"] for r, o in zip(base, other)])
    p_wilcoxon = float(wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return {"only_other": b, "only_base": c, "p_mcnemar": p_mcnemar, "rc_diff": float(d.mean()),
            "p_wilcoxon": p_wilcoxon}


def _build(name: str, cfg):
    from vla_engine.models import MultiSensorVLA, VLAModel

    if name == "camera-only":
        return VLAModel(cfg.model.replace(sensors=None))
    return MultiSensorVLA(cfg.model.replace(sensors=cfg.model.sensors.replace(fusion=name)))


def comparison_config(task: str, episodes: int, image_size: int, steps: int, dropout: float, noise: float = 0.0,
                      action_noise: float | None = None):
    """The driving-bc preset on ``task`` at ``image_size`` px, controls only (no waypoint head, so every model
    has the same loss), ``dropout`` sensor dropout and ``noise`` sensor-noise augmentation; ``action_noise``: the
    demonstrations' DART noise (None: the preset's)."""
    from vla_engine.config.presets import load_preset

    tag = f"bench-{task.replace('/', '-')}-{image_size}px-{episodes}"
    if action_noise is not None:
        tag += f"-dart{action_noise:g}"  # its own folder: another noise is other data
    # a lighter PointNet (16-32-64, a 64-D lidar feature): the preset's 32-64-128 over 1024 rays x batch 32 was
    # a third of a fusion model's training step on one core
    return load_preset("driving-bc", [
        "model.sensors.lidar_dim=64", "model.sensors.encoder_settings.lidar.hidden_dims=[16, 32, 64]",
        f"dataset.task={task}", f"dataset.episodes={episodes}", f"dataset.root=datasets/{tag}",
        f"dataset.repo_id=local/{tag}", f"dataset.image_size={image_size}", f"model.image_size={image_size}",
        "model.sensors.prediction_horizon=0", f"model.sensors.sensor_dropout={dropout}",
        f"model.sensors.sensor_noise={noise}",
        f"training.max_steps={steps}", f"eval.task={task}",
        *([f"dataset.action_noise={action_noise}"] if action_noise is not None else [])])


def fusion_comparison(task: str, steps: int, episodes: int, eval_episodes: int, image_size: int, out: Path,
                      dropout: float, models: list[str], noise: float = 0.0, seed: int = 0,
                      action_noise: float | None = None) -> None:
    from vla_engine.data import build_datasets
    from vla_engine.data.driving.cache import InMemoryFrames
    from vla_engine.eval.evaluator import evaluate_policy
    from vla_engine.train.il.bc import BehavioralCloning

    cfg = comparison_config(task, episodes, image_size, steps, dropout, noise, action_noise)
    cfg = cfg.replace(training=cfg.training.replace(seed=seed))  # batch order and augmentation draws
    t0 = time.perf_counter()
    data, _ = build_datasets(cfg.dataset, n_obs_steps=1, chunk_size=1, progress=False)
    t1 = time.perf_counter()
    frames = InMemoryFrames(data)
    print(f"  data: {data.num_episodes} episodes, {len(data)} frames ({t1 - t0:.0f} s to generate or open, "
          f"{time.perf_counter() - t1:.0f} s to read into memory)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "comparison.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    results["setup"] = {"task": task, "episodes": episodes, "frames": len(data), "steps": steps,
                        "image_size": image_size, "eval_episodes": eval_episodes, "sensor_dropout": dropout,
                        "sensor_noise": noise, "train_seed": seed, "action_noise": cfg.dataset.action_noise,
                        "batch_size": cfg.training.batch_size}
    for name in models:
        torch.manual_seed(seed)
        model = _build(name, cfg)
        t0 = time.perf_counter()
        tr = BehavioralCloning(model, cfg.training, progress=False).train(frames)
        t_train = time.perf_counter() - t0
        model.save_pretrained(out / name)
        t0 = time.perf_counter()
        ev = evaluate_policy(model, task, episodes=eval_episodes, num_videos=0, progress=False)
        s = ev.summary
        rows = [{"seed": r["seed"], "success": bool(r["success"]), "route_completion": r["route_completion"],
                 "collisions": r["collisions"], "distance": r["distance_m"]} for r in ev.episodes]
        results[name] = {"success_rate": s["eval/success_rate"], "route_completion": s["eval/route_completion"],
                         "collisions_per_km": s["eval/collisions_per_km"], "off_road_rate": s["eval/off_road_rate"],
                         "final_loss": getattr(tr, "final_loss", None), "train_s": t_train,
                         "eval_s": time.perf_counter() - t0, "rows": rows}
        # re-read before writing: several processes (one model each, --models) may share one --out
        results = {**(json.loads(results_file.read_text()) if results_file.is_file() else {}),
                   "setup": results["setup"], name: results[name]}
        results_file.write_text(json.dumps(results, indent=1))
        print(f"  {name:13s} trained {t_train:5.0f} s, evaluated {results[name]['eval_s']:4.0f} s: success "
              f"{s['eval/success_rate']:.0%}  route completion {s['eval/route_completion']:.2f}  collisions/km "
              f"{s['eval/collisions_per_km']:.1f}  off-road {s['eval/off_road_rate']:.0%}", flush=True)
    print_table(results)


def print_table(results: dict) -> None:
    base = results.get("camera-only")
    print(f"\n  {'model':13s} {'success':>8s} {'route compl.':>12s} {'coll./km':>9s}   vs camera-only: "
          f"RC diff (Wilcoxon p), success only-this/only-camera (McNemar p)")
    for name in MODELS:
        r = results.get(name)
        if r is None:
            continue
        line = f"  {name:13s} {r['success_rate']:8.0%} {r['route_completion']:12.2f} {r['collisions_per_km']:9.1f}"
        if base is not None and name != "camera-only":
            t = paired_tests(base["rows"], r["rows"])
            r["vs_camera_only"] = t
            line += (f"   {100 * t['rc_diff']:+5.1f} pts (p={t['p_wilcoxon']:.2g}), "
                     f"{t['only_other']}/{t['only_base']} (p={t['p_mcnemar']:.2g})")
        print(line)


def corruption(out: Path, task: str | None, eval_episodes: int, scales: dict[str, float]) -> None:
    from vla_engine.envs.driving.corruption import evaluate_corrupted
    from vla_engine.models import VLAModel

    setup = json.loads((out / "comparison.json").read_text()).get("setup", {}) if (out / "comparison.json").is_file() \
        else {}
    task = task or setup.get("task")
    if task is None:
        raise SystemExit(f"--corrupt: no {out / 'comparison.json'}; run --train with the same --out first, or give --task")
    report = {}
    for name in ("gated", "concat"):
        if not (out / name).is_dir():
            raise SystemExit(f"--corrupt: no {name} checkpoint in {out}; run --train --models {name} with that --out")
        model = VLAModel.from_pretrained(out / name)
        report[name] = {}
        for sensor in (None, *scales):
            t0 = time.perf_counter()
            r = evaluate_corrupted(model, task, sensor, scales.get(sensor, 0.0), episodes=eval_episodes)
            report[name][sensor or "clean"] = r
            w = "  ".join(f"{k} {v:.3f}" for k, v in r["weights"].items())
            label = "clean" if sensor is None else f"{sensor} x{scales[sensor]:g}"
            print(f"  {name:7s} {label:11s} route completion {r['route_completion']:.2f}  success "
                  f"{r['success_rate']:.0%}  collisions/km {r['collisions_per_km']:.1f}"
                  f"{'  weights: ' + w if w else ''}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    (out / "corruption.json").write_text(json.dumps(report, indent=1))
    for sensor in scales:
        drops = {n: report[n]["clean"]["route_completion"] - report[n][sensor]["route_completion"] for n in report}
        wg = report["gated"]
        print(f"  {sensor}: route completion drop gated {100 * drops['gated']:+.1f} pts, concat "
              f"{100 * drops['concat']:+.1f} pts; gated weight on {sensor} {wg['clean']['weights'].get(sensor, 0):.3f}"
              f" clean -> {wg[sensor]['weights'].get(sensor, 0):.3f} corrupted")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=20, help="held-out seeds per task for the expert")
    p.add_argument("--skip-world", action="store_true", help="skip the step rates and the expert")
    p.add_argument("--train", action="store_true", help="camera-only vs the four fusions (BC)")
    p.add_argument("--corrupt", action="store_true", help="gated vs concat with one sensor corrupted")
    p.add_argument("--task", default=None, help="driving task of --train (default driving/follow)")
    p.add_argument("--models", default=",".join(MODELS), help="comma list of " + ", ".join(MODELS))
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--eval", type=int, default=30)
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--dropout", type=float, default=0.2, help="sensor dropout while training the fusion models")
    p.add_argument("--noise", type=float, default=0.0,
                   help="training: share of samples with one sensor corrupted by noise (model.sensors.sensor_noise)")
    p.add_argument("--lidar-noise", type=float, default=2.0, help="--corrupt: lidar noise scale (m per coordinate)")
    p.add_argument("--radar-noise", type=float, default=5.0, help="--corrupt: radar noise scale (x NOISE_STD)")
    p.add_argument("--out", default="outputs/bench-driving")
    p.add_argument("--action-noise", type=float, default=None,
                   help="--train: DART noise of the generated demonstrations (default: the driving-bc preset's)")
    p.add_argument("--train-seed", type=int, default=0, help="torch seed of every model's initialisation and batches")
    p.add_argument("--table", action="store_true",
                   help="print the comparison table of --out (e.g. after one process per model on a shared --out)")
    a = p.parse_args()
    unknown = set(a.models.split(",")) - set(MODELS)
    if unknown:
        raise SystemExit(f"--models: unknown {', '.join(sorted(unknown))}; choose from {', '.join(MODELS)}")
    if not a.skip_world:
        print("world step rates (one core, driving/turn, expert driving):")
        step_rates()
        print(f"scripted expert on {a.seeds} held-out seeds per task:")
        expert_success(a.seeds)
    if a.train:
        task = a.task or "driving/follow"
        print(f"BC on {task} ({a.episodes} episodes, {a.steps} steps, {a.image_size} px), {a.eval} held-out seeds:")
        fusion_comparison(task, a.steps, a.episodes, a.eval, a.image_size, Path(a.out), a.dropout,
                          [m for m in MODELS if m in a.models.split(",")], a.noise, a.train_seed,
                          a.action_noise)
    if a.table:
        print_table(json.loads((Path(a.out) / "comparison.json").read_text()))
    if a.corrupt:
        print(f"corrupted sensors at test time ({a.eval} held-out seeds):")
        corruption(Path(a.out), a.task, a.eval, {"lidar": a.lidar_noise, "radar": a.radar_noise})


if __name__ == "__main__":
    main()
