"""One registry pattern for every choosable part (tasks, encoders, projectors, heads, trainers, ...).

A registry maps a short name ("mlp", "siglip", "push", "bc") to the object that builds it.
Entries may be registered lazily as "module:attr" strings so heavy modules are imported only
when first built, which keeps ``import vla_engine`` (and the UI start-up) fast.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterator


class RegistryError(KeyError):
    """Unknown name in a registry. ``str()`` is a one-line message naming the choices."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._meta: dict[str, dict] = {}

    def register(self, name: str, obj: Any = None, **meta: Any) -> Callable:
        """Register ``obj`` under ``name``; usable as a decorator. ``obj`` may be "module:attr"."""

        def deco(o: Any) -> Any:
            if name in self._entries and self._entries[name] is not o:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = o
            self._meta[name] = dict(meta)
            if not isinstance(o, str):
                try:
                    o.name = name
                except (AttributeError, TypeError):
                    pass
            return o

        return deco(obj) if obj is not None else deco

    def get(self, name: str) -> Any:
        if name not in self._entries:
            raise RegistryError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}"
            )
        obj = self._entries[name]
        if isinstance(obj, str):
            module, attr = obj.split(":")
            obj = getattr(importlib.import_module(module), attr)
            try:
                obj.name = name
            except (AttributeError, TypeError):
                pass
            self._entries[name] = obj
        return obj

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)

    def meta(self, name: str, load: bool = True) -> dict:
        """What ``name`` was registered with. ``load=False`` reads it without importing the entry's module
        (a lazy "module:attr" entry stays unloaded: a part's light config class, a method's config type)."""
        if load or name not in self._entries:
            self.get(name)  # an unknown name: the one-line error listing the choices
        return self._meta.get(name, {})

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


# The registries of the engine. Modules add their entries where they are defined; the lazy
# "module:attr" entries below name parts that live in heavy modules.
TASKS = Registry("task")
VISION_ENCODERS = Registry("vision encoder")
PROJECTORS = Registry("projector")
LANGUAGE_MODELS = Registry("language backbone")
ACTION_HEADS = Registry("action head")
TRAINERS = Registry("training method")
SENSOR_ENCODERS = Registry("sensor encoder")
FUSIONS = Registry("fusion")
