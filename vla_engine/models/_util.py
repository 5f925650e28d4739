"""Small helpers shared by the model modules."""

from __future__ import annotations

import os


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
    from ..config.base import ConfigError

    offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
    return ConfigError(
        f"model.{field}: {ref!r} could not be loaded as {what}{offline} ({_first_line(e)}); "
        f"give a local folder saved with save_pretrained or a cached hub id"
    )
