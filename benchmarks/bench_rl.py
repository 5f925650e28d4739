"""Our PPO / SAC against Stable-Baselines3 in one run, and the vector-env runner against raw MuJoCo.

Same env, same total steps, same seeds and the same (rl-zoo) hyperparameters for both; each run is its own
process with one torch thread; runs alternate (SB3 seed 0, ours seed 0, SB3 seed 1, ...) so drift of a shared
machine hits both. Reported per run: wall time, env steps/s, gradient updates/s, and the mean return of 10
deterministic episodes after training (observation normalisation statistics frozen, as each library saves them).
Ratios are ours / SB3 on the medians (wall time: lower is better).

    pip install -e '.[bench]'                             # stable-baselines3 (bench only)
    python benchmarks/bench_rl.py envs                    # runner steps/s vs mj_step / frame_skip, Sync/Async
    python benchmarks/bench_rl.py ppo --steps 200000 --seeds 0 1 2     # Hopper-v5, the target setting
    python benchmarks/bench_rl.py sac --steps 100000 --seeds 0 1 2     # HalfCheetah-v5
    python benchmarks/bench_rl.py ppo --steps 20000 --seeds 0 --json out.json   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")

# rl-baselines3-zoo's tuned settings (hyperparams/ppo.yml Hopper, sac.yml MuJoCo defaults)
PPO_ZOO = dict(n_steps=512, batch_size=32, gamma=0.999, learning_rate=9.80828e-05, ent_coef=0.00229519,
               clip_range=0.2, n_epochs=5, gae_lambda=0.99, max_grad_norm=0.7, vf_coef=0.835671,
               net=[256, 256], log_std_init=-2.0)
SAC_ZOO = dict(learning_starts=10_000, batch_size=256, learning_rate=3e-4, buffer_size=1_000_000, tau=0.005,
               gamma=0.99, net=[256, 256])


# ------------------------------------------------------------------------------------------------------
# One training run (in its own process).
# ------------------------------------------------------------------------------------------------------
def run_ours(algo: str, env_id: str, steps: int, seed: int, precision: str = "no") -> dict:
    import torch

    from vla_engine.config.training_config import RLConfig
    from vla_engine.train.rl.ppo import PPOTrainer, evaluate_returns
    from vla_engine.train.rl.sac import SACTrainer

    torch.set_num_threads(1)
    if algo == "ppo":
        z = PPO_ZOO
        cfg = RLConfig(algorithm="ppo", num_envs=1, steps_per_update=z["n_steps"],
                       num_minibatches=z["n_steps"] // z["batch_size"], update_epochs=z["n_epochs"],
                       learning_rate=z["learning_rate"], gamma=z["gamma"], gae_lambda=z["gae_lambda"],
                       clip_range=z["clip_range"], entropy_coef=z["ent_coef"], value_coef=z["vf_coef"],
                       max_grad_norm=z["max_grad_norm"], hidden_sizes=z["net"], activation="relu",
                       log_std_init=z["log_std_init"], ortho_init=False, normalize_observations=True,
                       normalize_rewards=True, seed=seed, num_threads=1, total_timesteps=steps)
        trainer = PPOTrainer(None, env_id, cfg, progress=False)
    else:
        z = SAC_ZOO
        cfg = RLConfig(algorithm="sac", num_envs=1, learning_starts=z["learning_starts"], batch_size=z["batch_size"],
                       learning_rate=z["learning_rate"], buffer_size=z["buffer_size"], tau=z["tau"], gamma=z["gamma"],
                       hidden_sizes=z["net"], activation="relu", normalize_observations=False, seed=seed,
                       num_threads=1, total_timesteps=steps, steps_per_update=1000, mixed_precision=precision)
        trainer = SACTrainer(None, env_id, cfg, progress=False)
    t0 = time.perf_counter()
    out = trainer.train()
    wall = time.perf_counter() - t0
    returns = evaluate_returns(trainer.policy, env_id, episodes=10, seed=10_000 + 100 * seed)
    return {"wall_s": wall, "steps_per_s": out["step"] / wall, "grad_updates": _our_updates(algo, out, cfg),
            "return": float(returns.mean())}


def _our_updates(algo: str, out: dict, cfg) -> int:
    if algo == "sac":
        return int(out["updates"])
    return int(out["updates"] * cfg.update_epochs * cfg.num_minibatches)


def run_sb3(algo: str, env_id: str, steps: int, seed: int) -> dict:
    import types

    # SB3's logger imports TensorBoard, which otherwise imports all of TensorFlow when it is installed
    # (a segfault next to MuJoCo's EGL); this is TensorBoard's own switch to its TF-free stub
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    import gymnasium
    import numpy as np
    import torch
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    if algo == "ppo":
        z = PPO_ZOO
        venv = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed), gamma=z["gamma"])
        model = PPO("MlpPolicy", venv, n_steps=z["n_steps"], batch_size=z["batch_size"], gamma=z["gamma"],
                    learning_rate=z["learning_rate"], ent_coef=z["ent_coef"], clip_range=z["clip_range"],
                    n_epochs=z["n_epochs"], gae_lambda=z["gae_lambda"], max_grad_norm=z["max_grad_norm"],
                    vf_coef=z["vf_coef"], seed=seed, device="cpu",
                    policy_kwargs=dict(log_std_init=z["log_std_init"], ortho_init=False, activation_fn=torch.nn.ReLU,
                                       net_arch=dict(pi=z["net"], vf=z["net"])))
    else:
        z = SAC_ZOO
        venv = make_vec_env(env_id, n_envs=1, seed=seed)
        model = SAC("MlpPolicy", venv, learning_starts=z["learning_starts"], batch_size=z["batch_size"],
                    learning_rate=z["learning_rate"], buffer_size=z["buffer_size"], tau=z["tau"], gamma=z["gamma"],
                    seed=seed, device="cpu", policy_kwargs=dict(net_arch=z["net"]))
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - t0
    updates = int(model._n_updates)  # PPO: epochs x minibatches per rollout; SAC: gradient steps
    if algo == "ppo":
        updates = updates * (z["n_steps"] // z["batch_size"])  # SB3's PPO counts epochs, not minibatches
        venv.training, venv.norm_reward = False, False
    env = gymnasium.make(env_id)
    rets = []
    for ep in range(10):
        obs, _ = env.reset(seed=10_000 + 100 * seed + ep)
        total, done = 0.0, False
        while not done:
            o = venv.normalize_obs(obs[None]) if isinstance(venv, VecNormalize) else obs[None]
            action, _ = model.predict(o, deterministic=True)
            obs, r, term, trunc, _ = env.step(action[0])
            total += r
            done = term or trunc
        rets.append(total)
    return {"wall_s": wall, "steps_per_s": steps / wall, "grad_updates": updates, "return": float(np.mean(rets))}


def _child(args) -> None:
    if args.lib == "ours":
        r = run_ours(args.algo, args.env, args.steps, args.seed, args.precision)
    else:
        r = run_sb3(args.algo, args.env, args.steps, args.seed)
    print("RESULT " + json.dumps(r))


def _spawn(lib: str, algo: str, env_id: str, steps: int, seed: int, precision: str = "no") -> dict:
    cmd = [sys.executable, __file__, "_child", "--lib", lib, "--algo", algo, "--env", env_id, "--steps", str(steps),
           "--seed", str(seed), "--precision", precision]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{lib} {algo} seed {seed} failed:\n{out.stderr[-3000:]}")
    r = json.loads(line[len("RESULT "):])
    r["grad_updates_per_s"] = r["grad_updates"] / r["wall_s"]
    return r


def compare(algo: str, env_id: str, steps: int, seeds: list[int], precision: str = "no") -> dict:
    rows: dict[str, list[dict]] = {"sb3": [], "ours": []}
    for seed in seeds:
        for lib in ("sb3", "ours"):
            r = _spawn(lib, algo, env_id, steps, seed, precision)
            rows[lib].append(r)
            print(f"{algo} {env_id} {lib:4s} seed {seed}: {r['wall_s']:7.1f} s, {r['steps_per_s']:7.0f} steps/s, "
                  f"{r['grad_updates_per_s']:6.0f} updates/s, return {r['return']:8.1f}", flush=True)
    med = {lib: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for lib, rs in rows.items()}
    mean_ret = {lib: statistics.mean(r["return"] for r in rs) for lib, rs in rows.items()}
    ratios = {"wall_time": med["ours"]["wall_s"] / med["sb3"]["wall_s"],
              "grad_updates_per_s": med["ours"]["grad_updates_per_s"] / med["sb3"]["grad_updates_per_s"],
              "mean_return": mean_ret["ours"] / mean_ret["sb3"] if mean_ret["sb3"] else float("nan")}
    print(f"{algo} {env_id} {steps} steps, seeds {seeds}: ours/SB3 wall time {ratios['wall_time']:.2f}x, "
          f"updates/s {ratios['grad_updates_per_s']:.2f}x, mean return {mean_ret['ours']:.1f} vs "
          f"{mean_ret['sb3']:.1f} ({ratios['mean_return']:.2f}x)")
    return {"algo": algo, "env": env_id, "steps": steps, "seeds": seeds, "runs": rows, "ratios": ratios,
            "mean_return": mean_ret}


# ------------------------------------------------------------------------------------------------------
# Env throughput.
# ------------------------------------------------------------------------------------------------------
def bench_envs(env_id: str = "Hopper-v5", steps: int = 20_000, num_envs: tuple[int, ...] = (1, 8),
               rounds: int = 3) -> dict:
    """Runner steps/s against raw ``mj_step`` x frame_skip, alternating (raw, batched, sync, async) per round.

    Random actions, so Hopper falls and resets often: the runner pays for those resets, the raw loop only
    for an ``mj_resetData`` every 200 steps. Ratios are of the medians over ``rounds``."""
    import gymnasium
    import mujoco
    import numpy as np

    from vla_engine.train.rl.vec_env import make_vec_env

    env = gymnasium.make(env_id)
    env.reset(seed=0)
    u = env.unwrapped
    m, d, skip = u.model, u.data, u.frame_skip
    ctrl = np.zeros(m.nu)

    def raw_rate() -> float:
        t0 = time.perf_counter()
        for i in range(steps):
            d.ctrl[:] = ctrl
            mujoco.mj_step(m, d, nstep=skip)
            if i % 200 == 0:
                mujoco.mj_resetData(m, d)  # stay near the start pose (a fallen hopper is cheaper to simulate)
        return steps / (time.perf_counter() - t0)

    def runner_rate(kind: str, n: int) -> float:
        rng = np.random.default_rng(0)
        venv = make_vec_env(env_id, n, seed=0, kind=kind)
        venv.reset(seed=0)
        acts = rng.uniform(-1, 1, (64, n, int(np.prod(venv.single_action_space.shape)))).astype(np.float32)
        k = max(1, steps // n)
        t0 = time.perf_counter()
        for i in range(k):
            venv.step(acts[i % 64])
        rate = k * n / (time.perf_counter() - t0)
        venv.close()
        return rate

    rates: dict[str, list[float]] = {}
    for r in range(rounds):
        rates.setdefault("raw", []).append(raw_rate())
        for kind in ("batched", "sync", "async"):
            for n in num_envs:
                rates.setdefault(f"{kind}_{n}", []).append(runner_rate(kind, n))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()), flush=True)
    raw = statistics.median(rates["raw"])
    out = {"raw_mj_step_per_s_over_frame_skip": raw}
    print(f"{env_id}: raw mj_step x{skip}: {raw:8.0f} control steps/s (median of {rounds})")
    for key, vals in rates.items():
        if key != "raw":
            out[key] = statistics.median(vals)
            kind, n = key.split("_")
            print(f"{env_id}: {kind:7s} x{n}: {out[key]:8.0f} env steps/s ({out[key] / raw:.2f}x raw)")
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["ppo", "sac", "envs", "_child"])
    p.add_argument("--env", default=None, help="gymnasium id (default: Hopper-v5 for ppo/envs, HalfCheetah-v5 for sac)")
    p.add_argument("--steps", type=int, default=None, help="env steps per run (default 200000 ppo, 100000 sac)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--rounds", type=int, default=3, help="envs: alternating rounds (medians are reported)")
    p.add_argument("--lib", default="ours")
    p.add_argument("--algo", default="ppo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=["no", "bf16"], default="no",
                   help="ours only: the SAC update's matmuls in bfloat16 (training.mixed_precision)")
    args = p.parse_args(argv)
    if args.what == "_child":
        _child(args)
        return {}
    if args.what == "envs":
        res = bench_envs(args.env or "Hopper-v5", args.steps or 20_000, rounds=args.rounds)
    else:
        env_id = args.env or ("Hopper-v5" if args.what == "ppo" else "HalfCheetah-v5")
        steps = args.steps or (200_000 if args.what == "ppo" else 100_000)
        res = compare(args.what, env_id, steps, args.seeds, args.precision)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
