"""The model form: one sub-form per chosen part, labels people can read, values that round-trip."""

import gradio as gr
import pytest

from app.forms import label_of
from app.model_form import ModelForm
from vla_engine.config.base import ConfigError
from vla_engine.config.model_config import SLOTS, ModelConfig
from vla_engine.registry import ACTION_HEADS


@pytest.fixture(scope="module")
def form():
    with gr.Blocks():
        f = ModelForm(ModelConfig().to_dict())
    return f


def _widget_values(form: ModelForm, updates: list) -> list:
    """What the widgets hold after ``updates`` (a skipped update keeps the widget's value)."""
    out = []
    for comp, upd in zip(form.inputs, updates):
        out.append(upd["value"] if isinstance(upd, dict) and "value" in upd else comp.value)
    return out


def test_every_head_shows_only_its_own_settings_and_round_trips(form):
    head_form = next(p for p in form.parts if p.sub == "head")
    tried = 0
    for name in ACTION_HEADS.names():
        try:
            cfg = ModelConfig().replace(action_head=name)
        except ConfigError:  # a head that needs other model settings too (e.g. its prompt format)
            continue
        tried += 1
        updates = form.updates(cfg.to_dict())
        values = form.values(_widget_values(form, updates))
        assert values["action_head"] == name
        # the values read back build the same config: no key of another head is left behind
        assert ModelConfig.from_dict(values).to_dict() == cfg.to_dict(), name
        cls = head_form.class_of[name]
        shown = {head_form.form.specs[k].name for k, u in zip(head_form.form.components,
                                                              head_form.updates(cfg.to_dict()["head"], name))
                 if u.get("visible")}
        assert shown == set(cls.field_names() if cls is not None else []), name
    assert tried >= 5


def test_switching_head_keeps_shared_settings_and_takes_new_defaults(form):
    head = next(p for p in form.parts if p.sub == "head")
    mlp = ModelConfig().replace(action_head="mlp").to_dict()
    widgets = _widget_values(form, form.updates(mlp))
    n_main = len(form.main.inputs)
    start = n_main + sum(len(p.inputs) for p in form.parts[: form.parts.index(head)])
    head_widgets = widgets[start: start + len(head.inputs)]
    kept = head.values(head_widgets, "diffusion")
    cfg = ModelConfig.from_dict({**mlp, "action_head": "diffusion", "head": kept})  # valid: no mlp-only key
    assert cfg.action_head == "diffusion"
    assert kept["num_inference_steps"] == ModelConfig().replace(action_head="diffusion").head.num_inference_steps


def test_parts_without_settings_are_hidden_and_every_slot_has_a_form(form):
    assert [p.sub for p in form.parts] == [sub for _, sub, _, _, _ in SLOTS]
    assert len(form.param_names) == len(form.inputs) == len(set(form.param_names))


def test_labels_are_words_and_the_field_name_is_in_the_help(form):
    assert label_of("llm_num_heads") == "LLM heads" and label_of("lora_r") == "LoRA r"
    box = form.component("llm_num_heads")
    assert box.label == "LLM heads" and "model.llm_num_heads" in box.info


def test_sensors_sub_form_is_off_for_a_camera_model_and_round_trips_a_driving_one(form):
    """model.sensors: off (None) for the camera-only VLA; on, the encoders and fusion read back as set."""
    assert form.values(_widget_values(form, form.updates(ModelConfig().to_dict())))["sensors"] is None
    driving = ModelConfig().to_dict()
    driving["sensors"] = {"lidar": "point-transformer", "radar": None, "imu": "imu", "fusion": "cross-modal",
                          "fusion_dim": 128, "prediction_horizon": 6}
    values = form.values(_widget_values(form, form.updates(driving)))
    cfg = ModelConfig.from_dict(values)
    assert cfg.sensors.sensors == ["lidar", "imu"] and cfg.sensors.fusion == "cross-modal"
    assert cfg.sensors.fusion_dim == 128 and cfg.sensors.prediction_horizon == 6


def test_training_curves_follow_what_the_run_logs():
    """BC shows loss and learning rate; RL its return, success, losses and entropy; DAgger and GAIL their own."""
    from app.curves import PANELS, panels_for

    titles = lambda metrics: [title for _, title, _ in panels_for(set(metrics))]  # noqa: E731
    assert titles(["train/loss", "train/lr"])[:2] == ["loss", "learning rate"]
    ppo = titles(["charts/episodic_return", "charts/success_rate", "losses/policy_loss", "charts/entropy"])
    assert ppo == ["episode return", "success rate", "policy loss", "policy entropy"]
    sac = panels_for({"charts/episodic_return", "losses/qf_loss", "losses/actor_loss", "losses/alpha"})
    assert [m for m, _, _ in sac] == ["charts/episodic_return", "losses/qf_loss", "losses/actor_loss", "losses/alpha"]
    assert titles(["dagger/expert_labels", "dagger/learner_success_rate", "train/loss"])[0] == "learner success rate"
    assert titles(["gail/disc_loss", "charts/episodic_return"])[1] == "discriminator loss"
    assert all(len(panels_for(m)) == PANELS for m in ({"train/loss"}, {"charts/episodic_return"}, set()))
