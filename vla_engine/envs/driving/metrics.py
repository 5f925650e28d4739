"""Driving metrics: route completion, collisions per km, and ADE / FDE of predicted waypoints.

    >>> driving_metrics(episodes)   # episodes: dicts with route_completion, collisions, distance, success
    {"route_completion": 0.93, "collisions_per_km": 1.2, "success_rate": 0.9, "km": 0.84}
    >>> ade_fde(pred, target)       # (B, H, 2) waypoints -> (mean displacement, final displacement) in metres
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np


def ade_fde(pred: Any, target: Any, mask: Any = None) -> tuple[float, float]:
    """Average and final displacement error (m) of waypoints (B, H, 2) (``mask`` (B, H): 1 = a real step).
    The final error is at each row's last valid step."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 3:
        raise ValueError(f"ade_fde takes two (B, H, 2) arrays of the same shape; got {p.shape} and {t.shape}")
    err = np.linalg.norm(p[..., :2] - t[..., :2], axis=-1)  # (B, H)
    m = np.ones(err.shape, bool) if mask is None else np.asarray(mask).astype(bool)
    if not m.any():
        return float("nan"), float("nan")
    ade = float(err[m].mean())
    last = np.where(m.any(1), m.shape[1] - 1 - np.argmax(m[:, ::-1], axis=1), -1)  # (B,)
    rows = last >= 0
    fde = float(err[np.arange(len(err))[rows], last[rows]].mean())
    return ade, fde


def collisions_per_km(collisions: int, distance_m: float) -> float:
    return float(collisions) / max(distance_m / 1000.0, 1e-6)


def driving_metrics(episodes: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Means over episodes (each with ``route_completion``, ``collisions``, ``distance`` and ``success`` or
    ``is_success``): route completion, success rate, collisions per km over the whole distance."""
    eps = list(episodes)
    if not eps:
        return {"route_completion": float("nan"), "success_rate": float("nan"), "collisions_per_km": float("nan"),
                "km": 0.0, "episodes": 0}
    dist = float(sum(e.get("distance", 0.0) for e in eps))
    cols = int(sum(e.get("collisions", 0) for e in eps))
    return {
        "route_completion": float(np.mean([e["route_completion"] for e in eps])),
        "success_rate": float(np.mean([bool(e.get("success", e.get("is_success", False))) for e in eps])),
        "collisions_per_km": collisions_per_km(cols, dist),
        "km": dist / 1000.0,
        "episodes": len(eps),
    }
