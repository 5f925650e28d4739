"""Named presets: YAML run configs shipped in ``vla_engine/presets/``.

``get_training_config(name)`` gives the training part; ``load_preset(name)`` the
whole run config. A path to a YAML file works wherever a preset name does.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .base import ConfigError, apply_overrides
from .run_config import RunConfig
from .training_config import TrainingConfig

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist; check the path")
        return p
    p = PRESETS_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        raise ConfigError(f"unknown preset '{name_or_path}'; choose one of: {', '.join(list_presets())}")
    return p


def load_preset_dict(name_or_path: str | Path, overrides: list[str] | None = None) -> dict:
    path = preset_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections at the top level")
    return apply_overrides(data, overrides or [])


def load_preset(name_or_path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """The run config of a preset (or YAML file), with ``section.field=value`` overrides applied."""
    return RunConfig.from_dict(load_preset_dict(name_or_path, overrides))


def get_training_config(name: str) -> TrainingConfig:
    """The training config of a preset, e.g. ``get_training_config("finetune-lora")``."""
    return load_preset(name).training
