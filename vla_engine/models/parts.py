"""The settings class a registered part declares (``register(name, "module:Part", config="module:PartConfig")``),
read without importing the part itself: config classes are light, so a preset validates before torch loads."""

from __future__ import annotations

import importlib
from typing import Any

from ..registry import Registry, RegistryError


def part_config_class(registry: Registry, name: str) -> Any:
    """The config class registered with part ``name`` of ``registry``, or None when it declares none."""
    if name not in registry:
        raise RegistryError(f"unknown {registry.kind} '{name}'; choose one of: {', '.join(registry.names())}")
    # read without loading the part (its heavy module); the declared config class is imported alone
    cls = registry.meta(name, load=False).get("config")
    if isinstance(cls, str):
        module, attr = cls.split(":")
        cls = getattr(importlib.import_module(module), attr)
    return cls
