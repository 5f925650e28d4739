"""The job runner: starts train / eval / datagen jobs as background processes over run folders.

A job is ``python -m vla_engine.cli job <run-folder>``: the same code path as the command line.
The process runs in its own session, so it outlives the shell or UI that started it; stopping
sends SIGTERM to its process group (the trainer saves a checkpoint and marks itself stopped).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .run_dir import RunDir, RunError, check_run_id, new_run_id

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


class JobRunner:
    """Start, list, watch and stop jobs whose state lives in ``runs_dir``."""

    def __init__(self, runs_dir: str | Path = "runs", max_concurrent: int | None = None):
        self.runs_dir = Path(runs_dir)
        self.max_concurrent = max_concurrent
        self._procs: dict[str, subprocess.Popen] = {}

    # -- start ----------------------------------------------------------------------------------
    def start(self, job: str, config: dict[str, Any], name: str | None = None, run_id: str | None = None) -> str:
        if job not in JOB_KINDS:
            raise RunError(f"unknown job kind {job!r}; choose one of: {', '.join(JOB_KINDS)}")
        if self.max_concurrent is not None:
            active = [r for r in self.list_runs() if r.get("state") in ("queued", "running")]
            if len(active) >= self.max_concurrent:
                raise RunError(
                    f"{len(active)} job(s) already running (limit {self.max_concurrent}); stop one or wait for it to finish"
                )
        run_id = check_run_id(run_id) if run_id else new_run_id(name or config.get("name") or job)
        run = RunDir.create(self.runs_dir, run_id, {"job": job, **config})
        self._spawn(run)
        return run_id

    def resume(self, run_id: str) -> str:
        """Start a stopped/failed run's job again in the same folder (training resumes from its last checkpoint)."""
        run = self.get(run_id)
        if run.read_status().get("state") == "running" and _alive(run.read_status().get("pid")):
            raise RunError(f"run {run_id} is still running; stop it first")
        run.write_status("queued", error=None)
        self._spawn(run)
        return run_id

    def _spawn(self, run: RunDir) -> None:
        log = open(run.path / "stdout.txt", "ab")
        env = dict(os.environ)
        env.setdefault("MUJOCO_GL", "egl")
        env["PYTHONUNBUFFERED"] = "1"
        proc = subprocess.Popen(
            [sys.executable, "-m", "vla_engine.cli", "job", str(run.path)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env, cwd=os.getcwd(),
        )
        log.close()
        self._procs[run.run_id] = proc
        run.write_status(pid=proc.pid)

    # -- inspect --------------------------------------------------------------------------------
    def get(self, run_id: str) -> RunDir:
        check_run_id(run_id)
        run = RunDir(self.runs_dir / run_id)
        if not run.exists():
            raise RunError(f"no run named {run_id!r} in {self.runs_dir}; `vla runs` lists them")
        return run

    def status(self, run_id: str) -> dict:
        run = self.get(run_id)
        st = run.read_status()
        proc = self._procs.get(run_id)
        if proc is not None:
            proc.poll()  # reap our own child so it is not a zombie
        if st.get("state") in ("queued", "running") and st.get("pid") and not _alive(st["pid"]):
            # the process died without writing its end state (killed -9, out of memory, machine restart)
            time.sleep(0.2)
            st = run.read_status()
            if st.get("state") in ("queued", "running"):
                st = run.write_status("failed", error="the job process died unexpectedly (killed?); "
                                                       "`vla resume` continues from its last checkpoint")
        return st

    def list_runs(self) -> list[dict]:
        if not self.runs_dir.exists():
            return []
        rows = []
        for p in sorted(self.runs_dir.iterdir()):
            run = RunDir(p)
            if not p.is_dir() or not run.exists():
                continue
            try:
                cfg = run.read_config()
                st = self.status(p.name)
            except (RunError, OSError, ValueError):
                continue
            rows.append({"run_id": p.name, "job": cfg.get("job"), "name": cfg.get("name"),
                         "method": cfg.get("method"), **st})
        return rows

    # -- control --------------------------------------------------------------------------------
    def stop(self, run_id: str, timeout: float = 30.0) -> dict:
        run = self.get(run_id)
        st = run.read_status()
        pid = st.get("pid")
        if st.get("state") not in ("queued", "running") or not _alive(pid):
            return self.status(run_id)
        try:
            os.killpg(os.getpgid(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.time() + timeout
        while time.time() < deadline and _alive(pid):
            proc = self._procs.get(run_id)
            if proc is not None:
                proc.poll()
            time.sleep(0.1)
        st = run.read_status()
        if st.get("state") in ("queued", "running"):
            st = run.write_status("stopped")
        return st

    def wait(self, run_id: str, timeout: float | None = None, poll: float = 0.5) -> dict:
        deadline = None if timeout is None else time.time() + timeout
        while True:
            st = self.status(run_id)
            if st.get("state") in ("done", "failed", "stopped"):
                return st
            if deadline is not None and time.time() > deadline:
                return st
            time.sleep(poll)
