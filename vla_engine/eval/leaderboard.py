"""The benchmark leaderboard: one JSON line per finished benchmark evaluation, in ``runs_dir/leaderboard.jsonl``.

A benchmark is a batch of eval jobs. Each job is announced when it starts (:meth:`Leaderboard.expect`,
one line in ``runs_dir/leaderboard-jobs.jsonl``: the run, the checkpoint as the user named it, the batch
id); :meth:`Leaderboard.sync` appends a row for every announced job that finished and is not recorded yet,
so the board grows across sessions and restarts of whatever watches it (the app, a script), and a job
outlives the process that queued it. Every row keeps its per-seed outcomes
(``"1"`` = success, from ``seed_start`` on), so each checkpoint is compared with its task's leader seed
by seed (McNemar's exact test, :func:`vla_engine.eval.metrics.paired_comparison`): two checkpoints whose
intervals overlap can still be told apart by the seeds only one of them solved.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from ..runs.schema import EvalSummary

LEADERBOARD_FILE = "leaderboard.jsonl"
JOBS_FILE = "leaderboard-jobs.jsonl"
COLUMNS = ["checkpoint", "task", "episodes", "success (95% CI)", "vs leader (same seeds)", "mean return",
           "task metrics", "ms/action", "eval run", "date"]

# the eval/... keys every task reports; any other eval/ number is the task's own (route completion, coverage)
_COMMON = {"eval/episodes", "eval/successes", "eval/success_rate", "eval/success_ci_low", "eval/success_ci_high",
           "eval/mean_return", "eval/mean_length", "eval/ms_per_step"}


def task_metrics(summary: dict) -> dict[str, float]:
    """The task's own figures in an evaluation summary (driving: route completion, collisions per km; PushT:
    coverage), without the ``eval/`` prefix."""
    return {k[len("eval/"):]: float(v) for k, v in (summary or {}).items()
            if k.startswith("eval/") and k not in _COMMON and isinstance(v, (int, float)) and not isinstance(v, bool)}


def format_task_metrics(metrics: dict[str, float] | None) -> str:
    """``route completion 0.82 · collisions per km 1.3`` (names in words, 3 significant digits)."""
    return " · ".join(f"{k.replace('_', ' ')} {v:.3g}" for k, v in (metrics or {}).items())


def row_from_eval(job: dict, result: dict, ended_at: float | None = None) -> dict:
    """The leaderboard row of one finished eval job: its announcement (:meth:`Leaderboard.expect`) and the
    contents of its ``eval.json``."""
    s = result.get("summary") or {}
    episodes = result.get("episodes") or []
    seeds = [int(e.get("seed", -1)) for e in episodes]
    contiguous = bool(seeds) and seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    return {
        "checkpoint": job.get("checkpoint"),
        "task": result.get("task") or job.get("task"),
        "episodes": s.get("eval/episodes"),
        "successes": s.get("eval/successes"),
        "success_rate": s.get("eval/success_rate"),
        "ci_low": s.get("eval/success_ci_low"),
        "ci_high": s.get("eval/success_ci_high"),
        "mean_return": s.get("eval/mean_return"),
        "mean_length": s.get("eval/mean_length"),
        "ms_per_step": s.get("eval/ms_per_step"),
        "task_metrics": task_metrics(s),
        "eval_run": job.get("eval_run"),
        # per-seed outcomes from seed_start on, for the paired comparison (only for a contiguous seed range)
        "seed_start": seeds[0] if contiguous else None,
        "outcomes": "".join("1" if e.get("success") else "0" for e in episodes) if contiguous else None,
        "benchmark": job.get("benchmark"),
        "time": ended_at or time.time(),
    }


def versus_leader(row: dict, leader: dict) -> str:
    """``row`` against its task's leader on the seeds both played: the difference and McNemar's p."""
    from .metrics import paired_comparison

    if row is leader:
        return "leader"
    a, b = row.get("outcomes"), leader.get("outcomes")
    if not a or not b or row.get("seed_start") != leader.get("seed_start") or len(a) != len(b):
        return "other seeds"
    c = paired_comparison([x == "1" for x in a], [x == "1" for x in b])
    return f"{100 * c['difference']:+.0f} pts (p = {c['p_value']:.2f})"


def latest_per_checkpoint(rows: Iterable[dict]) -> list[dict]:
    """The latest row per (checkpoint, task), best success rate first within each task."""
    latest: dict[tuple, dict] = {}
    for r in rows:
        key = (r.get("checkpoint"), r.get("task"))
        if key not in latest or (r.get("time") or 0) >= (latest[key].get("time") or 0):
            latest[key] = r
    return sorted(latest.values(), key=lambda r: (r.get("task") or "", -(r.get("success_rate") or 0),
                                                   r.get("ms_per_step") or 0))


def table_rows(rows: list[dict]) -> list[list[Any]]:
    """Display rows (:data:`COLUMNS`) of ``rows`` as :func:`latest_per_checkpoint` orders them: each row
    against the first row of its task."""
    leaders: dict[Any, dict] = {}
    for r in rows:
        leaders.setdefault(r.get("task"), r)
    out = []
    for r in rows:
        summary = EvalSummary(episodes=int(r.get("episodes") or 0), successes=int(r.get("successes") or 0),
                              success_rate=float(r.get("success_rate") or 0), ci_low=float(r.get("ci_low") or 0),
                              ci_high=float(r.get("ci_high") or 0))
        out.append([r.get("checkpoint"), r.get("task"), r.get("episodes"), summary.rate_with_ci(),
                    versus_leader(r, leaders[r.get("task")]), round(float(r.get("mean_return") or 0), 3),
                    format_task_metrics(r.get("task_metrics")), round(float(r.get("ms_per_step") or 0), 1),
                    r.get("eval_run"),
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("time") or 0))])
    return out


class Leaderboard:
    """The leaderboard files of one runs folder. Reads are cached while a file is unchanged."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.jobs_path = self.path.with_name(JOBS_FILE)
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple[int, int], list[dict]]] = {}

    @classmethod
    def of(cls, runs_dir: str | Path) -> "Leaderboard":
        return cls(Path(runs_dir) / LEADERBOARD_FILE)

    def signature(self) -> tuple[int, int]:
        """(size, mtime in ns) of the board; (0, 0) while there is none. Changes whenever a row is added."""
        return _signature(self.path)

    def _lines(self, path: Path) -> list[dict]:
        sig = _signature(path)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == sig:
            return list(cached[1])
        rows = []
        if sig != (0, 0):
            for line in path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        self._cache[path] = (sig, rows)
        return list(rows)

    def read(self) -> list[dict]:
        """Every row, oldest first (lines that do not parse are skipped)."""
        return self._lines(self.path)

    def latest(self) -> list[dict]:
        """The latest result per (checkpoint, task), best success rate first."""
        return latest_per_checkpoint(self.read())

    def expect(self, run_id: str, checkpoint: str, task: str, benchmark: str) -> None:
        """Announce a started benchmark eval job: ``checkpoint`` as the user named it (run id, run/step-N,
        shipped:name), the batch id ``benchmark``. Its row is added by :meth:`sync` once the job is done."""
        _append(self.jobs_path, [{"eval_run": run_id, "checkpoint": checkpoint, "task": task,
                                  "benchmark": benchmark, "time": time.time()}])

    def sync(self, runner: Any) -> int:
        """Append a row for every announced job of ``runner`` (a JobRunner) that is done and not recorded
        yet; returns how many were added."""
        with self._lock:
            known = {r.get("eval_run") for r in self.read()}
            added = []
            for job in self._lines(self.jobs_path):
                run_id = job.get("eval_run")
                if not run_id or run_id in known:
                    continue
                try:
                    st = runner.status(run_id)
                    if st.state != "done":
                        continue
                    result = json.loads((runner.get(run_id).path / "eval.json").read_text())
                except (OSError, ValueError):  # ValueError: a run that is gone or a malformed eval.json
                    continue
                known.add(run_id)
                added.append(row_from_eval(job, result, st.ended_at))
            _append(self.path, added)
            return len(added)


def _signature(path: Path) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (0, 0)
    return (st.st_size, st.st_mtime_ns)


def _append(path: Path, rows: list[dict]) -> None:
    if rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


__all__ = ["COLUMNS", "JOBS_FILE", "LEADERBOARD_FILE", "Leaderboard", "format_task_metrics", "latest_per_checkpoint",
           "row_from_eval", "table_rows", "task_metrics", "versus_leader"]
