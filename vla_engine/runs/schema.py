"""The typed run-folder contract: what ``status.json`` and an evaluation summary hold.

Jobs write these, and everything that watches a run (the CLI, the app, the benchmarks) reads them
through the classes here, so a field is named in one place. ``status.json`` carries a ``version``;
files written before it existed (no version, the evaluation under ``result.eval``) read the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from ..config.base import ConfigBase
from ..config.run_config import EVAL_SEED_START

SCHEMA_VERSION = 1
STATES = ("queued", "running", "done", "failed", "stopped")
ACTIVE_STATES = ("queued", "running")
ENDED_STATES = ("done", "failed", "stopped")


def first_line(error: BaseException | str) -> str:
    """The one-line message of an error: its first line, or the exception's type when it has none."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0]
    return type(error).__name__ if isinstance(error, BaseException) else ""


@dataclass
class EvalSummary:
    """Closed-loop evaluation of a policy: success with its Wilson 95% interval, return, length.

    On disk (``metrics.jsonl``, ``status.json``, ``eval.json``) it is the flat ``eval/...`` metric dict.
    """

    episodes: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    mean_return: float = 0.0
    mean_length: float = 0.0
    ms_per_step: float | None = None

    _KEYS = {"episodes": "eval/episodes", "successes": "eval/successes", "success_rate": "eval/success_rate",
             "ci_low": "eval/success_ci_low", "ci_high": "eval/success_ci_high",
             "mean_return": "eval/mean_return", "mean_length": "eval/mean_length",
             "ms_per_step": "eval/ms_per_step"}

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any] | None) -> "EvalSummary | None":
        """The summary in a dict of ``eval/...`` metrics, or None when it holds no success rate."""
        if not metrics or "eval/success_rate" not in metrics:
            return None
        m = metrics
        n = int(m.get("eval/episodes") or 0)
        rate = float(m["eval/success_rate"])
        successes = int(m.get("eval/successes", round(rate * n)))
        if "eval/success_ci_low" in m:
            lo, hi = float(m["eval/success_ci_low"]), float(m["eval/success_ci_high"])
        else:
            from ..eval.metrics import wilson_interval

            lo, hi = wilson_interval(successes, n)
        ms = m.get("eval/ms_per_step")
        return cls(episodes=n, successes=successes, success_rate=rate, ci_low=lo, ci_high=hi,
                   mean_return=float(m.get("eval/mean_return", 0.0)), mean_length=float(m.get("eval/mean_length", 0.0)),
                   ms_per_step=None if ms is None else float(ms))

    def to_metrics(self) -> dict[str, Any]:
        out = {self._KEYS[f.name]: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.ms_per_step is None:
            out.pop("eval/ms_per_step")
        return out

    # -- the one formatter ---------------------------------------------------------------------
    def rate_with_ci(self, digits: int = 0) -> str:
        """``85% (77–91%)``."""
        return f"{self.success_rate:.{digits}%} ({self.ci_low:.{digits}%}–{self.ci_high:.{digits}%})"

    def format(self, task: str | None = None, digits: int = 0) -> str:
        """``push: success 85% (95% CI 77–91%) over 100 episodes, mean return 3.21, mean length 62.0``."""
        head = f"{task}: " if task else ""
        return (f"{head}success {self.success_rate:.{digits}%} (95% CI {self.ci_low:.{digits}%}–"
                f"{self.ci_high:.{digits}%}) over {self.episodes} episodes, mean return {self.mean_return:.2f}, "
                f"mean length {self.mean_length:.1f}")


def format_eval(metrics: Mapping[str, Any] | EvalSummary | None, task: str | None = None, digits: int = 0) -> str:
    """One line for an evaluation result (``eval/...`` metrics or an EvalSummary); '' when there is none."""
    s = metrics if isinstance(metrics, EvalSummary) else EvalSummary.from_metrics(metrics)
    return s.format(task, digits) if s is not None else ""


@dataclass
class RunStatus:
    """``status.json``: where a job is. Unknown keys are kept in ``extra`` and written back."""

    state: str = "unknown"
    phase: str | None = None
    step: int = 0
    total_steps: int | None = None
    pid: int | None = None
    error: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    updated_at: float | None = None
    eta_s: float | None = None
    eval: dict[str, Any] | None = None  # the ``eval/...`` metrics of the run's evaluation, if it ran one
    result: dict[str, Any] | None = None  # what the job returned (final loss, checkpoint, dataset path, ...)
    version: int = SCHEMA_VERSION  # the layout of this file
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "RunStatus":
        data = dict(data or {})
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: data.pop(k) for k in list(data) if k in names}
        known.setdefault("version", 0)  # files from before the schema had a version
        st = cls(**known, extra=data)
        if st.eval is None and isinstance(st.result, dict) and isinstance(st.result.get("eval"), dict):
            st.eval = st.result["eval"]  # version 0: a train job's evaluation lived under result.eval
        return st

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out = {k: v for k, v in out.items() if v is not None}
        out.update(self.extra)
        return out

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    @property
    def eval_summary(self) -> EvalSummary | None:
        return EvalSummary.from_metrics(self.eval)

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style read of a field or an extra key (``status.get("datagen_done")``)."""
        if key in self.extra:
            return self.extra[key]
        value = getattr(self, key, None) if key != "extra" else None
        return default if value is None else value


# ------------------------------------------------------------------------------------------------
# Job configs: what ``config.yaml`` of an eval or datagen run holds (a train run holds a RunConfig).
# They validate like every config, so a bad value stops before a run folder is made.
# ------------------------------------------------------------------------------------------------
@dataclass
class EvalJobConfig(ConfigBase):
    """Closed-loop evaluation of a checkpoint (``vla eval``, the Rollouts and Benchmark tabs)."""

    _section: ClassVar[str] = "eval"
    checkpoint: str = ""  # a checkpoint folder (resolved from a run id, a run folder or shipped:<name>)
    task: str | None = None  # default: the task of the checkpoint's run
    episodes: int = 50  # held-out episodes to evaluate
    num_videos: int = 4  # episodes recorded as mp4 (the first ones)
    seed_start: int = EVAL_SEED_START  # first evaluation seed (training data uses the seeds below it)
    instruction: str | None = None  # free text instead of the task's own instruction
    max_episode_steps: int | None = None  # default: the task's
    runs_dir: str = "runs"  # where run ids are looked up
    inference: dict = field(default_factory=dict)  # how the model acts: n_action_steps, ... (model.FIELD)
    version: int = SCHEMA_VERSION  # the layout of this file

    def validate(self) -> None:
        if not self.checkpoint.strip():
            self._fail("checkpoint", "is empty; give a run id, a run folder or a checkpoint folder")
        self._check_range("episodes", 1, 100_000)
        self._check_range("num_videos", 0)
        self._check_range("seed_start", 0)
        self._check_range("max_episode_steps", 1)
        if self.task is not None:
            from .. import envs  # noqa: F401  (registers the built-in tasks; light import)
            from ..envs.metaworld_tasks import is_suite
            from ..registry import TASKS

            if not is_suite(self.task):  # a Meta-World suite (metaworld/mt10) evaluates each of its tasks
                self._check_choice("task", TASKS)
            elif self.instruction:
                self._fail("instruction", "is for one task; a suite gives each task its own instruction: "
                                          "drop --instruction or evaluate one task of the suite")

@dataclass
class DatagenJobConfig(ConfigBase):
    """Expert demonstrations of a built-in task written as a LeRobot v3 dataset (``vla datagen``)."""

    _section: ClassVar[str] = "datagen"
    task: str = "reach"  # the built-in task whose scripted expert makes the demonstrations
    episodes: int = 200  # held-out episodes to evaluate
    out: str = ""  # the dataset folder to write (LeRobot v3)
    seed: int = 0  # episode i uses seed + i
    image_size: int = 96  # camera images of image_size x image_size pixels
    action_noise: float = 0.3  # DART noise on executed expert actions (recorded actions stay clean)
    targets_per_layout: int = 1  # episodes per layout, each naming another block
    plan_horizon: int = 0  # record the expert's noise-free plan of this many steps per frame (0 = none)
    overwrite: bool = False  # replace a dataset already in out
    version: int = SCHEMA_VERSION  # the layout of this file

    def validate(self) -> None:
        from .. import envs  # noqa: F401
        from ..registry import TASKS

        self._check_choice("task", TASKS)
        if not self.out.strip():
            self._fail("out", "is empty; give the dataset folder to write, e.g. datasets/push")
        self._check_range("episodes", 1)
        self._check_range("seed", 0)
        if self.seed + self.episodes > EVAL_SEED_START:
            self._fail("episodes", f"is too many from seed {self.seed}: training seeds must stay below "
                                   f"{EVAL_SEED_START:,} (evaluation uses the seeds from there); at most "
                                   f"{max(0, EVAL_SEED_START - self.seed):,} episodes fit")
        self._check_range("image_size", 16, 1024)
        self._check_range("action_noise", 0.0, 2.0)
        self._check_range("targets_per_layout", 1, 3)
        self._check_range("plan_horizon", 0, 256)
