"""Imitation-learning benchmarks, each variant with the same data, network, steps and seeds.

    python benchmarks/bench_il.py mixed --episodes 30 --steps 3000
    python benchmarks/bench_il.py bc-peer --envs Hopper-v5 HalfCheetah-v5 --steps 10000 --seeds 0 1
    python benchmarks/bench_il.py gail-peer --env Hopper-v5 --timesteps 100000 --seeds 0

``mixed``: offline BC on a mixed-quality Minari dataset: plain BC against FilteredBC (top 10%) and
WeightedBC (return and advantage weighting), D4RL-style normalised scores. The dataset is made here with
minari's DataCollector on Pendulum-v1 from three policies: random torques, a "medium" swing-up that acts
at random half of the time, and the swing-up expert (tests/test_bc_datasets).

``bc-peer`` / ``gail-peer``: ours against the ``imitation`` library (BC; GAIL over Stable-Baselines3's
PPO) on the same Minari expert data (``vla/<env>/expert-v0`` under ``--root``, made with
``python -m vla_engine.data.minari_io --env Hopper-v5 --levels random,expert --expert <ckpt>``), one
torch thread, alternating ours and imitation's per seed. The peer is a bench-only install: imitation
1.0.1 pins gymnasium~=0.29 and stable-baselines3~=2.2.1, which do not resolve next to gymnasium 1.4 /
SB3 2.9.2, so it goes in without its pins (its modules used here import and run against them as is):

    pip install --no-deps imitation==1.0.1 jsonpickle

Figures go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def cmd_mixed(a) -> None:
    import torch

    from test_bc_datasets import _swing_up
    from vla_engine.config.training_config import ILConfig
    from vla_engine.data.bc_datasets import BCDataset, FilteredBCDataset, WeightedBCDataset, create_bc_dataloader
    from vla_engine.data.minari_io import make_level_datasets, rollout_returns
    from vla_engine.train.il.bc import BehavioralCloning
    from vla_engine.train.il.policies import StateMLPPolicy

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)

    def medium(obs):
        return _swing_up(obs) if rng.random() < 0.5 else rng.uniform(-2, 2, 1).astype(np.float32)

    root = Path(a.root or tempfile.mkdtemp(prefix="bench-il-"))
    t0 = time.time()
    ids = make_level_datasets("Pendulum-v1", {"expert": _swing_up, "medium": medium}, episodes=a.episodes, root=root,
                              overwrite=True)
    print(f"datasets {ids} in {time.time() - t0:.0f} s under {root}")
    variants = {
        "BC": lambda: BCDataset(ids["mixed"], root=root),
        "FilteredBC top 10%": lambda: FilteredBCDataset(ids["mixed"], root=root, top_percent=10),
        "WeightedBC return T=0.5": lambda: WeightedBCDataset(ids["mixed"], root=root, weighting="return", temperature=0.5),
        "WeightedBC advantage T=1": lambda: WeightedBCDataset(ids["mixed"], root=root, weighting="advantage"),
        "BC on -expert (reference)": lambda: BCDataset(ids["expert"], root=root),
    }
    for name, make in variants.items():
        scores = []
        for seed in range(a.seeds):
            ds = make()
            torch.manual_seed(seed)
            policy = StateMLPPolicy(state_dim=ds.state_dim, action_dim=ds.action_dim, hidden_sizes=[128, 128])
            loader = create_bc_dataloader(ds, batch_size=64, weighted_sampling=True, seed=seed)
            cfg = ILConfig(learning_rate=3e-3, max_steps=a.steps, warmup_steps=0, log_every=100, num_threads=1,
                           seed=seed)
            BehavioralCloning(policy, cfg, progress=False).train(loader)
            scores.append(ds.normalized_score(rollout_returns("Pendulum-v1", policy.as_callable(), a.eval_episodes,
                                                              seed=10_000 + 100 * seed)).mean())
        print(f"{name:28s} normalised score {np.mean(scores):6.1f} +- {np.std(scores):.1f} over {a.seeds} seeds "
              f"({len(ds)} transitions)", flush=True)


PEER_INSTALL = "pip install --no-deps imitation==1.0.1 jsonpickle"


def _need_imitation() -> None:
    try:
        import imitation  # noqa: F401
    except ImportError:
        raise SystemExit(f"the peer library 'imitation' is not installed; install it with: {PEER_INSTALL}") from None


def _expert_dataset(env: str, root: str):
    """Our reader of the ``-expert`` Minari set of ``env`` (the data both sides train on)."""
    from vla_engine.data.bc_datasets import BCDataset
    from vla_engine.data.minari_io import env_short_name

    did = f"vla/{env_short_name(env)}/expert-v0"
    ds = BCDataset(did, root=root)
    if ds.ref_min_score is None:
        raise SystemExit(f"{did} has no reference scores; make it with minari_io --levels random,expert")
    return ds


def _peer_logger(tag: str):
    """imitation's logger writing CSV into a temporary folder (its default also prints tables to stdout)."""
    from imitation.util import logger as imit_logger

    return imit_logger.configure(tempfile.mkdtemp(prefix=f"imitation-{tag}-"), ["csv"])


def peer_transitions(ds, episodes: int | None = None):
    """imitation's ``Transitions`` of the first ``episodes`` episodes of the Minari set ``ds`` reads (its
    collate function needs next_obs and dones even for BC)."""
    from imitation.data import types

    obs, nxt, acts, dones = [], [], [], []
    for i, ep in enumerate(ds.minari.iterate_episodes()):
        if episodes is not None and i >= episodes:
            break
        n = len(ep.actions)
        o = np.asarray(ep.observations, dtype=np.float32)
        obs.append(o[:n])
        nxt.append(o[1:n + 1])
        acts.append(np.asarray(ep.actions, dtype=np.float32))
        d = np.zeros(n, bool)
        d[-1] = True
        dones.append(d)
    obs = np.concatenate(obs)
    return types.Transitions(obs=obs, acts=np.concatenate(acts), infos=np.array([{}] * len(obs)),
                             next_obs=np.concatenate(nxt), dones=np.concatenate(dones))


# ---- BC ---------------------------------------------------------------------------------------------
def bc_ours(ds, a, seed: int):
    """(policy as obs -> action, training seconds): our BehavioralCloning on a StateMLPPolicy."""
    import torch

    from vla_engine.config.training_config import ILConfig
    from vla_engine.data.bc_datasets import create_bc_dataloader
    from vla_engine.train.il.bc import BehavioralCloning
    from vla_engine.train.il.policies import StateMLPPolicy

    torch.manual_seed(seed)
    policy = StateMLPPolicy(state_dim=ds.state_dim, action_dim=ds.action_dim, hidden_sizes=list(a.hidden))
    loader = create_bc_dataloader(ds, batch_size=a.batch_size, weighted_sampling=False, seed=seed)
    cfg = ILConfig(learning_rate=a.lr, max_steps=a.steps, log_every=1000, num_threads=1, seed=seed, device="cpu")
    t0, c0 = time.perf_counter(), time.process_time()
    BehavioralCloning(policy, cfg, progress=False).train(loader)
    return policy.as_callable(), time.perf_counter() - t0, time.process_time() - c0


def bc_peer(ds, env_id: str, a, seed: int):
    """(policy, training seconds): imitation's BC, an SB3 ActorCriticPolicy with the same hidden layers (ReLU),
    its running-norm observation extractor, a one-layer value head (BC never trains it), Adam at the same lr."""
    import gymnasium
    import torch
    from imitation.algorithms import bc
    from imitation.data import types
    from imitation.policies.base import NormalizeFeaturesExtractor
    from imitation.util.networks import RunningNorm
    from stable_baselines3.common.policies import ActorCriticPolicy

    torch.manual_seed(seed)
    env = gymnasium.make(env_id)
    policy = ActorCriticPolicy(env.observation_space, env.action_space, lr_schedule=lambda _: a.lr,
                               net_arch=dict(pi=list(a.hidden), vf=[]), activation_fn=torch.nn.ReLU,
                               features_extractor_class=NormalizeFeaturesExtractor,
                               features_extractor_kwargs=dict(normalize_class=RunningNorm))
    demos = peer_transitions(ds)
    trainer = bc.BC(observation_space=env.observation_space, action_space=env.action_space,
                    rng=np.random.default_rng(seed), policy=policy, demonstrations=demos,
                    batch_size=a.batch_size, optimizer_kwargs=dict(lr=a.lr), device="cpu",
                    custom_logger=_peer_logger("bc"))
    env.close()
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train(n_batches=a.steps, log_interval=1000, progress_bar=False)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    pol = trainer.policy
    return (lambda obs: pol.predict(np.asarray(obs, dtype=np.float32), deterministic=True)[0]), secs, cpu


def cmd_bc_peer(a) -> None:
    import torch

    from vla_engine.data.minari_io import rollout_returns

    _need_imitation()
    torch.set_num_threads(1)
    per10k = 10_000 / a.steps
    if a.warmup:  # first-call costs (imports, allocator, thread pools) outside the timed runs
        ds = _expert_dataset(a.envs[0], a.root)
        warm = argparse.Namespace(**{**vars(a), "steps": a.warmup})
        bc_ours(ds, warm, 0), bc_peer(ds, a.envs[0], warm, 0)
    for env_id in a.envs:
        ds = _expert_dataset(env_id, a.root)
        print(f"{env_id}: {len(ds)} expert transitions ({ds.num_episodes} episodes), reference returns random "
              f"{ds.ref_min_score:.1f} / expert {ds.ref_max_score:.1f}; MLP {a.hidden}, batch {a.batch_size}, "
              f"{a.steps} steps, lr {a.lr}", flush=True)
        res = {"ours": ([], [], []), "imitation": ([], [], [])}
        for k, seed in enumerate(a.seeds):
            sides = ("ours", "imitation") if k % 2 == 0 else ("imitation", "ours")  # alternate who goes first
            for side in sides:
                act, secs, cpu = bc_ours(ds, a, seed) if side == "ours" else bc_peer(ds, env_id, a, seed)
                score = float(ds.normalized_score(rollout_returns(env_id, act, a.eval_episodes,
                                                                  seed=10_000 + 100 * seed)).mean())
                res[side][0].append(score)
                res[side][1].append(secs * per10k)
                res[side][2].append(cpu * per10k)
                print(f"  seed {seed} {side:9s} normalised score {score:6.1f}   per 10k steps {secs * per10k:6.1f} s "
                      f"wall, {cpu * per10k:6.1f} s CPU", flush=True)
        (so, to, co), (sp, tp, cp) = res["ours"], res["imitation"]
        print(f"{env_id} summary: normalised score ours {np.mean(so):.1f} vs imitation {np.mean(sp):.1f} "
              f"(ratio {np.mean(so) / max(1e-9, np.mean(sp)):.2f}x); per 10k steps ours {np.mean(to):.1f} s wall / "
              f"{np.mean(co):.1f} s CPU vs imitation {np.mean(tp):.1f} / {np.mean(cp):.1f} (ratio wall "
              f"{np.mean(to) / np.mean(tp):.2f}x, CPU {np.mean(co) / np.mean(cp):.2f}x)", flush=True)


# ---- GAIL -------------------------------------------------------------------------------------------
def gail_ours(env_id: str, ref: str, a, seed: int):
    """(policy with select_action, training seconds, final discriminator metrics): our GAIL, PPO underneath."""
    from vla_engine.config.training_config import ILConfig
    from vla_engine.train.il.gail import GAIL

    cfg = ILConfig(algorithm="gail", expert_dataset=ref, expert_episodes=a.expert_episodes, learning_rate=a.lr,
                   discriminator_lr=a.disc_lr, discriminator_steps=a.disc_epochs, gp_weight=a.gp_weight,
                   batch_size=a.disc_batch, total_timesteps=a.timesteps, num_envs=a.num_envs,
                   steps_per_update=a.n_steps, disc_hidden_sizes=[64, 64], seed=seed, num_threads=1, device="cpu")
    t0 = time.perf_counter()
    trainer = GAIL(env_id, config=cfg, progress=False, expert_root=a.root)
    out = trainer.train()
    return trainer.policy, time.perf_counter() - t0, out.get("discriminator", {})


def gail_peer(env_id: str, ds, a, seed: int):
    """(SB3 PPO model, training seconds): imitation's GAIL over SB3's PPO with our PPO's settings (8 envs x
    n_steps, 10 epochs of 32 minibatches, gamma 0.99, lambda 0.95, clip 0.2, no entropy bonus, grad norm
    0.5, 64x64 tanh actor and critic), observations normalised by imitation's running-norm extractor, the
    discriminator a 64x64 tanh ``BasicRewardNet`` (s, a) with normalised inputs and outputs, and as many
    discriminator minibatches of the same size per round as ours (imitation has no gradient penalty)."""
    import gymnasium
    import torch
    from imitation.algorithms.adversarial.gail import GAIL as PeerGAIL
    from imitation.data.wrappers import RolloutInfoWrapper
    from imitation.policies.base import NormalizeFeaturesExtractor
    from imitation.rewards.reward_nets import BasicRewardNet, NormalizedRewardNet
    from imitation.util.networks import RunningNorm
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.manual_seed(seed)
    venv = DummyVecEnv([lambda: RolloutInfoWrapper(gymnasium.make(env_id)) for _ in range(a.num_envs)])
    venv.seed(seed)
    rollout = a.num_envs * a.n_steps
    learner = PPO("MlpPolicy", venv, n_steps=a.n_steps, batch_size=rollout // 32, n_epochs=10, learning_rate=a.lr,
                  gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5,
                  policy_kwargs=dict(features_extractor_class=NormalizeFeaturesExtractor,
                                     features_extractor_kwargs=dict(normalize_class=RunningNorm)),
                  seed=seed, device="cpu", verbose=0)
    reward_net = NormalizedRewardNet(BasicRewardNet(venv.observation_space, venv.action_space, hid_sizes=(64, 64),
                                                    activation=torch.nn.Tanh, normalize_input_layer=RunningNorm),
                                     normalize_output_layer=RunningNorm)
    # ours: disc_epochs passes over the rollout in minibatches of disc_batch policy + disc_batch expert pairs
    updates = a.disc_epochs * (rollout // a.disc_batch)
    trainer = PeerGAIL(demonstrations=peer_transitions(ds, a.expert_episodes), demo_batch_size=a.disc_batch,
                       gen_replay_buffer_capacity=rollout, n_disc_updates_per_round=updates, venv=venv,
                       gen_algo=learner, reward_net=reward_net, disc_opt_kwargs=dict(lr=a.disc_lr),
                       allow_variable_horizon=True, custom_logger=_peer_logger("gail"))
    t0 = time.perf_counter()
    trainer.train(a.timesteps)
    return learner, time.perf_counter() - t0


def eval_returns(act, env_id: str, episodes: int, seed: int) -> np.ndarray:
    from vla_engine.data.minari_io import rollout_returns

    return rollout_returns(env_id, act, episodes, seed=seed)


def cmd_gail_peer(a) -> None:
    import torch

    _need_imitation()
    torch.set_num_threads(1)
    ds = _expert_dataset(a.env, a.root)
    expert = float(np.mean(ds.episode_returns[:a.expert_episodes]))
    print(f"{a.env}: GAIL from the first {a.expert_episodes} episodes of {ds.ref} (their mean return {expert:.1f}; "
          f"random {ds.ref_min_score:.1f}); {a.timesteps} env steps, {a.num_envs} envs x {a.n_steps}, PPO lr {a.lr}, "
          f"discriminator lr {a.disc_lr}, {a.disc_epochs} epochs x batch {a.disc_batch} per rollout", flush=True)
    res: dict[str, list] = {"ours": [], "imitation": []}
    for k, seed in enumerate(a.seeds):
        for side in (("ours", "imitation") if k % 2 == 0 else ("imitation", "ours")):
            if a.only and side != a.only:
                continue
            if side == "ours":
                pol, secs, disc = gail_ours(a.env, ds.ref, a, seed)
                act = (lambda p: lambda o: p.select_action(np.asarray(o, np.float32)[None])[0].numpy())(pol)
                extra = f" (discriminator expert acc {disc.get('gail/expert_acc', float('nan')):.2f}, policy acc " \
                        f"{disc.get('gail/policy_acc', float('nan')):.2f})"
            else:
                model, secs = gail_peer(a.env, ds, a, seed)
                act = (lambda m: lambda o: m.predict(np.asarray(o, np.float32), deterministic=True)[0])(model)
                extra = ""
            ret = float(eval_returns(act, a.env, a.eval_episodes, 10_000 + 100 * seed).mean())
            res[side].append(ret)
            print(f"  seed {seed} {side:9s} return {ret:8.1f} = {100 * ret / expert:5.1f}% of the expert's, "
                  f"normalised score {float(ds.normalized_score([ret])[0]):6.1f}, {secs:.0f} s{extra}", flush=True)
    if a.only:
        r = np.mean(res[a.only])
        print(f"{a.env} GAIL summary: {a.only} {r:.1f} ({100 * r / expert:.0f}% of expert)", flush=True)
        return
    ro, rp = np.mean(res["ours"]), np.mean(res["imitation"])
    print(f"{a.env} GAIL summary: return ours {ro:.1f} ({100 * ro / expert:.0f}% of expert) vs imitation {rp:.1f} "
          f"({100 * rp / expert:.0f}%); ratio {ro / rp if rp > 0 else float('nan'):.2f}x", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mixed")
    m.add_argument("--episodes", type=int, default=30, help="episodes per level (the mixed set draws from all)")
    m.add_argument("--steps", type=int, default=3000)
    m.add_argument("--seeds", type=int, default=3)
    m.add_argument("--eval-episodes", type=int, default=10)
    m.add_argument("--root", default=None)
    b = sub.add_parser("bc-peer", help="our BC against imitation's BC on the same -expert Minari set")
    b.add_argument("--envs", nargs="+", default=["Hopper-v5", "HalfCheetah-v5"])
    b.add_argument("--steps", type=int, default=10_000, help="gradient steps of each run")
    b.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    b.add_argument("--batch-size", type=int, default=256)
    b.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    b.add_argument("--lr", type=float, default=1e-3)
    b.add_argument("--eval-episodes", type=int, default=10)
    b.add_argument("--warmup", type=int, default=200, help="untimed steps of each side first (0: none)")
    b.add_argument("--root", default="datasets/minari")
    g = sub.add_parser("gail-peer", help="our GAIL against imitation's GAIL from the same expert episodes")
    g.add_argument("--env", default="Hopper-v5")
    g.add_argument("--timesteps", type=int, default=100_000)
    g.add_argument("--seeds", type=int, nargs="+", default=[0])
    g.add_argument("--expert-episodes", type=int, default=10)
    g.add_argument("--num-envs", type=int, default=8)
    g.add_argument("--n-steps", type=int, default=256, help="steps per env in each rollout")
    g.add_argument("--lr", type=float, default=3e-4, help="PPO learning rate")
    g.add_argument("--disc-lr", type=float, default=3e-4)
    g.add_argument("--disc-epochs", type=int, default=5)
    g.add_argument("--disc-batch", type=int, default=256)
    g.add_argument("--gp-weight", type=float, default=10.0, help="ours only (imitation has none)")
    g.add_argument("--eval-episodes", type=int, default=10)
    g.add_argument("--only", choices=("ours", "imitation"), default=None, help="run one side (a longer budget)")
    g.add_argument("--root", default="datasets/minari")
    a = p.parse_args()
    {"mixed": cmd_mixed, "bc-peer": cmd_bc_peer, "gail-peer": cmd_gail_peer}[a.cmd](a)


if __name__ == "__main__":
    main()
