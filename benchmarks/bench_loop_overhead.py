"""The shared loop's overhead against a bare PyTorch loop over the same model and batches.

Both sides train the same model from the same init on the same pre-collated batches (held in
memory, so data loading is out of the picture): the bare side is forward, backward, clip, AdamW,
scheduler; ours is ``TrainLoop.fit`` writing a run folder (metrics every 10 steps, a checkpoint
at the end). A/B alternate; medians reported. Target: ratio <= 1.05.

    python benchmarks/bench_loop_overhead.py [--steps 100] [--repeats 5] [--model tiny|toy]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset


class Batches(Dataset):
    """Pre-collated batches served one per index (batch_size=None in the loader)."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i]


class ToyPolicy(torch.nn.Module):
    """A two-layer MLP from the state to a 2-D action: the loop's overhead with almost no model."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))

    def forward(self, batch: dict):
        pred = self.net(batch["observation.state"])  # (B, 2)
        loss = ((pred - batch["action"]) ** 2).mean()
        return loss, {"mse": float(loss.detach())}


def make_model_and_batches(kind: str, n_batches: int, bs: int):
    g = torch.Generator().manual_seed(0)
    if kind == "toy":
        model = ToyPolicy()
        batches = [{"observation.state": torch.randn(bs, 8, generator=g), "action": torch.randn(bs, 2, generator=g)}
                   for _ in range(n_batches)]
        return model, batches
    from vla_engine.models import create_vla_model

    model = create_vla_model(vlm="tiny", action_head="mlp", action_dim=2, state_dim=4)
    texts = ["touch the red block", "go touch the blue cube", "move to the green block"]
    batches = [{
        "observation.images.front": torch.rand(bs, 3, 96, 96, generator=g),
        "observation.state": torch.randn(bs, 4, generator=g),
        "task": [texts[i % 3] for i in range(bs)],
        "action": torch.randn(bs, 1, 2, generator=g),
        "action_is_pad": torch.zeros(bs, 1, dtype=torch.bool),
    } for _ in range(n_batches)]
    return model, batches


def bare_loop(model, batches, steps: int, lr: float) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        loss, _ = model(batches[step % len(batches)])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
    return time.perf_counter() - t0


def our_loop(model, batches, steps: int, lr: float) -> float:
    from torch.utils.data import DataLoader

    from vla_engine.config.training_config import TrainingConfig
    from vla_engine.train.loop import TrainLoop

    cfg = TrainingConfig(max_steps=steps, learning_rate=lr, warmup_steps=0, lr_scheduler="constant",
                         save_every=10**9, log_every=10, device="cpu")
    loader = DataLoader(Batches(batches), batch_size=None, shuffle=False)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        TrainLoop(model, cfg, Path(d) / "run", progress=False).fit(loader, resume=False)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--model", default="tiny", choices=["tiny", "toy"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, batches = make_model_and_batches(args.model, 16, args.batch_size)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    bare, ours = [], []
    for r in range(args.repeats):
        for side in ("bare", "ours") if r % 2 == 0 else ("ours", "bare"):
            model.load_state_dict(init)
            t = (bare_loop if side == "bare" else our_loop)(model, batches, args.steps, 1e-4)
            (bare if side == "bare" else ours).append(t)
            print(f"repeat {r} {side:5} {t:.3f} s", flush=True)
    mb, mo = statistics.median(bare), statistics.median(ours)
    print(f"\nmodel={args.model} steps={args.steps} batch={args.batch_size} threads={args.threads}")
    print(f"bare PyTorch loop: median {mb:.3f} s ({args.steps * args.batch_size / mb:.0f} samples/s)")
    print(f"vla_engine loop:   median {mo:.3f} s ({args.steps * args.batch_size / mo:.0f} samples/s)")
    print(f"overhead ratio (ours / bare): {mo / mb:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
