"""The VLA Workbench browser app (Gradio): UI only, over the engine's public API and run folders.

    python launch.py                  # http://127.0.0.1:7860
    from app import AppContext, build_app, launch
"""

from .context import AppContext, AppError
from .main import build_app, launch

__all__ = ["AppContext", "AppError", "build_app", "launch"]
