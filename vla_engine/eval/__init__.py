"""Evaluation: metrics, the closed-loop evaluator (videos)."""

from .metrics import action_errors, paired_comparison, summarize_episodes, wilson_interval

__all__ = ["wilson_interval", "paired_comparison", "summarize_episodes", "action_errors", "evaluate_policy", "EvalResult", "EvalError"]


def __getattr__(name: str):
    if name in ("evaluate_policy", "EvalResult", "EvalError", "write_video"):
        from . import evaluator

        return getattr(evaluator, name)
    raise AttributeError(f"module 'vla_engine.eval' has no attribute {name!r}")
