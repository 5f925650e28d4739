"""Which curves the Training tab shows for a run, chosen by what the run logs.

A behaviour-cloning run logs ``train/loss``; an RL run (PPO, SAC, GRPO) logs ``charts/episodic_return`` and
``losses/*``; DAgger logs ``dagger/*`` per iteration; GAIL logs ``gail/*`` beside the RL charts. The tab has
``PANELS`` plots; each family below fills them, each panel with the first of its candidate metrics the run
has (SAC logs an actor loss where PPO logs a policy loss). Adding a family is a line here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .plots import curve_plot

PANELS = 4

Curve = tuple[str, str, bool]  # metric, title, log scale
# (marker metric: a run that logs it is of this family, panels: candidates per panel)
FAMILIES: tuple[tuple[str | None, tuple[tuple[Curve, ...], ...]], ...] = (
    ("gail/disc_loss", (
        (("charts/episodic_return", "episode return", False),),
        (("gail/disc_loss", "discriminator loss", False),),
        (("gail/expert_acc", "discriminator accuracy on expert pairs", False),),
        (("gail/mean_reward", "GAIL reward (mean per step)", False),),
    )),
    ("dagger/expert_labels", (
        (("dagger/learner_success_rate", "learner success rate", False),),
        (("dagger/expert_labels", "expert labels (aggregate)", False),),
        (("train/loss", "loss", True),),
        (("dagger/beta", "beta (share of expert actions)", False),),
    )),
    ("charts/episodic_return", (
        (("charts/episodic_return", "episode return", False),),
        (("charts/success_rate", "success rate", False), ("losses/value_loss", "value loss", True),
         ("losses/qf_loss", "Q loss", True)),
        (("losses/policy_loss", "policy loss", False), ("losses/actor_loss", "actor loss", False)),
        (("charts/entropy", "policy entropy", False), ("losses/alpha", "entropy temperature", True),
         ("charts/temperature", "entropy temperature", True), ("losses/kl", "KL to the reference", False)),
    )),
    (None, (
        (("train/loss", "loss", True),),
        (("train/lr", "learning rate", False),),
        (("perf/samples_per_s", "throughput (samples/s)", False),),
        (("train/grad_norm", "gradient norm", True),),
    )),
)
DEFAULT_TITLES = [panel[0][1] for panel in FAMILIES[-1][1]]

# metrics offered for comparing runs (the Compare runs box also takes any other logged name)
OVERLAY_METRICS = ["train/loss", "train/lr", "perf/samples_per_s", "train/grad_norm", "eval/success_rate",
                   "charts/episodic_return", "charts/success_rate", "losses/value_loss", "losses/policy_loss",
                   "dagger/learner_success_rate", "gail/disc_loss", "eval/normalized_score"]


def panels_for(metrics: set[str] | Any) -> list[Curve]:
    """The (metric, title, log) shown in each panel for a run that logged ``metrics``."""
    for marker, panels in FAMILIES:
        if marker is None or marker in metrics:
            return [next((c for c in panel if c[0] in metrics), panel[0]) for panel in panels]
    raise AssertionError("the last family has no marker")


def curve_plots(curves: Any, smoothing: float) -> list:
    """The panels' plots from a watched run's points (``app.watch.Curves``)."""
    return [curve_plot(*curves.of(m), title, log_y=log, smoothing=smoothing)
            for m, title, log in panels_for(set(curves.points))]


def latest_video(videos_dir: Path) -> str | None:
    """The newest rollout video a run wrote (RL trainers record one every few updates), or None."""
    if not videos_dir.is_dir():
        return None
    newest = max(videos_dir.rglob("*.mp4"), key=lambda p: p.stat().st_mtime, default=None)
    return str(newest) if newest is not None else None
