"""Dataclass configs that validate themselves and round-trip through YAML.

Every config is flat data: numbers, strings, booleans, lists and nested configs. Errors are
one line naming the field, the bad value and what is allowed, e.g.
``training.learning_rate: -1.0 is out of range; must be > 0``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A config field has a bad name, type or value. The message is one line."""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to floats)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{where}: {value!r} is not allowed; choose one of: {', '.join(map(str, choices))}"
            )
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{where}: {value!r} has the wrong type; expected {_type_name(tp)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {value!r} has the wrong type; expected {_type_name(tp)}")
        args = get_args(tp)
        item = args[0] if args else Any
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {value!r} has the wrong type; expected a mapping")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return tp.from_dict(value, prefix=where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {value!r} has the wrong type; expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: {value!r} has the wrong type; expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {value!r} has the wrong type; expected a number")
        if not math.isfinite(value):  # NaN passes every range check (all comparisons are false)
            raise ConfigError(f"{where}: {value!r} is not a finite number; give a number such as 0.001")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {value!r} has the wrong type; expected a string")
        return value
    return value


@dataclasses.dataclass
class ConfigBase:
    """Base of every config: typed construction from dicts, validation hooks, YAML I/O."""

    # name used in error messages ("training", "model", ...); subclasses override
    _section: typing.ClassVar[str] = "config"

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            setattr(self, f.name, _coerce(value, hints[f.name], f"{self._section}.{f.name}"))
        self.validate()

    # -- hooks -----------------------------------------------------------------------------
    def validate(self) -> None:
        """Range and cross-field checks; raise ConfigError via ``self._fail``."""

    def _fail(self, field: str, msg: str) -> typing.NoReturn:
        raise ConfigError(f"{self._section}.{field}: {getattr(self, field)!r} {msg}")

    def _check_range(self, field: str, lo: float | None = None, hi: float | None = None,
                     lo_open: bool = False) -> None:
        v = getattr(self, field)
        if v is None:
            return
        if lo is not None and (v <= lo if lo_open else v < lo):
            self._fail(field, f"is out of range; must be {'>' if lo_open else '>='} {lo}")
        if hi is not None and v > hi:
            self._fail(field, f"is out of range; must be <= {hi}")

    def _check_choice(self, field: str, registry: Any) -> None:
        v = getattr(self, field)
        if v not in registry:
            self._fail(field, f"is not a known {registry.kind}; choose one of: {', '.join(registry.names())}")

    # -- dict / YAML -----------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Each field's help: its ``metadata["help"]``, else its own comment or docstring in the class
        source (the comment above it, on its line, or a string below it: LeRobot's convention, read with
        draccus), looked up through the base classes. The forms and ``vla describe`` show it."""
        return _field_help(cls)

    @classmethod
    def from_dict(cls, data: dict | None, prefix: str | None = None):
        data = dict(data or {})
        data.pop("type", None)
        names = cls.field_names() + list(getattr(cls, "_init_only", ()))  # constructor-only keywords too
        where = prefix or cls._section
        for key in data:
            if key not in names:
                raise ConfigError(
                    f"{where}: unknown field '{key}'; allowed fields: {', '.join(names)}"
                )
        return cls(**data)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        type_name = getattr(type(self), "type_name", None)
        if type_name:
            out["type"] = type_name
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, ConfigBase):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    def replace(self, **changes: Any):
        d = self.to_dict()
        for k, v in changes.items():
            if k not in self.field_names():
                raise ConfigError(
                    f"{self._section}: unknown field '{k}'; allowed fields: {', '.join(self.field_names())}"
                )
            d[k] = v.to_dict() if isinstance(v, ConfigBase) else v
        return type(self).from_dict(d)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path):
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist; check the path")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix the syntax") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config fields at the top level")
        return cls.from_dict(data)


@functools.lru_cache(maxsize=None)
def _field_help(cls: type) -> dict[str, str]:
    from draccus.wrappers.docstring import get_attribute_docstring

    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        text = f.metadata.get("help", "") if f.metadata else ""
        for klass in cls.__mro__:  # the class that declares the field holds its comment
            if text or not dataclasses.is_dataclass(klass) or f.name not in getattr(klass, "__annotations__", {}):
                continue
            try:
                doc = get_attribute_docstring(klass, f.name)
            except (OSError, TypeError, SyntaxError):
                continue
            if doc is not None:
                # the comment on the field's line, else the one above it (which may head a group of fields)
                parts = (doc.comment_inline or doc.comment_above, doc.docstring_below)
                text = " ".join(" ".join(parts).split())
        out[f.name] = text
    return out


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` overrides (values parsed as YAML scalars) to a nested dict."""
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override '{ov}' must look like section.field=value, e.g. training.max_steps=200")
        key, raw = ov.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {} if p not in node else node[p]
                if not isinstance(node[p], dict):
                    raise ConfigError(f"override '{ov}': '{p}' is not a section")
            node = node[p]
        node[parts[-1]] = value
    return data
