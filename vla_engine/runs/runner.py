"""The job runner: starts train / eval / datagen jobs as background processes over run folders.

A job is ``python -m vla_engine.cli job <run-folder>``: the same code path as the command line.
The process runs in its own session, so it outlives the shell or UI that started it. Stopping
sends SIGTERM to the job (the trainer saves a checkpoint and marks itself stopped): to the job's
process group when the job leads its own group (a background job and its data workers), else to
the job's process alone (a foreground run inside someone's script or shell pipeline).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .run_dir import RunDir, RunError, check_run_id, new_run_id


class JobLimitReached(RunError):
    """The runner already runs as many jobs as it may (``max_concurrent``); a later start may succeed."""
from .schema import RunStatus

JOB_KINDS = ("train", "eval", "datagen")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def validate_job_config(job: str, config: dict[str, Any]) -> dict[str, Any]:
    """The job's config, checked by its config class (RunConfig, EvalJobConfig, DatagenJobConfig) and
    written out whole (defaults filled in, keys of earlier versions moved)."""
    from ..config.run_config import RunConfig
    from .schema import DatagenJobConfig, EvalJobConfig

    cls = {"train": RunConfig, "eval": EvalJobConfig, "datagen": DatagenJobConfig}[job]
    return cls.from_dict({k: v for k, v in config.items() if k != "job"}).to_dict()


def refuse_if_running(run: RunDir) -> None:
    """A run folder has one trainer at a time: refuse, naming the pid, while its job is alive."""
    st = run.read_status()
    if st.active and _alive(st.pid):
        raise RunError(f"run {run.run_id} is still running (pid {st.pid}); stop it first with `vla stop {run.run_id}`")


@dataclass
class RunInfo:
    """One row of ``JobRunner.list_runs()``: the run's id, what its config says it is, and its status."""

    run_id: str
    job: str | None
    name: str | None
    method: str | None
    status: RunStatus
    task: str | None = None  # the task it trains on, evaluates or generates (None when its config names none)

    @property
    def state(self) -> str:
        return self.status.state

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style read of a field here or in the status (``row.get("state")``)."""
        if key in ("run_id", "job", "name", "method"):
            value = getattr(self, key)
            return default if value is None else value
        return self.status.get(key, default)

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value


class JobRunner:
    """Start, list, watch and stop jobs whose state lives in ``runs_dir``."""

    def __init__(self, runs_dir: str | Path = "runs", max_concurrent: int | None = None):
        self.runs_dir = Path(runs_dir)
        self.max_concurrent = max_concurrent
        self._procs: dict[str, subprocess.Popen] = {}
        self._configs: dict[str, tuple[float, dict]] = {}  # run_id -> (config.yaml mtime, its head fields)

    # -- start ----------------------------------------------------------------------------------
    def start(self, job: str, config: dict[str, Any], name: str | None = None, run_id: str | None = None) -> str:
        if job not in JOB_KINDS:
            raise RunError(f"unknown job kind {job!r}; choose one of: {', '.join(JOB_KINDS)}")
        if self.max_concurrent is not None:
            active = [r for r in self.list_runs() if r.status.active]
            if len(active) >= self.max_concurrent:
                raise JobLimitReached(
                    f"{len(active)} job(s) already running (limit {self.max_concurrent}); stop one or wait for it to finish"
                )
        config = validate_job_config(job, config)  # a bad value stops here, before a run folder is made
        run_id = check_run_id(run_id) if run_id else new_run_id(name or config.get("name") or job)
        run = RunDir.create(self.runs_dir, run_id, {"job": job, **config})
        self._spawn(run)
        return run_id

    def resume(self, run_id: str, background: bool = True) -> int:
        """Start a stopped/failed run's job again in the same folder (training resumes from its last
        checkpoint): as a background process, or here in the foreground (returns the job's exit code).
        Refused while the run's job is alive, in both forms."""
        from .jobs import run_job

        run = self.get(run_id)
        refuse_if_running(run)
        run.write_status("queued", error=None)
        if not background:
            return run_job(run.path)
        self._spawn(run)
        return 0

    def _spawn(self, run: RunDir) -> None:
        log = open(run.path / "stdout.txt", "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "vla_engine.cli", "job", str(run.path)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env, cwd=os.getcwd(),
        )
        log.close()
        self._procs[run.run_id] = proc
        run.write_status(pid=proc.pid, own_group=True)  # the job writes it again when it starts

    # -- inspect --------------------------------------------------------------------------------
    def get(self, run_id: str) -> RunDir:
        check_run_id(run_id)
        run = RunDir(self.runs_dir / run_id)
        if not run.exists():
            raise RunError(f"no run named {run_id!r} in {self.runs_dir}; `vla runs` lists them")
        return run

    def status(self, run_id: str) -> RunStatus:
        run = self.get(run_id)
        st = run.read_status()
        proc = self._procs.get(run_id)
        if proc is not None:
            proc.poll()  # reap our own child so it is not a zombie
        if st.active and st.pid and not _alive(st.pid):
            # the process died without writing its end state (killed -9, out of memory, machine restart)
            time.sleep(0.2)
            st = run.read_status()
            if st.active:
                st = run.write_status("failed", error="the job process died unexpectedly (killed?); "
                                                       "`vla resume` continues from its last checkpoint")
        return st

    def _config_head(self, run: RunDir) -> dict:
        """job / name / method / task of a run's config.yaml, read again only when the file changes."""
        mtime = run.config_path.stat().st_mtime
        cached = self._configs.get(run.run_id)
        if cached is None or cached[0] != mtime:
            cfg = run.read_config()
            head = {k: cfg.get(k) for k in ("job", "name", "method")}
            dataset = cfg.get("dataset") if isinstance(cfg.get("dataset"), dict) else {}
            head["task"] = cfg.get("task") or dataset.get("task")
            cached = (mtime, head)
            self._configs[run.run_id] = cached
        return cached[1]

    def list_runs(self, job: str | None = None) -> list[RunInfo]:
        """Every run folder (oldest first), optionally only those of one job kind."""
        if not self.runs_dir.exists():
            return []
        rows = []
        for p in sorted(self.runs_dir.iterdir()):
            run = RunDir(p)
            if not p.is_dir() or not run.exists():
                continue
            try:
                head = self._config_head(run)
                st = self.status(p.name)
            except (RunError, OSError, ValueError):
                continue
            if job is None or head.get("job") == job:
                rows.append(RunInfo(p.name, head.get("job"), head.get("name"), head.get("method"), st,
                                    head.get("task")))
        return rows

    # -- control --------------------------------------------------------------------------------
    def stop(self, run_id: str, timeout: float = 30.0) -> RunStatus:
        """Ask a run's job to stop (SIGTERM: the trainer saves a checkpoint and marks itself stopped)."""
        run = self.get(run_id)
        st = run.read_status()
        pid = st.pid
        if not st.active or not _alive(pid):
            return self.status(run_id)
        _signal_job(pid, own_group=bool(st.get("own_group")))
        deadline = time.time() + timeout
        while time.time() < deadline and _alive(pid):
            proc = self._procs.get(run_id)
            if proc is not None:
                proc.poll()
            time.sleep(0.1)
        st = run.read_status()
        if st.active:
            st = run.write_status("stopped")
        return st

    def wait(self, run_id: str, timeout: float | None = None, poll: float = 0.5) -> RunStatus:
        deadline = None if timeout is None else time.time() + timeout
        while True:
            st = self.status(run_id)
            if st.ended:
                return st
            if deadline is not None and time.time() > deadline:
                return st
            time.sleep(poll)


def _signal_job(pid: int, own_group: bool) -> None:
    """SIGTERM to a job: its whole process group only when the runner started it as a group leader,
    so a foreground run never takes down the script or shell that runs it."""
    try:
        if own_group and os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
