"""Small helpers shared by the model modules."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..config.base import ConfigError


def _import_transformers():
    # transformers otherwise imports TensorFlow when it is installed (seconds of start-up, unused here)
    os.environ.setdefault("USE_TF", "0")
    import transformers

    return transformers


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def pretrained_load_error(field: str, ref: str, what: str, e: BaseException):
    """The one-line ConfigError for a pretrained folder / hub id that could not be loaded."""
    offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
    return ConfigError(
        f"model.{field}: {ref!r} could not be loaded as {what}{offline} ({_first_line(e)}); "
        f"give a local folder saved with save_pretrained or a cached hub id"
    )


def cached_hub_config(repo_id: str) -> dict | None:
    """The config.json of ``repo_id`` when it is in the local HF cache (never touches the network)."""
    if "/" not in repo_id or repo_id.count("/") != 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # noqa: BLE001 - an odd id or cache: treat as not cached
        return None
    if not isinstance(path, str):
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
