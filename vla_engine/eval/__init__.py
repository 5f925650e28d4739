"""Evaluation: metrics, the closed-loop evaluator (videos), leaderboards.

Light on import: each name loads its module (and torch, MuJoCo) on first use, so the app and the
command line can read run folders without them.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "wilson_interval": ".metrics", "paired_comparison": ".metrics", "summarize_episodes": ".metrics",
    "action_errors": ".metrics",
    "evaluate_policy": ".evaluator", "EvalResult": ".evaluator", "EvalError": ".evaluator", "write_video": ".evaluator",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'vla_engine.eval' has no attribute {name!r}")
