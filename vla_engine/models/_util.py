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
