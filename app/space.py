"""Hugging Face Space entry (``app_file: app/space.py``): CPU only, one background job at a time.

Settings come from the environment: ``VLA_RUNS_DIR`` (default ``runs``), ``VLA_DATASETS_DIR``
(``datasets``), ``VLA_MAX_JOBS`` (1), ``PORT`` (7860). The ``app`` package is imported as installed
(``pip install .`` or ``-e .`` installs ``vla_engine`` and ``app`` together), so ``python app/space.py``
works from any folder.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU only, also for the job processes this app starts

from app.context import AppContext  # noqa: E402  (after the environment above)
from app.main import build_app, launch  # noqa: E402


def create_space_app():
    ctx = AppContext.create(os.environ.get("VLA_RUNS_DIR", "runs"), os.environ.get("VLA_DATASETS_DIR", "datasets"),
                            max_concurrent=int(os.environ.get("VLA_MAX_JOBS", "1")), cpu_only=True,
                            shared=True)
    return ctx, build_app(ctx)


ctx, demo = create_space_app()

if __name__ == "__main__":
    launch(demo, ctx, host="0.0.0.0", port=int(os.environ.get("PORT", "7860")), concurrency=2)
