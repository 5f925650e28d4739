"""Metrics: success rate with a Wilson interval, a paired test of two policies on the same seeds,
returns, and action errors against a dataset."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (well-behaved at 0% and 100%)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_comparison(a: Sequence[bool], b: Sequence[bool]) -> dict[str, float]:
    """Two policies evaluated on the same seeds (episode ``i`` of each on seed ``i``): McNemar's exact test.

    Seeds where both succeed or both fail say nothing about which is better; ``a_only`` counts the
    seeds only ``a`` solved and ``b_only`` those only ``b`` solved. If the two were equally good each
    disagreement would go either way with probability 1/2, so ``p_value`` is the two-sided binomial
    tail of ``min(a_only, b_only)`` out of ``a_only + b_only``. Pairing removes the luck of which seeds
    were drawn, so it separates policies that two Wilson intervals cannot.
    """
    if len(a) != len(b):
        raise ValueError(f"paired_comparison needs one result per seed for both policies, got {len(a)} and {len(b)}; "
                         f"evaluate both on the same seeds")
    a_only = sum(bool(x) and not bool(y) for x, y in zip(a, b))
    b_only = sum(bool(y) and not bool(x) for x, y in zip(a, b))
    n = a_only + b_only
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1)) / 2 ** n if n else 1.0
    return {"episodes": len(a), "a_only": a_only, "b_only": b_only,
            "difference": (a_only - b_only) / max(1, len(a)), "p_value": min(1.0, 2 * tail)}


def summarize_episodes(episodes: list[dict]) -> dict[str, Any]:
    """``episodes``: dicts with ``success`` (bool), ``return`` and ``length``."""
    n = len(episodes)
    s = sum(bool(e["success"]) for e in episodes)
    lo, hi = wilson_interval(s, n)
    mean = lambda k: sum(float(e[k]) for e in episodes) / max(1, n)  # noqa: E731
    return {
        "eval/episodes": n,
        "eval/successes": s,
        "eval/success_rate": s / max(1, n),
        "eval/success_ci_low": lo,
        "eval/success_ci_high": hi,
        "eval/mean_return": mean("return"),
        "eval/mean_length": mean("length"),
    }


@torch.no_grad()
def action_errors(model: torch.nn.Module, batches: Iterable[dict], max_batches: int | None = None) -> dict[str, float]:
    """MSE and L1 between the policy's predicted action chunks and the dataset's (padding masked).

    Both are in the data's own units (the model un-normalises its predictions).
    """
    model.eval()
    device = next(model.parameters()).device
    se = ae = count = 0.0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        obs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        target = obs.pop("action")  # (B, C, A)
        pred = model.predict_action_chunk(obs)  # (B, C', A)
        c = min(pred.shape[1], target.shape[1])
        pred, target = pred[:, :c], target[:, :c]
        mask = torch.ones(target.shape[:2], device=device)
        if "action_is_pad" in obs:
            mask = (~obs["action_is_pad"][:, :c]).float()
        diff = (pred - target) * mask.unsqueeze(-1)
        se += float((diff ** 2).sum())
        ae += float(diff.abs().sum())
        count += float(mask.sum()) * target.shape[-1]
    return {"eval/action_mse": se / max(1.0, count), "eval/action_l1": ae / max(1.0, count)}
