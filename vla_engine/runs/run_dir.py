"""The run folder: the contract between the engine and anything that watches it (CLI, UI).

```
runs/<run-id>/
  config.yaml          the full resolved config (reproduces the run)
  status.json          state (queued/running/done/failed/stopped), step, ETA, pid, error
  metrics.jsonl        one JSON object per logged step, appended and flushed
  events.out.tfevents  the same scalars for TensorBoard
  log.txt              human-readable log
  checkpoints/step-N/  model.safetensors, config.json, trainer_state.json
  videos/              rollout mp4s with a JSON of their episode results
```
Writes that must not be half-done (status, checkpoints) go to a temporary name and are renamed.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from .schema import SCHEMA_VERSION, STATES, RunStatus

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RunError(ValueError):
    """A run folder is missing, malformed or named unsafely. One-line message."""


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_run_id(run_id: str) -> str:
    if not _RUN_ID_RE.match(run_id or "") or ".." in run_id:
        raise RunError(
            f"run name {run_id!r} is not allowed; use letters, digits, '.', '_' and '-' (no paths)"
        )
    return run_id


def new_run_id(name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{base}"[:120]


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item):
        try:
            v = v.item()
        except (ValueError, RuntimeError):
            return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class RunDir:
    """One run's folder. Cheap to construct; creates nothing until asked."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._tb = None
        self._metrics_f = None
        self._purge_step: int | None = None

    # -- paths --------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.path.name

    config_path = property(lambda self: self.path / "config.yaml")
    status_path = property(lambda self: self.path / "status.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    log_path = property(lambda self: self.path / "log.txt")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    videos_dir = property(lambda self: self.path / "videos")

    def exists(self) -> bool:
        return self.config_path.exists()

    @classmethod
    def create(cls, runs_dir: str | Path, run_id: str, config: dict) -> "RunDir":
        check_run_id(run_id)
        run = cls(Path(runs_dir) / run_id)
        if run.path.exists() and any(run.path.iterdir()):
            raise RunError(f"run folder {run.path} already exists; pick another --name or remove it")
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(config)
        run.write_status("queued", step=0)
        return run

    # -- config -------------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict:
        if not self.config_path.exists():
            raise RunError(f"{self.path} is not a run folder (no config.yaml)")
        return yaml.safe_load(self.config_path.read_text()) or {}

    # -- status -------------------------------------------------------------------------------
    def read_status(self) -> RunStatus:
        try:
            data = json.loads(self.status_path.read_text())
        except FileNotFoundError:
            return RunStatus()
        except json.JSONDecodeError:
            return RunStatus(error="status.json is unreadable")
        return RunStatus.from_dict(data if isinstance(data, dict) else {})

    def write_status(self, state: str | None = None, **fields: Any) -> RunStatus:
        """Update ``status.json`` (read, change, atomic rename); ``fields`` are RunStatus fields or extras."""
        status = self.read_status().to_dict() if self.status_path.exists() else {}
        if state is not None:
            if state not in STATES:
                raise ValueError(f"unknown run state {state!r}")
            status["state"] = state
            if state == "running":
                status.setdefault("started_at", time.time())
                status["pid"] = os.getpid()
            if state in ("done", "failed", "stopped"):
                status["ended_at"] = time.time()
        status.update({k: _jsonable(v) for k, v in fields.items()})
        status["updated_at"] = time.time()
        status["version"] = SCHEMA_VERSION
        status = {k: v for k, v in status.items() if v is not None}
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.status_path, json.dumps(status, indent=1))
        return RunStatus.from_dict(status)

    # -- metrics ------------------------------------------------------------------------------
    def log_metrics(self, step: int, metrics: dict[str, Any]) -> None:
        """Append one JSON line (flushed) and write the same scalars to TensorBoard."""
        row = {"step": int(step), "time": round(time.time(), 3)}
        row.update({k: _jsonable(v) for k, v in metrics.items()})
        if self._metrics_f is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._metrics_f = open(self.metrics_path, "a")
        self._metrics_f.write(json.dumps(row) + "\n")
        self._metrics_f.flush()
        tb = self._tensorboard()
        if tb is not None:
            for k, v in row.items():
                if k not in ("step", "time") and isinstance(v, (int, float)) and not isinstance(v, bool):
                    tb.add_scalar(k, v, step)

    def _tensorboard(self):
        if self._tb is None:
            # TensorBoard's writer otherwise imports all of TensorFlow when it is installed (seconds of
            # start-up, and a segfault next to MuJoCo's EGL context); this module is TensorBoard's own
            # switch to its TF-free stub.
            import sys
            import types

            sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: jsonl only
                self._tb = False
                return None
            # purge_step: a resumed run drops the events it logs again (TensorBoard shows each step once)
            self._tb = SummaryWriter(log_dir=str(self.path), flush_secs=5, purge_step=self._purge_step)
        return self._tb or None

    def truncate_metrics(self, step: int) -> int:
        """Drop metric rows logged after ``step`` (a resume from the checkpoint of that step logs them
        again); returns how many rows were dropped. The file is rewritten whole and renamed into place."""
        if not self.metrics_path.exists():
            return 0
        kept, dropped = [], 0
        for line in self.metrics_path.read_bytes().splitlines(keepends=True):
            try:
                row_step = json.loads(line).get("step", 0)
            except (json.JSONDecodeError, AttributeError):
                dropped += 1  # a half-written last line of a killed process
                continue
            if isinstance(row_step, (int, float)) and row_step > step:
                dropped += 1
            else:
                kept.append(line if line.endswith(b"\n") else line + b"\n")
        if dropped:
            self.close()
            atomic_write_text(self.metrics_path, b"".join(kept).decode())
        return dropped

    def metrics_truncated(self, offset: int) -> bool:
        """True when ``metrics.jsonl`` is now shorter than a reader's ``offset`` (a resume truncated it):
        the reader should drop what it read and start again from 0."""
        try:
            return offset > self.metrics_path.stat().st_size
        except FileNotFoundError:
            return offset > 0

    def read_metrics(self, offset: int = 0) -> tuple[list[dict], int]:
        """Rows appended since byte ``offset`` and the new offset (complete lines only)."""
        if not self.metrics_path.exists():
            return [], offset
        with open(self.metrics_path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return [], offset
        rows = []
        for line in chunk[: end + 1].splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows, offset + end + 1

    def close(self) -> None:
        if self._metrics_f is not None:
            self._metrics_f.close()
            self._metrics_f = None
        if self._tb:
            self._tb.close()
            self._tb = None

    # -- log ----------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    def tail_log(self, n: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    # -- checkpoints --------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (a checkpoint folder appears only by rename)."""
        if not self.checkpoints_dir.exists():
            return []
        out = []
        for p in self.checkpoints_dir.iterdir():
            m = re.fullmatch(r"step-(\d+)", p.name)
            if m and p.is_dir():
                out.append((int(m.group(1)), p))
        return [p for _, p in sorted(out)]

    def last_checkpoint(self) -> Path | None:
        cps = self.checkpoints()
        return cps[-1] if cps else None

    def write_checkpoint(self, step: int, write: Any, keep_last: int) -> Path:
        """``checkpoints/step-<step>/`` as ``write(folder)`` fills it: written into a temporary folder and renamed
        into place, so a checkpoint appears whole or not at all; then only the newest ``keep_last`` are kept.
        A step that already has its checkpoint keeps it."""
        final = self.checkpoints_dir / f"step-{step}"
        if final.exists():
            return final
        tmp = self.checkpoints_dir / f".tmp-step-{step}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        write(tmp)
        os.replace(tmp, final)
        for old in self.checkpoints()[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        self.log(f"saved checkpoint {final.name}")
        return final

    def prepare_resume(self, step: int) -> None:
        """Before training resumes from the checkpoint of ``step``: remove half-written checkpoint folders
        (``.tmp-step-*`` of a killed write) and the metric rows logged after that checkpoint."""
        if self.checkpoints_dir.exists():
            for p in self.checkpoints_dir.glob(".tmp-step-*"):
                shutil.rmtree(p, ignore_errors=True)
        dropped = self.truncate_metrics(step)
        self._purge_step = step + 1
        if dropped:
            self.log(f"dropped {dropped} metric rows logged after step {step} (they are logged again)")
