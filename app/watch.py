"""What the app has read of each run folder, shared by every page that watches the run.

A timer tick of any page costs a tail read of the run folder: the metric rows appended since the last
read (``RunDir.read_metrics(offset)``), ``status.json`` and the log tail, each re-read only when its file
changed (by size and mtime). Curves grow by their new points; their JSON is made once per new batch of
rows and handed to every watcher. Each page keeps only the versions it has shown, so a tick with
nothing new sends nothing.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

LOG_LINES = 40


def file_signature(path: Any) -> tuple[int, int]:
    """(size, mtime in ns) of a file; (0, 0) when it does not exist."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return (0, 0)
    return (st.st_size, st.st_mtime_ns)


@dataclass
class Curves:
    """Points of every numeric metric, appended as rows arrive: metric -> (steps, values)."""

    points: dict[str, tuple[list, list]] = field(default_factory=dict)

    def add(self, rows: list[dict]) -> None:
        for r in rows:
            step = r.get("step")
            if step is None:
                continue
            for m, v in r.items():
                if m not in ("step", "time") and isinstance(v, (int, float)) and not isinstance(v, bool):
                    xs, ys = self.points.setdefault(m, ([], []))
                    xs.append(step)
                    ys.append(v)

    def of(self, metric: str) -> tuple[list, list]:
        return self.points.get(metric, ([], []))


class RunWatch:
    """One run folder as the app sees it. Thread-safe; get one with :meth:`WatchCache.get`."""

    def __init__(self, runner: Any, run_id: str):
        self.runner = runner
        self.run = runner.get(run_id)
        self.run_id = run_id
        self._lock = threading.Lock()
        self._offset = 0
        self.curves = Curves()
        self.rows_version = 0  # bumps whenever new metric rows arrived
        self._status_sig: tuple | None = None
        self._status: Any = None
        self._log_sig: tuple | None = None
        self._log = ""
        self._plots: dict[Any, Any] = {}  # (key, rows_version) -> made plot

    def update(self) -> None:
        """Read what was appended to metrics.jsonl since the last call."""
        with self._lock:
            rows, off = self.run.read_metrics(self._offset)
            if off != self._offset:
                self._offset = off
                if rows:
                    self.curves.add(rows)
                    self.rows_version += 1
                    self._plots.clear()

    def status(self) -> tuple[Any, tuple]:
        """(RunStatus, its signature): re-read when status.json changed, or while the job should be alive
        (the runner then checks that its process still is)."""
        sig = file_signature(self.run.status_path)
        with self._lock:
            if sig == self._status_sig and self._status is not None and not self._status.active:
                return self._status, sig
        st = self.runner.status(self.run_id)
        sig = file_signature(self.run.status_path)
        with self._lock:
            self._status, self._status_sig = st, sig
        return st, sig

    def log_tail(self) -> tuple[str, tuple]:
        """(the last lines of log.txt, its signature), re-read only when the file changed."""
        sig = file_signature(self.run.log_path)
        with self._lock:
            if sig == self._log_sig:
                return self._log, sig
        text = self.run.tail_log(LOG_LINES)
        with self._lock:
            self._log, self._log_sig = text, sig
        return text, sig

    def plot(self, key: Any, make: Any) -> Any:
        """``make(curves)`` for the current rows, made once per new rows and shared by every watcher."""
        with self._lock:
            version = self.rows_version
            if key not in self._plots:
                self._plots[key] = make(self.curves)
            return self._plots[key], version


class WatchCache:
    """RunWatch per run id, created on first use; a run folder that was replaced gets a fresh one."""

    def __init__(self, runner: Any):
        self.runner = runner
        self._lock = threading.Lock()
        self._watches: dict[str, tuple[tuple, RunWatch]] = {}

    def get(self, run_id: str) -> RunWatch:
        run = self.runner.get(run_id)  # validates the id and that the run exists
        ident = file_signature(run.config_path)
        with self._lock:
            have = self._watches.get(run_id)
            if have is not None and have[0][1] == ident[1]:
                return have[1]
            w = RunWatch(self.runner, run_id)
            self._watches[run_id] = (ident, w)
            return w
