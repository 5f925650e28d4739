"""Offline BC on a mixed-quality Minari dataset: plain BC against FilteredBC (top 10%) and WeightedBC
(return and advantage weighting), all with the same MLP, steps and seeds; D4RL-style normalised scores.

    python benchmarks/bench_il.py mixed --episodes 30 --steps 3000

The dataset is made here with minari's DataCollector on Pendulum-v1 from three policies: random torques,
a "medium" swing-up that acts at random half of the time, and the swing-up expert (tests/test_bc_datasets).
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mixed")
    m.add_argument("--episodes", type=int, default=30, help="episodes per level (the mixed set draws from all)")
    m.add_argument("--steps", type=int, default=3000)
    m.add_argument("--seeds", type=int, default=3)
    m.add_argument("--eval-episodes", type=int, default=10)
    m.add_argument("--root", default=None)
    a = p.parse_args()
    {"mixed": cmd_mixed}[a.cmd](a)


if __name__ == "__main__":
    main()
