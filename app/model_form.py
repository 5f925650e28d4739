"""The model form: the model config's own fields, and one sub-form per chosen part's settings.

A model config names its parts (``vision_encoder``, ``projector``, ``action_head``) and holds each part's
settings (``vision``, ``projection``, ``head``) as that part's own config class, registered with it
(``models/configuration_*.py``). The form shows the model's fields as a :class:`~app.forms.Form`, and under
them, per part, a Form over every registered config class of that slot with only the chosen part's fields
visible. Choosing another part re-shows its sub-form: fields the two parts share (by name and type, such as
``hidden_dim``) keep their values, the others show the new part's. The whole behaves as one Form for
:mod:`app.events` (``inputs``, ``param_names``, ``values``, ``updates``).
"""

from __future__ import annotations

from typing import Any, Sequence

import gradio as gr

from vla_engine.config.model_config import SLOTS, ModelConfig
from vla_engine.models.parts import part_config_class

from .forms import Form

SUBFORM_TITLES = {"vision": "Vision encoder settings", "projection": "Projector settings",
                  "head": "Action head settings"}


class PartForm:
    """The settings of one slot (e.g. the action head): a Form over its parts' config classes."""

    def __init__(self, part: str, sub: str, registry: Any, selected: str, values: dict | None, columns: int):
        self.part, self.sub, self.registry = part, sub, registry
        self.class_of = {name: part_config_class(registry, name) for name in registry.names()}
        chosen = self.class_of.get(selected)
        # the chosen part's class first: a Form shows its first class's fields when it is laid out
        classes = [chosen] if chosen is not None else []
        for cls in self.class_of.values():
            if cls is not None and cls not in classes:
                classes.append(cls)
        self.form = Form(f"model_{sub}", classes, values or {}, columns=columns) if classes else None
        if self.form is not None and chosen is None:  # a part without settings: nothing to show
            for comp in self.form.inputs:
                comp.visible = False

    @property
    def inputs(self) -> list:
        return self.form.inputs if self.form is not None else []

    @property
    def param_names(self) -> list[str]:
        return self.form.param_names if self.form is not None else []

    def values(self, widget_values: Sequence[Any], part_name: str) -> dict | None:
        cls = self.class_of.get(part_name)
        if self.form is None or cls is None:
            return None
        return self.form.values(widget_values, cls)

    def updates(self, data: dict | None, part_name: str) -> list:
        """Show ``part_name``'s fields with the values in ``data`` (missing: the part's defaults)."""
        if self.form is None:
            return []
        cls = self.class_of.get(part_name)
        if cls is None:
            return [gr.update(visible=False) for _ in self.form.inputs]
        return self.form.updates(dict(data or {}), cls)


class SensorsForm:
    """``model.sensors``: off for a camera-only VLA; on, the encoders of lidar / radar / IMU and their fusion
    (a MultiSensorVLA, for the driving tasks)."""

    def __init__(self, values: dict | None, columns: int):
        from vla_engine.models.configuration_multisensor import MultiSensorConfig
        from vla_engine.registry import FUSIONS, SENSOR_ENCODERS

        self.cls = MultiSensorConfig
        self.enabled = gr.Checkbox(values is not None, label="Other sensors (lidar, radar, IMU)",
                                   info="on: a multi-sensor VLA that fuses them with the camera (the driving "
                                        "tasks); off: a camera-only VLA (model.sensors)")
        registries = {"lidar": SENSOR_ENCODERS, "radar": SENSOR_ENCODERS, "imu": SENSOR_ENCODERS,
                      "fusion": FUSIONS}
        self.form = Form("model_sensors", MultiSensorConfig, values or {}, registries=registries,
                         columns=columns, primary=["lidar", "radar", "imu", "fusion", "fusion_dim",
                                                   "prediction_horizon", "fuse_camera", "sensor_dropout"])
        for comp in self.form.inputs:
            comp.visible = values is not None
        self.enabled.change(lambda on, *w: [gr.update(visible=bool(on)) for _ in w],
                            [self.enabled, *self.form.inputs], self.form.inputs, api_name=False, queue=False,
                            show_progress="hidden")

    @property
    def inputs(self) -> list:
        return [self.enabled] + self.form.inputs

    @property
    def param_names(self) -> list[str]:
        return ["model_sensors__enabled"] + self.form.param_names

    def values(self, widget_values: Sequence[Any]) -> dict | None:
        on, *rest = widget_values
        return self.form.values(rest, self.cls) if on else None

    def updates(self, data: Any) -> list:
        if hasattr(data, "to_dict"):
            data = data.to_dict()
        on = data is not None
        ups = self.form.updates(dict(data or {}), self.cls)
        return [gr.update(value=on)] + [gr.update(**{**u, "visible": on}) if isinstance(u, dict) else u
                                        for u in ups]


class ModelForm:
    """The model config as a form: its own fields plus the chosen parts' settings (see the module docstring)."""

    def __init__(self, values: dict | None = None, registries: dict[str, Any] | None = None,
                 primary: Sequence[str] | None = None, columns: int = 4):
        values = dict(values or ModelConfig().to_dict())
        registries = registries or {}
        subs = [sub for _, sub, _, _, _ in SLOTS]
        self.main = Form("model", ModelConfig, values, registries=registries, skip=[*subs, "sensors"],
                         primary=primary, columns=columns)
        self.parts: list[PartForm] = []
        with gr.Row(equal_height=False):
            for part, sub, registry, _, _ in SLOTS:
                with gr.Column(min_width=260):
                    with gr.Accordion(SUBFORM_TITLES.get(sub, sub), open=sub == "head"):
                        self.parts.append(PartForm(part, sub, registries.get(part, registry), values.get(part),
                                                   values.get(sub), columns=2))
        with gr.Accordion("Other sensors (lidar, radar, IMU)", open=values.get("sensors") is not None):
            self.sensors = SensorsForm(values.get("sensors"), columns=4)

    # -- the Form protocol of app.events -------------------------------------------------------
    @property
    def inputs(self) -> list:
        return self.main.inputs + [c for p in self.parts for c in p.inputs] + self.sensors.inputs

    @property
    def param_names(self) -> list[str]:
        return self.main.param_names + [n for p in self.parts for n in p.param_names] + self.sensors.param_names

    def component(self, name: str) -> Any:
        return self.main.component(name)

    def _split(self, widget_values: Sequence[Any]) -> tuple[list, list[list], list]:
        values = list(widget_values)
        n = len(self.main.inputs)
        main, rest, out = values[:n], values[n:], []
        for p in self.parts:
            k = len(p.inputs)
            out.append(rest[:k])
            rest = rest[k:]
        return main, out, rest

    def values(self, widget_values: Sequence[Any]) -> dict:
        """The model config's field dict: its own fields, each chosen part's settings and the sensors."""
        main, parts, sensors = self._split(widget_values)
        data = self.main.values(main)
        for p, vals in zip(self.parts, parts):
            data[p.sub] = p.values(vals, data.get(p.part))
        data["sensors"] = self.sensors.values(sensors)
        return data

    def updates(self, data: dict) -> list:
        """gr.update per widget for the model config ``data`` (a ``ModelConfig.to_dict()``)."""
        out = self.main.updates(data)
        for p in self.parts:
            out += p.updates(data.get(p.sub), data.get(p.part))
        return out + self.sensors.updates(data.get("sensors"))

    # -- re-show a part's settings when another part is chosen -----------------------------------
    def wire_part_changes(self) -> None:
        for p in self.parts:
            if p.form is None:
                continue
            selector = self.main.component(p.part)

            def show(name: str, *widgets: Any, _p: PartForm = p) -> list:
                keep = _p.values(widgets, name)  # fields shared with the previous part keep their values
                return _p.updates(keep, name)

            selector.change(show, [selector, *p.inputs], p.inputs, api_name=False, queue=False,
                            show_progress="hidden")


__all__ = ["ModelForm", "PartForm", "SensorsForm"]
