"""A toy policy and dataset for testing the shared loop without MuJoCo or a VLA (also run as a script)."""

from __future__ import annotations

import sys
import time

import torch
from torch import nn
from torch.utils.data import Dataset


class ToyData(Dataset):
    def __init__(self, n: int = 512, dim: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        w = torch.randn(dim, 2, generator=g)
        self.y = self.x @ w + 0.01 * torch.randn(n, 2, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"observation.state": self.x[i], "action": self.y[i]}


class ToyPolicy(nn.Module):
    def __init__(self, dim: int = 8, delay: float = 0.0, nan_at: int | None = None):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, 2))
        self.delay, self.nan_at, self.calls = delay, nan_at, 0

    def forward(self, batch: dict):
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        pred = self.net(batch["observation.state"])  # (B, 2)
        loss = ((pred - batch["action"]) ** 2).mean()
        if self.nan_at is not None and self.calls >= self.nan_at:
            loss = loss * float("nan")
        return loss, {"mse": float(loss.detach())}



# -- a tiny fixed VLA batch and a memorising fit, shared by the model tests ------------------------
UNIT_STATS = {"mean": torch.zeros(2), "std": torch.ones(2), "min": -torch.ones(2), "max": torch.ones(2)}


def vla_batch(chunk: int, b: int = 8, size: int = 32, seed: int = 0) -> dict:
    """Images, 2-D states, (B, chunk, 2) actions in [-1, 1] and two instructions."""
    g = torch.Generator().manual_seed(seed)
    return {"observation.images.front": torch.rand(b, 3, size, size, generator=g),
            "observation.state": torch.randn(b, 2, generator=g),
            "action": torch.rand(b, chunk, 2, generator=g) * 2 - 1,
            "task": ["touch the red block"] * (b // 2) + ["touch the blue block"] * (b - b // 2)}


def fit_batch(model: nn.Module, batch: dict, steps: int, lr: float = 1e-3) -> tuple[float, float]:
    """AdamW on one batch for ``steps``; the mean loss of the first and of the last tenth of the steps."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    k = max(1, steps // 10)
    return sum(losses[:k]) / k, sum(losses[-k:]) / k

if __name__ == "__main__":  # python tests/toy_training.py RUN_DIR MAX_STEPS DELAY
    from vla_engine.config.training_config import TrainingConfig
    from vla_engine.train.loop import TrainLoop

    run_dir, max_steps, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    torch.manual_seed(0)
    cfg = TrainingConfig(max_steps=max_steps, batch_size=16, save_every=5, log_every=1, warmup_steps=5,
                         keep_last=100, learning_rate=1e-2)
    res = TrainLoop(ToyPolicy(delay=delay), cfg, run_dir, progress=False).fit(ToyData())
    print(f"RESULT {res.state} {res.step}")
