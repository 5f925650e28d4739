"""Each action head owns its settings (a config class registered with it, ``model.head``) and declares what it
needs (``HeadCapabilities``): validation per head, the flat layout of earlier files, a head added from outside
the package, and capabilities that drive the model."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from vla_engine.config.base import ConfigError
from vla_engine.config.model_config import ModelConfig, head_capabilities, parse_inference_overrides
from vla_engine.config.presets import load_preset
from vla_engine.models import VLAModel, create_vla_model
from vla_engine.models.configuration_heads import FLAT_HEAD_KEYS, HeadCapabilities, HeadConfig
from vla_engine.models.heads import ActionHead, masked_action_loss
from vla_engine.models.parts import part_config_class
from vla_engine.registry import ACTION_HEADS

TINY = dict(image_size=32, vision_dim=16, llm_hidden_size=32, llm_num_heads=2, llm_intermediate_size=64,
            vision_num_heads=2, vision_patch_size=8, max_text_tokens=16, random_shift=0)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_batch(b: int = 2, state_dim: int = 2, action_dim: int = 2, chunk: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"observation.images.front": torch.rand(b, 3, 32, 32, generator=g),
            "observation.state": torch.randn(b, state_dim, generator=g), "task": ["reach"] * b,
            "action": torch.randn(b, chunk, action_dim, generator=g),
            "action_is_pad": torch.zeros(b, chunk, dtype=torch.bool)}


# -- each head's settings validate themselves ------------------------------------------------------
BAD = [
    ("mlp", {"hidden_dim": 0}, "model.head.hidden_dim: 0 is out of range"),
    ("mlp", {"chunk_loss_decay": 0.0}, "model.head.chunk_loss_decay: 0.0 is out of range"),
    ("gaussian", {"min_std": 0.5, "max_std": 0.1}, "model.head.max_std: 0.1"),
    ("diffusion", {"num_train_timesteps": 20, "num_inference_steps": 50}, "model.head.num_inference_steps: 50"),
    ("diffusion", {"prediction_type": "v"}, "model.head.prediction_type: 'v' is not allowed"),
    ("diffusion", {"noise_samples": 0}, "model.head.noise_samples: 0 is out of range"),
    ("transformer", {"hidden_dim": 30, "num_heads": 4}, "model.head.hidden_dim: 30 must be a multiple of num_heads"),
    ("flow", {"num_inference_steps": 0}, "model.head.num_inference_steps: 0 is out of range"),
    ("tokens", {"bins": 2, "token_ids": "vocab_tail"}, "model.head.bins: 2 is below 3"),
    ("smolvla-expert", {"min_period": 1.0, "max_period": 0.5}, "model.head.max_period: 0.5 must be above min_period"),
]


@pytest.mark.parametrize("head,settings,message", BAD, ids=[f"{h}-{next(iter(s))}" for h, s, _ in BAD])
def test_each_head_config_validates_its_own_fields(head, settings, message):
    cls = part_config_class(ACTION_HEADS, head)
    with pytest.raises(ConfigError, match=message) as e:
        cls.from_dict(settings)
    assert "\n" not in str(e.value)
    extra = {"prompt_format": "smolvla"} if head == "smolvla-expert" else {}
    with pytest.raises(ConfigError, match=message):  # the same check through the model config
        ModelConfig(action_head=head, head=settings, **extra)


def test_every_head_registers_a_config_whose_fields_all_have_help():
    for name in ACTION_HEADS:
        cls = part_config_class(ACTION_HEADS, name)
        assert issubclass(cls, HeadConfig) and isinstance(cls.capabilities, HeadCapabilities)
        assert all(cls.field_help().values()), (name, [k for k, v in cls.field_help().items() if not v])
        cls()  # the defaults are valid


VISION_BAD = [
    ("cnn", {"pool": 65}, "model.vision.pool: 65 is out of range"),
    ("siglip", {"dim": 30, "num_heads": 4}, "model.vision.dim: 30 must be divisible by num_heads"),
    ("siglip", {"patch_size": 7}, r"model.vision.patch_size: 7 does not divide model.image_size \(96\)"),
    ("dinosiglip", {"feature_layer": 2}, "model.vision.feature_layer: 2 is out of range"),
    ("smolvlm", {"num_layers": 0}, "model.vision.num_layers: 0 is out of range"),
    ("resnet18", {"pool": 6}, "model.vision: 'pool' is not a setting of the resnet18 encoder; its fields: pretrained"),
]


@pytest.mark.parametrize("encoder,settings,message", VISION_BAD, ids=[f"{e}-{next(iter(s))}" for e, s, _ in VISION_BAD])
def test_each_encoder_config_validates_its_own_fields(encoder, settings, message):
    with pytest.raises(ConfigError, match=message) as e:
        ModelConfig(vision_encoder=encoder, vision=settings)
    assert "\n" not in str(e.value)


def test_every_encoder_registers_a_config_whose_fields_all_have_help():
    from vla_engine.registry import VISION_ENCODERS

    for name in VISION_ENCODERS:
        cls = part_config_class(VISION_ENCODERS, name)
        assert all(cls.field_help().values()), (name, [k for k, v in cls.field_help().items() if not v])
    # encoders that share knobs share a class
    assert part_config_class(VISION_ENCODERS, "siglip") is part_config_class(VISION_ENCODERS, "dinov2")
    switched = ModelConfig(vision={"dim": 32, "pool": 4, "film": True}).replace(vision_encoder="siglip")
    assert switched.vision.dim == 32 and not hasattr(switched.vision, "pool")


def test_model_level_checks_use_the_heads_declared_needs():
    with pytest.raises(ConfigError, match="model.prompt_format: 'plain' does not suit action_head 'smolvla-expert'"):
        ModelConfig(action_head="smolvla-expert")
    with pytest.raises(ConfigError, match="model.prompt_format: 'smolvla' is read by the smolvla-expert head only"):
        ModelConfig(action_head="flow", prompt_format="smolvla")
    with pytest.raises(ConfigError, match="model.head.max_action_dim: 2 is below model.action_dim"):
        ModelConfig(action_head="smolvla-expert", prompt_format="smolvla", action_dim=3, head={"max_action_dim": 2})


def test_a_key_the_chosen_head_has_not_is_one_line_naming_its_fields():
    with pytest.raises(ConfigError, match=r"model.head: 'use_ddim' is not a setting of the flow head; its fields: "
                                          r"hidden_dim, num_layers, num_heads, num_inference_steps"):
        load_preset("il-bc", ["model.action_head=flow", "model.head.use_ddim=false"])


def test_switching_heads_keeps_the_shared_settings_and_sets_new_ones():
    cfg = load_preset("il-bc", ["model.action_head=diffusion", "model.head.num_inference_steps=4",
                                "model.head.hidden_dim=64"]).model
    assert (cfg.head.num_inference_steps, cfg.head.hidden_dim, cfg.head.use_ddim) == (4, 64, True)
    flow = cfg.replace(action_head="flow")
    assert type(flow.head).__name__ == "FlowHeadConfig"
    assert (flow.head.hidden_dim, flow.head.num_inference_steps) == (64, 4)  # shared; use_ddim is not flow's
    back = ModelConfig.from_dict(json.loads(json.dumps(flow.to_dict())))
    assert back == flow


# -- files written with the flat layout of an earlier version --------------------------------------
def _flat_form(data: dict) -> dict:
    """A config.json as the earlier version wrote it: every head field flat (the chosen head's values, the
    other heads' defaults), no ``head``."""
    reverse = {new: old for old, new in FLAT_HEAD_KEYS.items()}
    old = {k: v for k, v in data.items() if k not in ("head", "vision")}
    old.update(vision_pretrained=None, vision2_pretrained=None, vision_num_layers=2, vision_num_heads=4,
               vision_patch_size=16, vision_feature_layer=0)
    old.update({f"vision_{k}" if k != "film" else k: v for k, v in data["vision"].items()})
    old.update(head_hidden_dim=256, head_num_layers=2, head_num_heads=4, min_std=0.01, max_std=1.0,
               num_diffusion_steps=100, num_inference_steps=10, use_ddim=True, action_bins=256,
               action_token_ids="append", chunk_loss_decay=1.0)
    for key, value in data["head"].items():
        old[reverse[key]] = value
    return old


def test_a_flat_checkpoint_loads_the_same_model_strictly_with_one_note(tmp_path, caplog):
    torch.manual_seed(0)
    model = create_vla_model("tiny", action_head="diffusion", action_dim=2, state_dim=2, chunk_size=2,
                             n_action_steps=2, head={"hidden_dim": 32, "num_layers": 1, "num_train_timesteps": 20,
                                                     "num_inference_steps": 5}, **TINY).eval()
    model.save_pretrained(tmp_path / "m")
    cfg_file = tmp_path / "m" / "config.json"
    data = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps(_flat_form(data)))
    with caplog.at_level(logging.WARNING, logger="vla_engine.config"):
        loaded = VLAModel.from_pretrained(tmp_path / "m")  # load_weights is strict: every weight, no extra one
    notes = [r.message for r in caplog.records if "flat part fields" in r.message and str(cfg_file) in r.message]
    assert len(notes) == 1 and "num_diffusion_steps -> head.num_train_timesteps" in notes[0]
    assert "min_std" in notes[0] and "vision_dim -> vision.dim" in notes[0]
    assert loaded.config == model.config
    obs = {k: v for k, v in make_batch().items() if not k.startswith("action")}
    torch.manual_seed(3)
    want = model.predict_action_chunk(obs)
    torch.manual_seed(3)
    assert torch.equal(loaded.predict_action_chunk(obs), want)


def test_flat_keys_in_overrides_and_the_old_inference_keys_still_work():
    model = create_vla_model("tiny", action_head="flow", action_dim=2, state_dim=2, chunk_size=2,
                             head_hidden_dim=32, num_inference_steps=3, **TINY)
    assert (model.config.head.hidden_dim, model.action_head.num_steps) == (32, 3)
    old = parse_inference_overrides(["model.num_inference_steps=4", "model.n_action_steps=2"])
    new = parse_inference_overrides(["model.head.num_inference_steps=4", "n_action_steps=2"])
    assert old == new == {"num_inference_steps": 4, "n_action_steps": 2}
    with pytest.raises(ConfigError, match="head.num_inference_steps"):
        parse_inference_overrides(["model.head.hidden_dim=8"])


# -- a head added from outside the package: a modeling class, a config class, one registry entry ----
@dataclasses.dataclass
class ScaledHeadConfig(HeadConfig):
    """A test head: a linear map whose output is scaled, sampled with a number of steps."""

    capabilities: ClassVar[HeadCapabilities] = HeadCapabilities(inputs="tokens",
                                                                sampling_settings=("num_inference_steps",))

    scale: float = 1.0  # output scale
    num_inference_steps: int = 2  # sampling steps (recorded only)

    def validate(self) -> None:
        self._check_range("scale", 0.0, lo_open=True)
        self._check_range("num_inference_steps", 1)


class ScaledHead(ActionHead):
    config_class = ScaledHeadConfig
    capabilities = ScaledHeadConfig.capabilities

    def __init__(self, action_dim: int, chunk_size: int, scale: float, steps: int, input_dim: int | None = None):
        self.scale, self.steps, self.context_seen = scale, steps, None
        super().__init__(action_dim, chunk_size, input_dim)

    @classmethod
    def from_config(cls, cfg: Any, input_dim: int | None = None) -> "ScaledHead":
        return cls(cfg.action_dim, cfg.chunk_size, cfg.head.scale, cfg.head.num_inference_steps, input_dim)

    def head_settings(self) -> dict[str, Any]:
        return {"scale": self.scale, "num_inference_steps": self.steps}

    def _build(self, input_dim: int) -> None:
        self.out = nn.Linear(input_dim, self.chunk_size * self.action_dim)

    def predict(self, features, context=None, context_mask=None):  # noqa: ANN001
        self.context_seen = None if context is None else tuple(context.shape)
        return (self.out(features) * self.scale).view(-1, self.chunk_size, self.action_dim)  # (B, C, A)

    def compute_loss(self, features, actions, action_is_pad=None, context=None, context_mask=None):  # noqa: ANN001
        loss = masked_action_loss(self.predict(features, context, context_mask), actions, action_is_pad)
        return loss, {}

    def configure_sampling(self, num_inference_steps: int | None = None) -> None:
        self.steps = int(num_inference_steps)


@pytest.fixture
def scaled_head(monkeypatch):
    """ScaledHead registered as "test-scaled" for one test (the registry is left as it was)."""
    monkeypatch.setitem(ACTION_HEADS._entries, "test-scaled", ScaledHead)
    monkeypatch.setitem(ACTION_HEADS._meta, "test-scaled", {"config": ScaledHeadConfig})
    monkeypatch.setattr(ScaledHead, "name", "test-scaled", raising=False)
    return "test-scaled"


def test_a_new_head_builds_trains_and_round_trips_without_touching_other_files(tmp_path, scaled_head):
    torch.manual_seed(0)
    model = create_vla_model("tiny", action_head=scaled_head, action_dim=2, state_dim=2, chunk_size=2,
                             n_action_steps=2, head={"scale": 0.5}, **TINY)
    assert isinstance(model.action_head, ScaledHead) and model.action_head.scale == 0.5
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = make_batch()
    loss, _ = model(batch)
    loss.backward()
    opt.step()
    model.eval().save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["action_head"] == scaled_head and saved["head"] == {"scale": 0.5, "num_inference_steps": 2}
    loaded = VLAModel.from_pretrained(tmp_path / "m")
    obs = {k: v for k, v in batch.items() if not k.startswith("action")}
    assert torch.equal(loaded.predict_action_chunk(obs), model.predict_action_chunk(obs))
    assert head_capabilities(scaled_head).inputs == "tokens"
    with pytest.raises(ConfigError, match="model.head.scale: 0.0 is out of range"):
        ModelConfig(action_head=scaled_head, head={"scale": 0.0})


def test_capabilities_drive_the_model(scaled_head):
    model = create_vla_model("tiny", action_head=scaled_head, action_dim=2, state_dim=2, chunk_size=2,
                             n_action_steps=2, **TINY).eval()
    obs = {k: v for k, v in make_batch().items() if not k.startswith("action")}
    model.predict_action_chunk(obs)
    assert model.action_head.context_seen is not None  # inputs "tokens": the LM's hidden sequence is passed
    model.configure_inference(num_inference_steps=7)  # a declared sampling setting reaches the head and the config
    assert model.action_head.steps == 7 and model.config.head.num_inference_steps == 7
    with pytest.raises(ValueError, match="use_ddim applies to sampling heads"):
        model.configure_inference(use_ddim=False)
    mlp = create_vla_model("tiny", action_head="mlp", action_dim=2, state_dim=2, **TINY).eval()
    with pytest.raises(ValueError, match="num_inference_steps applies to sampling heads"):
        mlp.configure_inference(num_inference_steps=3)  # the mlp head declares no sampling settings


def test_vla_describe_lists_the_heads_fields_with_help(capsys):
    from vla_engine.cli import main

    assert main(["describe", "il-bc", "--set", "model.action_head=diffusion",
                 "--set", "model.head.num_inference_steps=4"]) == 0
    out = capsys.readouterr().out
    assert all(ModelConfig.field_help().values()), [k for k, v in ModelConfig.field_help().items() if not v]
    assert "model.head (DiffusionHeadConfig)" in out and "model.vision.film = true  (default false)" in out
    assert "model.head.num_inference_steps = 4  (default 10)\n      sampling steps at inference" in out


def test_an_eval_inference_setting_by_its_flat_name_reaches_the_head(tmp_path):
    from vla_engine.eval.job_config import check_inference

    cfg = ModelConfig(action_head="diffusion", head={"num_train_timesteps": 20})
    assert cfg.replace(num_inference_steps=4).head.num_inference_steps == 4
    with pytest.raises(ConfigError, match="model.head.num_inference_steps: 50 is out of range"):
        cfg.replace(num_inference_steps=50)
    with pytest.raises(ConfigError, match="model.use_ddim: not a setting of the mlp head"):
        ModelConfig().replace(use_ddim=False)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    assert check_inference(tmp_path, {"num_inference_steps": 4}) == {"num_inference_steps": 4}


def test_projector_settings_validate_and_follow_the_chosen_projector():
    from vla_engine.registry import PROJECTORS

    for name in PROJECTORS:
        cls = part_config_class(PROJECTORS, name)
        assert all(cls.field_help().values()), name
    assert part_config_class(PROJECTORS, "attention") is part_config_class(PROJECTORS, "perceiver")
    with pytest.raises(ConfigError, match="model.projection.num_tokens: 0 is out of range"):
        ModelConfig(projector="perceiver", projection={"num_tokens": 0})
    with pytest.raises(ConfigError, match="model.projection: 'num_tokens' is not a setting of the mlp projector"):
        ModelConfig(projector="mlp", projection={"num_tokens": 8})
    old = ModelConfig.from_dict({"projector": "perceiver", "projector_num_tokens": 8, "projector_num_heads": 2})
    assert (old.projection.num_tokens, old.projection.num_heads) == (8, 2)
    assert ModelConfig.from_dict({"projector_num_tokens": 8}).projection.to_dict() == {}  # ignored by mlp


def test_pretrained_refs_name_every_folder_the_config_loads():
    cfg = ModelConfig(vision_encoder="dinosiglip", vision={"pretrained": "/d/dino", "siglip_pretrained": "/d/sig"},
                      llm="llama", llm_pretrained="/d/lm")
    assert cfg.pretrained_refs() == {"llm_pretrained": "/d/lm", "vision.pretrained": "/d/dino",
                                     "vision.siglip_pretrained": "/d/sig"}
    assert ModelConfig().pretrained_refs() == {}
