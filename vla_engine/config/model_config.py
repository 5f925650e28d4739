"""The model config: a dataclass describing a VLA (vision encoder, projector, language backbone, action
head, normalisation). Every choosable part is a registry name; sizes are plain numbers. The action head's
settings are its own config class, registered with it (``models/configuration_heads.py``), held in ``head``;
the heads' needs (``HeadCapabilities``) drive the model-level checks. Saved as ``config.json`` next to a
checkpoint's ``model.safetensors``; the flat head fields of earlier files move into ``head`` on load.

What the config does not hold: training decisions. Freezing (``training.freeze_vision`` /
``freeze_vlm``) and LoRA (``training.use_lora``, ``lora_r``, ...) are set by the training config and
applied to a built model (``model.freeze_vision()``, ``model.add_lora()``). Adapters a model already has
are its state, ``model.lora_spec`` (a ``LoRASpec``), written into a checkpoint's ``config.json`` under
``"adapters"`` beside the model fields. Files written before that split (checkpoints with ``freeze_*`` and
``lora_*`` model fields) still load: ``read_model_dict`` turns them into the new form with a one-line note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from .. import models  # noqa: F401  (registers the built-in parts; a light import: no torch)
from ..models.configuration_heads import FLAT_HEAD_KEYS, HeadCapabilities
from ..models.configuration_multisensor import multisensor_config
from ..models.configuration_projector import FLAT_PROJECTOR_KEYS
from ..models.configuration_vision import FLAT_VISION_KEYS
from ..models.parts import part_config_class
from ..registry import ACTION_HEADS, LANGUAGE_MODELS, PROJECTORS, VISION_ENCODERS
from .base import ConfigBase, ConfigError
from .migrate import moved_note, note

# The parts with their own settings: (the field naming the part, the field holding its settings, the registry,
# the part's kind in messages, the flat keys of an earlier layout -> the settings' field names)
SLOTS: tuple[tuple[str, str, Any, str, dict[str, str]], ...] = (
    ("vision_encoder", "vision", VISION_ENCODERS, "encoder", FLAT_VISION_KEYS),
    ("projector", "projection", PROJECTORS, "projector", FLAT_PROJECTOR_KEYS),
    ("action_head", "head", ACTION_HEADS, "head", FLAT_HEAD_KEYS),
)


@dataclass
class ModelConfig(ConfigBase):
    """A VLA model: ``vision -> projector -> LM tokens``, state and instruction tokens, an action head."""

    _section: ClassVar[str] = "model"
    type_name: ClassVar[str] = "vla"

    # vision
    vision_encoder: str = "cnn"  # a VISION_ENCODERS name: cnn resnet18/34/50 siglip clip dinov2 dinov2-reg dinosiglip smolvlm qwen2-vl
    # the chosen encoder's settings (its config class, models/configuration_vision.py), e.g. {dim: 64, pool: 6}
    vision: Any = None
    image_size: int = 96  # images are resized to this side before the encoder
    # "stretch": resized to the encoder's square size; "pad": aspect kept, padded black at the left / top (SmolVLA)
    image_resize: Literal["stretch", "pad"] = "stretch"
    # projector
    projector: str = "mlp"  # a PROJECTORS name: mlp fused-gelu-mlp identity attention perceiver
    # the chosen projector's settings (its config class, models/configuration_projector.py), e.g. {num_tokens: 16}
    projection: Any = None
    # language backbone
    llm: str = "qwen2"  # a LANGUAGE_MODELS name: qwen2 llama smolvlm qwen2-vl
    llm_pretrained: str | None = None  # local folder or hub id for from_pretrained (its own tokenizer)
    llm_hidden_size: int = 128  # LM width when built from scratch (pretrained: its own)
    llm_num_layers: int = 2  # LM decoder layers when built from scratch
    llm_num_heads: int = 4  # LM attention heads when built from scratch
    llm_intermediate_size: int = 256  # LM feed-forward width when built from scratch
    llm_layers: int = 0  # 0 = all; K = keep the first K decoder layers (SmolVLA does this with SmolVLM)
    max_text_tokens: int = 48  # instruction tokens kept (longer instructions are cut)
    # "plain": [instruction, observation tokens, learned action query]; "openvla": OpenVLA's prompt
    # [BOS, observation tokens, "In: What action should the robot take to {task}?\nOut:", empty token] with
    # the actions predicted from its last token (no action query); "smolvla": SmolVLA's prefix [image tokens and
    # instruction (+ "\n") scaled by sqrt(hidden), bidirectional; the state token after them], read layer by layer
    # by the smolvla-expert head
    prompt_format: Literal["plain", "openvla", "smolvla"] = "plain"
    # action head: a registry name and its settings (the head's own config class, ``models/configuration_heads.py``)
    action_head: str = "mlp"
    # the chosen head's settings, e.g. {hidden_dim: 256, num_inference_steps: 10}; absent keys take its defaults
    head: Any = None
    temporal_ensemble_coeff: float | None = None  # ACT temporal ensembling at inference (ACT: 0.01; < 0 weighs newer chunks more); None = off
    action_dim: int = 2  # values per action (the task's action size)
    state_dim: int = 0  # 0 = no state input
    chunk_size: int = 1  # actions predicted at once (an action chunk)
    n_action_steps: int = 1  # actions executed from each predicted chunk (<= chunk_size)
    n_obs_steps: int = 1  # observation steps the model reads (the latest and n_obs_steps - 1 before it)
    action_loss: Literal["mse", "l1", "smooth_l1"] = "mse"  # training loss of the regression heads (mlp, transformer, diffusion)
    dropout: float = 0.0  # dropout in the parts that have it (LM from scratch, towers, heads)
    random_shift: int = 4  # training-time image augmentation: random shifts of up to this many pixels (0 = off)
    # inputs and normalisation
    image_keys: list[str] = field(default_factory=lambda: ["observation.images.front"])
    normalization: Literal["mean_std", "min_max", "none"] = "mean_std"  # how state and actions are normalised
    # other sensors (lidar, radar, IMU) with their encoders and fusion (models/configuration_multisensor.py);
    # set: a MultiSensorVLA (driving), null: a camera-only VLAModel
    sensors: Any = None

    def __post_init__(self) -> None:
        for part, sub, registry, kind, _ in SLOTS:
            setattr(self, sub, self._part_config(part, sub, registry, kind))
        self.sensors = multisensor_config(self.sensors)
        super().__post_init__()

    def _part_config(self, part: str, sub: str, registry: Any, kind: str) -> Any:
        """``sub`` (e.g. ``head``) as the chosen part's config: a mapping of its fields (None = its defaults)."""
        name, value = getattr(self, part), getattr(self, sub)
        if not isinstance(name, str) or name not in registry:
            self._check_choice(part, registry)
        cls = part_config_class(registry, name)
        if cls is None:  # a part registered without settings
            if value:
                raise ConfigError(f"model.{sub}: the {name} {kind} has no settings; leave model.{sub} out")
            return None
        if isinstance(value, cls):
            return value
        if isinstance(value, ConfigBase):
            value = value.to_dict()
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"model.{sub}: expected a mapping of the {name} {kind}'s fields, got {value!r}")
        data = dict(value or {})
        data.pop("type", None)
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"model.{sub}: {', '.join(repr(k) for k in unknown)} is not a setting of the "
                              f"{name} {kind}; its fields: {', '.join(cls.field_names())}")
        return cls.from_dict(data)

    def pretrained_refs(self) -> dict[str, str]:
        """Every pretrained folder / hub id the config names, by its field path (``{"vision.pretrained": ...,
        "llm_pretrained": ...}``): what a shared demo must check lies in its own folders."""
        out = {"llm_pretrained": self.llm_pretrained} if self.llm_pretrained else {}
        for _, sub, _, _, _ in SLOTS:
            settings = getattr(self, sub)
            for k, v in (settings.to_dict() if isinstance(settings, ConfigBase) else {}).items():
                if k.endswith("pretrained") and v:
                    out[f"{sub}.{k}"] = v
        return out

    @property
    def head_capabilities(self) -> HeadCapabilities:
        """What the chosen action head declares it needs (``models/configuration_heads.py``)."""
        return head_capabilities(self.action_head)

    @classmethod
    def from_dict(cls, data: dict | None, prefix: str | None = None, *, where: str = "") -> "ModelConfig":
        """The config from its fields. Keys an older version wrote into a model config (``freeze_*``,
        ``lora_*``) and a checkpoint's ``adapters`` record are not model fields: they are left out with a
        one-line note (use ``read_model_dict`` to keep the adapters); the flat head fields of an earlier layout
        (``head_hidden_dim``, ``num_diffusion_steps``, ...) move into ``head``. ``where`` names the file in notes."""
        fields, _ = _split_legacy(data, where)
        return super().from_dict(_move_flat_keys(fields, where), prefix)

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with ``changes``. A new part (e.g. ``action_head``) without its settings (``head``) keeps the
        settings the new part shares with the old one (e.g. ``hidden_dim``) and takes its defaults for the rest.
        A part's setting given by its flat name (``num_inference_steps``, as `vla eval --set` gives it) goes into
        the part's settings."""
        for part, sub, registry, kind, flat_keys in SLOTS:
            name = changes.get(part, getattr(self, part))
            cls = part_config_class(registry, name) if isinstance(name, str) and name in registry else None
            own = cls.field_names() if cls is not None else []
            current = getattr(self, sub)
            current = current.to_dict() if isinstance(current, ConfigBase) else {}
            if name != getattr(self, part) and sub not in changes:
                changes[sub] = {k: v for k, v in current.items() if k in own}
            flat = {k: changes.pop(k) for k in list(changes) if k in flat_keys and k not in self.field_names()}
            if flat:
                for key in flat:
                    if flat_keys[key] not in own:
                        raise ConfigError(f"model.{key}: not a setting of the {name} {kind}; its settings "
                                          f"(model.{sub}): {', '.join(own) or 'none'}")
                base = changes.get(sub, current)
                base = base.to_dict() if isinstance(base, ConfigBase) else dict(base or {})
                changes[sub] = {**base, **{flat_keys[k]: v for k, v in flat.items()}}
        return super().replace(**changes)

    def validate(self) -> None:
        self._check_choice("vision_encoder", VISION_ENCODERS)
        self._check_choice("projector", PROJECTORS)
        self._check_choice("llm", LANGUAGE_MODELS)
        self._check_choice("action_head", ACTION_HEADS)
        self._check_range("image_size", 16, 1024)
        self._check_range("llm_hidden_size", 8)
        self._check_range("llm_num_layers", 1)
        self._check_range("llm_num_heads", 1)
        self._check_range("llm_intermediate_size", 1)
        self._check_range("llm_layers", 0, 1024)
        self._check_range("max_text_tokens", 1, 4096)
        if self.temporal_ensemble_coeff is not None:
            self._check_range("temporal_ensemble_coeff", -10.0, 10.0)
        self._check_range("action_dim", 1)
        needs = self.head_capabilities.prompt_format
        if needs is not None and self.prompt_format != needs:
            self._fail("prompt_format", f"does not suit action_head {self.action_head!r}, which reads prompt_format: "
                                        f"{needs} only; set prompt_format: {needs}")
        if needs is None and self.prompt_format in _head_prompt_formats():
            self._fail("prompt_format", f"is read by the {_head_prompt_formats()[self.prompt_format]} head only, not "
                                        f"{self.action_head!r}; set action_head: "
                                        f"{_head_prompt_formats()[self.prompt_format]} or another prompt_format")
        for sub in ("vision", "projection", "head"):
            if isinstance(getattr(self, sub), ConfigBase):
                getattr(self, sub).check_model(self)
        self._check_range("state_dim", 0)
        self._check_range("chunk_size", 1)
        self._check_range("n_action_steps", 1)
        if self.n_action_steps > self.chunk_size:
            self._fail("n_action_steps", f"is more than chunk_size ({self.chunk_size}): a chunk holds no more actions "
                                         f"to execute; set it between 1 and {self.chunk_size}")
        self._check_range("n_obs_steps", 1)
        if self.prompt_format == "smolvla" and self.n_obs_steps != 1:
            self._fail("n_obs_steps", "must be 1 with prompt_format: smolvla (SmolVLA reads the latest observation)")
        self._check_range("dropout", 0.0, 1.0)
        self._check_range("random_shift", 0, 32)
        if self.llm_pretrained is None:
            if self.llm_hidden_size % self.llm_num_heads:
                self._fail("llm_hidden_size", f"must be divisible by llm_num_heads ({self.llm_num_heads})")
            if (self.llm_hidden_size // self.llm_num_heads) % 2:
                self._fail("llm_hidden_size", f"/ llm_num_heads ({self.llm_num_heads}) must be even (rotary "
                                              f"position embedding); e.g. 128 with 4 heads")
        if not self.image_keys:
            self._fail("image_keys", "is empty; name at least one camera, e.g. [observation.images.front]")
        for i, k in enumerate(self.image_keys):
            if not k.strip():
                self._fail("image_keys", f"has an empty name at position {i}")
        if len(set(self.image_keys)) != len(self.image_keys):
            self._fail("image_keys", "names a camera twice; list each image key once")


def head_capabilities(name: str) -> HeadCapabilities:
    """What action head ``name`` declares it needs (its config class's ``capabilities``; none declared: the
    defaults, a head reading the pooled feature)."""
    cls = part_config_class(ACTION_HEADS, name)
    return getattr(cls, "capabilities", HeadCapabilities()) if cls is not None else HeadCapabilities()


def _head_prompt_formats() -> dict[str, str]:
    """prompt format -> the head that needs it (formats read by one head only, e.g. smolvla)."""
    return {caps.prompt_format: name for name in ACTION_HEADS
            if (caps := head_capabilities(name)).prompt_format is not None}


def _move_flat_keys(fields: dict[str, Any], where: str) -> dict[str, Any]:
    """``fields`` with the flat part keys of an earlier layout (``head_hidden_dim``, ``vision_dim``, ...) moved into
    the chosen parts' settings (``head``, ``vision``) where the part has them; the others are dropped (they were
    ignored). One note for the whole file."""
    fields = dict(fields)
    moved, dropped = [], []
    for part, sub, registry, kind, flat_keys in SLOTS:
        flat = [k for k in fields if k in flat_keys]
        if not flat:
            continue
        name = fields.get(part, ModelConfig.__dataclass_fields__[part].default)
        cls = part_config_class(registry, name) if isinstance(name, str) and name in registry else None
        own = set(cls.field_names()) if cls is not None else set()
        settings = fields.get(sub)
        settings = settings.to_dict() if isinstance(settings, ConfigBase) else dict(settings or {})
        for key in flat:
            value, new = fields.pop(key), flat_keys[key]
            if new in own:
                settings[new] = value  # the flat key came later (an override on top of a preset's settings)
                moved.append(f"{key} -> {sub}.{new}")
            else:
                dropped.append(key)
        fields[sub] = settings
    if moved or dropped:
        src = f" in {where}" if where else ""
        msg = f"config: flat part fields{src} moved into the parts' settings"
        if moved:
            msg += f" ({', '.join(moved)})"
        if dropped:
            msg += f"; dropped {', '.join(dropped)} (not settings of the chosen parts, so they were ignored)"
        note(msg + "; save the file again to update it")
    return fields


# ------------------------------------------------------------------------------------------------
# Adapters: model state recorded beside the model fields of a checkpoint
# ------------------------------------------------------------------------------------------------
LORA_SCOPES: tuple[str, ...] = ("lm", "policy", "all")
DEFAULT_LORA_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class LoRASpec:
    """The LoRA adapters a model has (``model.lora_spec``; None without adapters): rank ``r``, scaling
    ``alpha / r``, ``dropout``, the language model's ``target_modules`` and the ``scope`` ("lm": the language
    model only; "policy": the projector, FiLM, state projection and action head as well; "all": the vision
    encoder too). A checkpoint's config.json holds it as ``"adapters": {"type": "lora", ...}``, so
    ``from_pretrained`` rebuilds the same peft structure before it loads the weights."""

    r: int
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_LORA_TARGETS
    scope: str = "lm"

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(str(t) for t in self.target_modules))
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"adapters.r: {self.r!r} is out of range; must be an integer >= 1 (e.g. 8 or 16)")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ConfigError(f"adapters.alpha: {self.alpha!r} is out of range; must be > 0 (e.g. 2 * r)")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"adapters.dropout: {self.dropout!r} is out of range; must be in [0, 1) (e.g. 0.05)")
        if not self.target_modules or any(not t.strip() for t in self.target_modules):
            raise ConfigError(f"adapters.target_modules: {list(self.target_modules)!r} is empty or has an empty "
                              f"name; name the LM's linear layers, e.g. [q_proj, k_proj, v_proj, o_proj]")
        if self.scope not in LORA_SCOPES:
            raise ConfigError(f"adapters.scope: {self.scope!r} is not allowed; choose one of: {', '.join(LORA_SCOPES)}")

    def to_dict(self) -> dict[str, Any]:
        return {"type": "lora", "r": self.r, "alpha": self.alpha, "dropout": self.dropout,
                "target_modules": list(self.target_modules), "scope": self.scope}

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> "LoRASpec":
        src = f" in {where}" if where else ""
        if not isinstance(data, dict):
            raise ConfigError(f"adapters{src}: expected a mapping (type, r, alpha, dropout, target_modules, scope), "
                              f"got {data!r}")
        data = dict(data)
        kind = data.pop("type", "lora")
        if kind != "lora":
            raise ConfigError(f"adapters.type{src}: {kind!r} is not a known adapter type; this version reads 'lora'")
        names = ("r", "alpha", "dropout", "target_modules", "scope")
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"adapters{src}: unknown field '{unknown[0]}'; allowed fields: {', '.join(names)}")
        targets = data.get("target_modules", DEFAULT_LORA_TARGETS)
        if not isinstance(targets, (list, tuple)):
            raise ConfigError(f"adapters.target_modules{src}: {targets!r} has the wrong type; expected a list of names")
        if "r" not in data:
            raise ConfigError(f"adapters{src}: no 'r' (the adapter rank); the record is incomplete")
        r = data["r"]
        return cls(r=int(r) if isinstance(r, float) and r.is_integer() else r, alpha=data.get("alpha", 32.0),
                   dropout=data.get("dropout", 0.0), target_modules=tuple(targets), scope=data.get("scope", "lm"))


# keys an earlier version wrote into a model config: freezing went to the training config, the LoRA fields
# became the adapter record (``lora_r`` 0 meant no adapters)
_LEGACY_FREEZE = ("freeze_vision", "freeze_vlm")
_LEGACY_LORA = {"lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "lora_target_modules": "target_modules",
                "lora_scope": "scope"}


def _split_legacy(data: dict | None, where: str) -> tuple[dict[str, Any], LoRASpec | None]:
    """``data`` without the keys that are not model fields, and the adapter record they describe."""
    fields = dict(data or {})
    record = fields.pop("adapters", None)
    for key in _LEGACY_FREEZE:
        if key in fields:
            fields.pop(key)
            note(moved_note(f"model.{key}", None, where) + f"; freezing is set by training.{key}")
    if "use_gradient_checkpointing" in fields:
        fields.pop("use_gradient_checkpointing")
        note(moved_note("model.use_gradient_checkpointing", None, where)
             + "; training.gradient_checkpointing sets it for a run")
    old = {new: fields.pop(key) for key, new in _LEGACY_LORA.items() if key in fields}
    if record is not None:
        spec = LoRASpec.from_dict(record, where)
        if old:
            note(moved_note("model.lora_*", None, where) + "; the 'adapters' record says which adapters there are")
        return fields, spec
    if old.get("r"):
        note(moved_note("model.lora_*", "adapters", where))
        return fields, LoRASpec.from_dict(old, where)
    if old:
        note(moved_note("model.lora_*", None, where) + "; LoRA is asked for by training.use_lora")
    return fields, None


def read_model_dict(data: dict | None, where: str = "") -> tuple[ModelConfig, LoRASpec | None]:
    """A checkpoint's ``config.json`` (or any model-config mapping) -> ``(ModelConfig, adapters or None)``.

    Reads the ``adapters`` record, and the ``lora_*`` / ``freeze_*`` model fields of files written by earlier
    versions (one note each; ``lora_r`` 0 is no adapters). ``where`` names the file in notes and errors."""
    fields, spec = _split_legacy(data, where)
    return ModelConfig.from_dict(fields, where=where), spec


# The ModelConfig fields that only change how a trained model acts, not what it learned: they can be set on a
# checkpoint at evaluation (VLAModel.configure_inference, `vla eval --set model.n_action_steps=4`). The head's
# sampling settings (``model.head.num_inference_steps``, ``model.head.use_ddim``) are given by their name.
INFERENCE_FIELDS: tuple[str, ...] = ("n_action_steps", "temporal_ensemble_coeff", "num_inference_steps", "use_ddim")
HEAD_INFERENCE_FIELDS: tuple[str, ...] = ("num_inference_steps", "use_ddim")  # of model.head (sampling heads)


def parse_inference_overrides(overrides: list[str]) -> dict:
    """``["model.n_action_steps=4", "model.head.num_inference_steps=8"]`` -> ``{"n_action_steps": 4,
    "num_inference_steps": 8}`` (``VLAModel.configure_inference`` keywords).

    Values are YAML scalars (``null`` turns ensembling off); the ``model.`` prefix is optional, and the head's
    sampling settings are read with or without ``head.`` (the flat form of an earlier layout)."""
    import yaml

    allowed = [f for f in INFERENCE_FIELDS if f not in HEAD_INFERENCE_FIELDS] + \
        [f"head.{f}" for f in HEAD_INFERENCE_FIELDS]
    out: dict = {}
    for ov in overrides:
        key, sep, raw = ov.partition("=")
        name = key.strip().removeprefix("model.")
        if name.startswith("head.") and name[5:] in HEAD_INFERENCE_FIELDS:
            name = name[5:]
        if not sep or name not in INFERENCE_FIELDS:
            raise ConfigError(f"override {ov!r}: a checkpoint's inference settings are set as model.FIELD=VALUE "
                              f"with FIELD one of {', '.join(allowed)}; the rest is fixed by training")
        out[name] = yaml.safe_load(raw) if raw.strip() else None
    return out
