"""A benchmark queue: pending eval jobs started one after another through a JobRunner.

A benchmark (several checkpoints x several tasks) is a batch of eval job configs
(:func:`~.job_config.eval_job_config`) under one batch id. The queue's thread starts them one at a time
and waits while the runner's job limit is reached (e.g. a training job on a one-job machine), so a
benchmark never fails because something else is running. Each job is announced to the
:class:`~.leaderboard.Leaderboard` when it starts and recorded there when it is done; a job already
started survives the process that queued it (its row is added by the next :meth:`Leaderboard.sync`).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from ..runs.runner import JobLimitReached
from ..runs.schema import first_line
from .leaderboard import Leaderboard


@dataclass
class QueuedEval:
    """One evaluation of a benchmark: the job config, the checkpoint as the user named it, the batch id."""

    config: dict
    label: str
    benchmark: str
    run_id: str | None = None  # once started

    @property
    def task(self) -> str:
        return self.config["task"]


@dataclass
class QueueState:
    """What the queue is doing: the running evaluation, those waiting, recent notes."""

    active: QueuedEval | None = None
    pending: list[QueuedEval] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


class BenchmarkQueue:
    """Eval jobs run one after another through ``runner`` (a :class:`~vla_engine.runs.runner.JobRunner`).

    Args:
        runner: the job runner that starts and watches the jobs.
        leaderboard: where finished benchmark jobs are recorded (default: the runner's runs folder).
        retry_s: seconds between tries while the runner's job limit is reached.
        on_error: called with each exception a job start or the leaderboard raised (e.g. a logger);
            the queue goes on with the next job either way.
    """

    def __init__(self, runner: Any, leaderboard: Leaderboard | None = None, retry_s: float = 2.0,
                 on_error: Callable[[BaseException], Any] | None = None):
        self.runner = runner
        self.leaderboard = leaderboard or Leaderboard.of(runner.runs_dir)
        self.retry_s = retry_s
        self.on_error = on_error
        self._state = QueueState()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, configs: list[dict], labels: list[str] | None = None) -> str:
        """Queue eval job configs (see :func:`~.job_config.eval_job_config`) as one benchmark; its id.
        ``labels`` name each config's checkpoint as the user did (default: its folder)."""
        if not configs:
            raise ValueError("a benchmark needs at least one evaluation; choose checkpoints and tasks")
        labels = list(labels) if labels is not None else [str(c["checkpoint"]) for c in configs]
        if len(labels) != len(configs):
            raise ValueError(f"{len(labels)} labels for {len(configs)} evaluations; give one per evaluation")
        batch = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        with self._lock:
            self._state.pending.extend(QueuedEval(dict(c), label, batch) for c, label in zip(configs, labels))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="benchmark-queue", daemon=True)
                self._thread.start()
        return batch

    def state(self) -> QueueState:
        """A copy of the queue's state (safe to read while the queue works)."""
        with self._lock:
            s = self._state
            return QueueState(s.active, list(s.pending), list(s.log))

    def idle(self) -> bool:
        with self._lock:
            return self._state.active is None and not self._state.pending

    # -- the worker thread --------------------------------------------------------------------------
    def _note(self, msg: str) -> None:
        with self._lock:
            self._state.log = (self._state.log + [f"{time.strftime('%H:%M:%S')} {msg}"])[-50:]

    def _failed(self, what: str, e: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(e)
        self._note(f"{what}: {first_line(e)}")

    def _slot_free(self) -> bool:
        limit = getattr(self.runner, "max_concurrent", None)
        if limit is None:
            return True
        active = [r for r in self.runner.list_runs() if r.status.active]
        return len(active) < limit

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._state.pending:
                    self._state.active = None
                    return
                item = self._state.pending[0]
            what = f"{item.label} on {item.task}"
            if not self._slot_free():
                time.sleep(self.retry_s)
                continue
            try:
                run_id = self.runner.start("eval", item.config, name=f"bench-{item.task}")
            except JobLimitReached:  # another job took the free slot first: wait for the next one
                time.sleep(self.retry_s)
                continue
            except ValueError as e:
                with self._lock:
                    self._state.pending.pop(0)
                self._failed(what, e)
                continue
            except Exception as e:  # noqa: BLE001 - one bad job must not end the queue
                with self._lock:
                    self._state.pending.pop(0)
                self._failed(what, e)
                continue
            item.run_id = run_id
            with self._lock:
                self._state.pending.pop(0)
                self._state.active = item
            try:
                self.leaderboard.expect(run_id, item.label, item.task, item.benchmark)
                st = self.runner.wait(run_id, poll=1.0)
                self._note(f"{what}: {st.state}" + (f" ({st.error})" if st.error else ""))
                self.leaderboard.sync(self.runner)
            except Exception as e:  # noqa: BLE001
                self._failed(f"{what}: could not record the result", e)


__all__ = ["BenchmarkQueue", "QueueState", "QueuedEval"]
