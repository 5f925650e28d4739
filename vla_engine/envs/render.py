"""Offscreen MuJoCo cameras for every env family (tabletop, Meta-World, ALOHA, driving): one place that opens
the GL renderer the way this stack needs it.

    renderer = open_renderer(model, 96)          # mujoco.Renderer, 96 x 96
    renderer.update_scene(data, camera="front"); frame = renderer.render()   # (96, 96, 3) uint8
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any


def load_triton_before_gl() -> None:
    """Load triton's native library (if installed) before the first GL context.

    On a CPU, EGL renders with Mesa's llvmpipe, which loads its own LLVM; triton (pulled in by torch's
    compiler when transformers is imported) bundles another LLVM, and loading it after Mesa's crashes
    the process. Loaded first, both coexist. Costs ~0.1 s once.
    """
    if "triton._C.libtriton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    try:
        importlib.import_module("triton._C.libtriton")
    except Exception:  # a broken triton install must not stop rendering
        pass


def open_renderer(model: Any, size: int, height: int | None = None) -> Any:
    """A ``mujoco.Renderer`` of ``size`` x ``height`` (default square) pixels for ``model``; a missing GL backend
    is one line saying how to fix it."""
    import mujoco

    load_triton_before_gl()
    try:
        return mujoco.Renderer(model, height or size, size)
    except Exception as e:  # noqa: BLE001 - no GL backend: say how to fix it in one line
        raise RuntimeError(
            f"MuJoCo could not open an offscreen GL context ({type(e).__name__}: {e}); set MUJOCO_GL=egl (or "
            "osmesa) in the environment before mujoco is first imported, or pass render_images=False"
        ) from None
