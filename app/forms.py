"""Forms derived from config dataclasses.

A :class:`Form` lays out one widget per dataclass field, chosen from the field's type:

=========================  ==========================================================
``bool``                   ``gr.Checkbox``
``int`` / ``float``        ``gr.Number`` (``precision=0`` for int)
``int | None`` etc.        ``gr.Textbox`` that starts empty (empty = None, the documented default): a
                           ``gr.Number`` cannot be empty and would show and send 0
``Literal[...]``           ``gr.Dropdown`` of the literal's values
a registry field           ``gr.Dropdown`` of the registry's names (e.g. vision_encoder)
``str`` / ``str | None``   ``gr.Textbox`` (empty = None where allowed)
``list[str]``              ``gr.Textbox`` of comma-separated items
a part's settings (Any)    ``gr.Textbox`` of a YAML mapping, e.g. ``{hidden_dim: 256}``
=========================  ==========================================================

Values go back through ``Cls.from_dict`` so the config's own validation produces the error
message; no number is parsed by hand here. A form can cover several classes at once (the
training configs of the different methods): fields shared by name and type share a widget, and
:meth:`Form.visibility` shows only the fields of the class in use.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
from typing import Any, Literal, Sequence, Union, get_args, get_origin, get_type_hints

import gradio as gr


NONE_CHOICE = ""  # dropdown value standing for None in an optional registry field

# config path -> the label its widget shows ("training.max_steps" -> "Max steps"), filled as forms are laid out,
# so an error the config raises names the field as the page does (see :func:`with_label`)
FIELD_LABELS: dict[str, str] = {}


def with_label(message: str) -> str:
    """``training.max_steps: 0 is out of range`` -> ``Max steps (training.max_steps): 0 is out of range``."""
    path, sep, rest = message.partition(":")
    label = FIELD_LABELS.get(path.strip()) if sep else None
    return f"{label} ({path.strip()}):{rest}" if label else message


# ------------------------------------------------------------------------------------------------
# Field introspection.
# ------------------------------------------------------------------------------------------------
def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


@functools.lru_cache(maxsize=None)
def field_comments(cls: type) -> dict[str, str]:
    """``name: type = default  # comment`` -> {name: comment}, read from the class source (best effort)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s{4}(\w+)\s*:[^=\n]*=[^#\n]*#\s*(.+)$", src, re.M):
            out[m.group(1)] = m.group(2).strip()
    return out


@dataclasses.dataclass
class FieldSpec:
    name: str
    type: Any  # the annotation without Optional
    optional: bool
    default: Any
    choices: list | None  # dropdown choices
    kind: str  # "bool" | "int" | "float" | "choice" | "str" | "list"
    info: str = ""

    @property
    def key(self) -> tuple:
        return (self.name, self.kind, tuple(self.choices) if self.choices is not None else None, self.optional)


def field_specs(cls: type, registries: dict[str, Any] | None = None,
                suggestions: dict[str, list[str]] | None = None) -> list[FieldSpec]:
    """One FieldSpec per dataclass field of ``cls``, in declaration order."""
    registries = registries or {}
    suggestions = suggestions or {}
    hints = get_type_hints(cls)
    comments = field_comments(cls)
    specs = []
    for f in dataclasses.fields(cls):
        tp, optional = _unwrap_optional(hints[f.name])
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        choices = None
        if get_origin(tp) is Literal:
            kind, choices = "choice", list(get_args(tp))
            if optional:
                choices = [NONE_CHOICE] + choices
        elif f.name in registries and tp is str:
            kind, choices = "choice", list(registries[f.name].names())
            if optional:
                choices = [NONE_CHOICE] + choices
        elif tp is bool:
            kind = "bool"
        elif tp is int:
            kind = "int"
        elif tp is float:
            kind = "float"
        elif get_origin(tp) in (list, tuple):
            kind = "list"
        elif tp is Any or tp is dict or get_origin(tp) is dict:
            kind = "mapping"  # a chosen part's own settings (e.g. model.head), written as a YAML mapping
        elif dataclasses.is_dataclass(tp):
            continue  # nested sections get their own form
        else:
            kind = "str"
        info = comments.get(f.name, "")
        if kind == "str" and f.name in suggestions:
            choices = list(suggestions[f.name])
        if kind == "mapping":
            info = (info + "; " if info else "") + "a YAML mapping such as {hidden_dim: 256}; empty = the defaults"
        elif optional and kind in ("int", "float", "str", "list"):
            info = (info + "; " if info else "") + "empty = none"
        specs.append(FieldSpec(f.name, tp, optional, default, choices, kind, info))
    return specs


# ------------------------------------------------------------------------------------------------
# Values <-> widgets.
# ------------------------------------------------------------------------------------------------
def to_widget(spec: FieldSpec, value: Any) -> Any:
    if spec.kind in ("int", "float") and spec.optional:
        return "" if value is None else str(value)
    if spec.kind == "mapping":
        import yaml

        if hasattr(value, "to_dict"):
            value = value.to_dict()
        return "" if value is None else yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()
    if spec.kind == "list":
        return ", ".join(str(v) for v in (value or []))
    if spec.kind == "choice" and value is None:
        return NONE_CHOICE if NONE_CHOICE in (spec.choices or []) else None
    if spec.kind == "str" and value is None:
        return ""
    return value


def from_widget(spec: FieldSpec, value: Any) -> Any:
    """The widget's value as the config wants it; type and range checks are left to the config."""
    if spec.kind == "mapping":
        import yaml

        text = str(value or "").strip()
        if not text:
            return None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text  # the config names the field and says what it expects
    if spec.kind == "list":
        import yaml

        items = [s.strip() for s in str(value or "").split(",") if s.strip()]
        if spec.type is not None and get_args(spec.type) and get_args(spec.type)[0] is not str:
            return [yaml.safe_load(s) for s in items]
        return items
    if spec.kind in ("str", "choice") and spec.optional and (value is None or value == NONE_CHOICE):
        return None
    if spec.kind in ("int", "float") and isinstance(value, str):  # an optional number's text box
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return text  # the config names the field and says it wants a number
        return int(number) if spec.kind == "int" and number.is_integer() else number
    if spec.kind == "str" and isinstance(value, str):
        return value.strip()
    if spec.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# words written as people write them in labels
_WORDS = {"llm": "LLM", "lm": "LM", "vlm": "VLM", "lora": "LoRA", "ema": "EMA", "lr": "LR", "fps": "FPS", "id": "ID",
          "kl": "KL", "gae": "GAE", "mlp": "MLP", "cnn": "CNN", "vit": "ViT", "film": "FiLM", "rl": "RL", "bc": "BC",
          "ppo": "PPO", "sac": "SAC", "grpo": "GRPO", "imu": "IMU", "adam": "Adam", "bf16": "bf16", "fp16": "fp16",
          "dim": "dimension", "ffn": "FFN", "repo": "repo", "dagger": "DAgger", "gail": "GAIL", "max": "Max", "min": "Min"}


def label_of(name: str) -> str:
    """A field name as a form label: ``llm_num_heads`` -> "LLM heads", ``lora_r`` -> "LoRA r"."""
    words = [w for w in name.split("_") if w and w != "num"] or [name]
    out = [_WORDS.get(w, w) for w in words]
    first = out[0]
    out[0] = first[0].upper() + first[1:] if first.islower() else first
    return " ".join(out)


def _label(name: str) -> str:
    return label_of(name)


class Form:
    """Widgets for the fields of one or more config dataclasses (see the module docstring).

    Args:
        section: the config section ("model", "training", ...) used for labels and parameter names.
        classes: the dataclass(es); with several, :meth:`visibility` picks the fields of one.
        values: initial values (a dict of field -> value); defaults come from the first class.
        registries: field name -> Registry for fields whose value names a registry entry.
        skip: field names not shown (set elsewhere in the UI).
        primary: fields laid out first; the rest go into a closed "more" accordion.
        columns: widgets per row.
    """

    def __init__(self, section: str, classes: type | Sequence[type], values: dict | None = None,
                 registries: dict[str, Any] | None = None, skip: Sequence[str] = (),
                 primary: Sequence[str] | None = None, columns: int = 4,
                 suggestions: dict[str, list[str]] | None = None):
        self.section = section
        self.classes = list(classes) if isinstance(classes, (list, tuple)) else [classes]
        self.columns = columns
        self.skip = set(skip)
        self.specs: dict[tuple, FieldSpec] = {}  # union of all classes' fields, by key
        self.class_keys: dict[type, dict[str, tuple]] = {}  # class -> field name -> key
        for cls in self.classes:
            names = {}
            for spec in field_specs(cls, registries, suggestions):
                if spec.name in self.skip:
                    continue
                self.specs.setdefault(spec.key, spec)
                names[spec.name] = spec.key
            self.class_keys[cls] = names
        self.primary = list(primary) if primary is not None else None
        self.components: dict[tuple, gr.components.Component] = {}
        self.render(values or {})

    # -- layout -----------------------------------------------------------------------------
    def _widget(self, spec: FieldSpec, value: Any, visible: bool) -> gr.components.Component:
        label = _label(spec.name)
        v = to_widget(spec, value)
        # the field's own help, then its name in the config file (what `vla train --set` and YAML take)
        field_path = f"{self.section.replace('_', '.', 1) if self.section.startswith('model_') else self.section}.{spec.name}"
        info = f"{spec.info} ({field_path})" if spec.info else field_path
        FIELD_LABELS[field_path] = label
        common = dict(label=label, info=info, visible=visible, interactive=True)
        if spec.kind == "bool":
            return gr.Checkbox(value=bool(v), **common)
        if spec.kind in ("int", "float") and spec.optional:
            return gr.Textbox(value="" if v is None else str(v), placeholder="empty = none", **common)
        if spec.kind == "int":
            return gr.Number(value=v, precision=0, **common)
        if spec.kind == "float":
            return gr.Number(value=v, **common)
        if spec.kind == "choice":
            return gr.Dropdown(choices=[(c if c != NONE_CHOICE else "(none)", c) for c in spec.choices or []],
                               value=v, **common)
        if spec.kind == "str" and spec.choices:
            return gr.Dropdown(choices=spec.choices, value=v, allow_custom_value=True, **common)
        return gr.Textbox(value=v, **common)

    def render(self, values: dict) -> None:
        first = self.classes[0]
        first_keys = set(self.class_keys[first].values())
        keys = list(self.specs)
        if self.primary is not None:
            head = [k for k in keys if self.specs[k].name in self.primary]
            head.sort(key=lambda k: self.primary.index(self.specs[k].name))
            tail = [k for k in keys if k not in head]
        else:
            head, tail = keys, []

        def rows(ks: list[tuple]) -> None:
            for i in range(0, len(ks), self.columns):
                with gr.Row(equal_height=False):
                    for k in ks[i: i + self.columns]:
                        spec = self.specs[k]
                        value = values.get(spec.name, spec.default) if k in first_keys else spec.default
                        self.components[k] = self._widget(spec, value, visible=k in first_keys)

        rows(head)
        if tail:
            with gr.Accordion(f"More {self.section} settings", open=False):
                rows(tail)
        # keep the declared order for inputs
        self.components = {k: self.components[k] for k in keys}

    # -- wiring -----------------------------------------------------------------------------
    @property
    def inputs(self) -> list[gr.components.Component]:
        return list(self.components.values())

    def component(self, name: str) -> gr.components.Component:
        """The widget of field ``name`` (of the first class that has it)."""
        for cls in self.classes:
            key = self.class_keys[cls].get(name)
            if key is not None:
                return self.components[key]
        raise KeyError(f"form {self.section!r} has no field {name!r}")

    @property
    def param_names(self) -> list[str]:
        """``section__field`` per widget (``section__field__<class>`` where two classes type a field differently)."""
        out = []
        for k in self.components:
            name = f"{self.section}__{self.specs[k].name}"
            if sum(1 for other in self.specs if other[0] == k[0]) > 1:
                owner = next(c for c in self.classes if self.class_keys[c].get(k[0]) == k)
                name += f"__{getattr(owner, 'type_name', owner.__name__)}"
            out.append(name)
        return out

    def values(self, widget_values: Sequence[Any], cls: type | None = None) -> dict:
        """The field dict of ``cls`` (default: the first class) from the widgets' values."""
        cls = cls or self.classes[0]
        by_key = dict(zip(self.components, widget_values))
        return {name: from_widget(self.specs[k], by_key[k]) for name, k in self.class_keys[cls].items()}

    def updates(self, data: dict, cls: type | None = None) -> list[Any]:
        """gr.update per widget: values from ``data`` (missing fields: the class default), visibility by ``cls``."""
        cls = cls or self.classes[0]
        mine = self.class_keys[cls]
        defaults = {s.name: s.default for s in field_specs(cls)}
        out = []
        for k, spec in self.specs.items():
            if mine.get(spec.name) == k:
                v = data.get(spec.name, defaults.get(spec.name))
                out.append(gr.update(value=to_widget(spec, v), visible=True))
            else:
                out.append(gr.update(visible=False))
        return out

    def visibility(self, cls: type) -> list[Any]:
        mine = set(self.class_keys[cls].values())
        return [gr.update(visible=k in mine) for k in self.specs]


# ------------------------------------------------------------------------------------------------
# Small widgets.
# ------------------------------------------------------------------------------------------------
def optional_number(label: str, empty: str, **kwargs: Any) -> gr.Textbox:
    """A number the user may leave empty (empty = ``empty``, the documented default). A ``gr.Number`` cannot
    be empty: it shows and sends 0."""
    return gr.Textbox("", label=f"{label} (empty: {empty})", placeholder=empty, **kwargs)


def parse_optional_int(value: Any, label: str, minimum: int | None = None, empty: str = "the default") -> int | None:
    """The whole number in an optional number box, or None when it is empty; a one-line error names the field
    by its label."""
    from .context import AppError

    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        raise AppError(f"{label}: {value!r} is not a number; type a whole number or leave it empty "
                       f"({empty})") from None
    if not number.is_integer():
        raise AppError(f"{label}: {value!r} is not a whole number; type one such as {int(number) or 1}")
    if minimum is not None and number < minimum:
        raise AppError(f"{label}: {int(number)} is less than {minimum}; type {minimum} or more, or leave it empty "
                       f"({empty})")
    return int(number)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s % 3600) // 60:02d}m"


def progress_html(done: float | None, total: float | None, text: str = "") -> str:
    """A small progress bar (HTML) with a caption."""
    frac = 0.0
    if done is not None and total:
        frac = max(0.0, min(1.0, float(done) / float(total)))
    return (f"<div class='vla-progress'><div class='vla-progress-bar' style='width:{frac * 100:.1f}%'></div></div>"
            f"<div class='vla-progress-text'>{text}</div>")


__all__ = ["Form", "FieldSpec", "field_specs", "fmt_duration", "label_of", "optional_number", "parse_optional_int",
           "progress_html", "to_widget", "from_widget"]
