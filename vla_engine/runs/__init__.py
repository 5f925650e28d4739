"""Run folders and the background job runner."""

from .run_dir import RunDir, RunError, atomic_write_text, check_run_id, new_run_id

__all__ = ["RunDir", "RunError", "JobLimitReached", "atomic_write_text", "check_run_id", "new_run_id", "JobRunner"]


def __getattr__(name: str):
    if name in ("JobRunner", "JobLimitReached"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)
