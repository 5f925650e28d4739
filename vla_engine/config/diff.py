"""Config dicts compared field by field: which settings two runs differ in, and the ``vla train`` command
that turns a preset into a given run config.

    flatten({"training": {"max_steps": 200}})        -> {"training.max_steps": 200}
    config_diff([cfg_a, cfg_b])                       -> {"training.learning_rate": [0.001, 0.0003], ...}
    train_command("quickstart", preset_cfg, cfg)      -> "vla train quickstart --name r --set training.max_steps=200"
"""

from __future__ import annotations

import shlex
from typing import Any, Sequence

import yaml

# keys that name or describe a run rather than set it
_NOT_SETTINGS = ("name", "description", "version", "job")


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for k, v in (data or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_diff(configs: Sequence[dict], skip: Sequence[str] = _NOT_SETTINGS) -> dict[str, list[Any]]:
    """The settings (dotted paths) whose values are not the same in every config, with each config's value
    (None where a config lacks the key), in path order."""
    flat = [flatten({k: v for k, v in (c or {}).items() if k not in skip}) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    return {k: [f.get(k) for f in flat] for k in keys if len({yaml.safe_dump(f.get(k)) for f in flat}) > 1}


def _scalar(value: Any) -> str:
    """A value as ``--set`` reads it back (YAML, one line)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text[:-4].strip() if text.endswith("\n...") else text.removesuffix("...").strip()


def train_command(preset: str, preset_cfg: dict, cfg: dict) -> str:
    """The ``vla train`` command that runs ``cfg`` starting from preset ``preset`` (whose resolved dict is
    ``preset_cfg``): its name, and one ``--set`` per setting that differs from the preset."""
    parts = ["vla", "train", preset]
    if cfg.get("name") and cfg.get("name") != preset_cfg.get("name"):
        parts += ["--name", str(cfg["name"])]
    base = flatten({k: v for k, v in preset_cfg.items() if k not in _NOT_SETTINGS})
    for key, value in flatten({k: v for k, v in cfg.items() if k not in _NOT_SETTINGS}).items():
        if key not in base or yaml.safe_dump(base[key]) != yaml.safe_dump(value):
            parts += ["--set", f"{key}={_scalar(value)}"]
    return " ".join(shlex.quote(p) for p in parts)


__all__ = ["config_diff", "flatten", "train_command"]
