"""Checkpoints shipped inside the package, so a fresh install (or a Space) can roll out and benchmark a
policy at once. Each lives in ``vla_engine/pretrained/<name>/``: ``checkpoint/`` (a ``VLAModel``
folder), the recipe's ``config.yaml``, ``shipped.json`` (task, command, measured success) and a README.
They are made by ``tools/ship_checkpoint.py`` (``make shipped-checkpoint``).

Refer to one as ``shipped:<name>`` wherever a checkpoint is asked for (``vla eval shipped:reach-tiny``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PREFIX = "shipped:"
ROOT = Path(__file__).resolve().parent


def list_shipped() -> list[dict[str, Any]]:
    """``[{"name", "task", "success_rate", "path", ...}]`` for every shipped checkpoint."""
    out = []
    for d in sorted(p for p in ROOT.iterdir() if p.is_dir() and (p / "checkpoint" / "model.safetensors").exists()):
        info: dict[str, Any] = {"name": d.name, "path": str(d / "checkpoint")}
        try:
            meta = json.loads((d / "shipped.json").read_text())
        except (OSError, json.JSONDecodeError):
            meta = {}
        info["task"] = meta.get("task")
        info["success_rate"] = (meta.get("eval") or {}).get("eval/success_rate")
        info["command"] = meta.get("command")
        out.append(info)
    return out


def is_shipped_ref(ref: Any) -> bool:
    return isinstance(ref, str) and ref.startswith(PREFIX)


def shipped_checkpoint(ref: str) -> Path:
    """The checkpoint folder of ``shipped:<name>`` (or ``<name>``)."""
    name = ref[len(PREFIX):] if ref.startswith(PREFIX) else ref
    names = [s["name"] for s in list_shipped()]
    if name not in names:
        raise FileNotFoundError(f"no shipped checkpoint named {name!r}; shipped: {', '.join(names) or 'none'}")
    return ROOT / name / "checkpoint"
