"""The model config: one flat dataclass describing a VLA (vision encoder, projector, language
backbone, action head, normalisation). Every choosable part is a registry name; sizes are plain
numbers. Saved as ``config.json`` next to a checkpoint's ``model.safetensors``.

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
from ..registry import ACTION_HEADS, LANGUAGE_MODELS, PROJECTORS, VISION_ENCODERS
from .base import ConfigBase, ConfigError
from .migrate import moved_note, note


# the transformers vision towers (vision_feature_layer applies to them)
_FEATURE_LAYER_ENCODERS = ("siglip", "clip", "dinov2", "dinov2-reg", "dinosiglip")


@dataclass
class ModelConfig(ConfigBase):
    """A VLA model: ``vision -> projector -> LM tokens``, state and instruction tokens, an action head."""

    _section: ClassVar[str] = "model"
    type_name: ClassVar[str] = "vla"

    # vision
    vision_encoder: str = "cnn"  # a VISION_ENCODERS name: cnn resnet18/34/50 siglip clip dinov2 dinov2-reg dinosiglip smolvlm qwen2-vl
    vision_pretrained: str | None = None  # local folder / hub id (siglip, clip, dinov2, VLMs) or weights file (resnet)
    vision2_pretrained: str | None = None  # dinosiglip: the SigLIP folder / hub id (vision_pretrained is DINOv2's)
    image_size: int = 96  # images are resized to this side before the encoder
    # "stretch": resized to the encoder's square size; "pad": aspect kept, padded black at the left / top (SmolVLA)
    image_resize: Literal["stretch", "pad"] = "stretch"
    vision_dim: int = 64  # cnn channels / siglip hidden size (resnet18 is 512, pretrained: their own)
    vision_pool: int = 6  # cnn: pool the feature map to at most pool x pool tokens (0 = keep the full map)
    vision_num_layers: int = 2  # siglip layers when built from scratch
    vision_num_heads: int = 4  # siglip heads when built from scratch
    vision_patch_size: int = 16  # siglip patch size when built from scratch
    # transformers towers: 0 = their final output; -k = the output of the k-th block from the end, before the
    # final norm (OpenVLA reads -2, the second-to-last block)
    vision_feature_layer: int = 0
    # projector
    projector: str = "mlp"  # mlp | fused-gelu-mlp | attention | perceiver
    projector_num_tokens: int = 16  # attention / perceiver: visual tokens out per image
    projector_num_layers: int = 2  # perceiver: resampler layers
    projector_num_heads: int = 4  # attention / perceiver heads
    # language backbone
    llm: str = "qwen2"  # a LANGUAGE_MODELS name: qwen2 llama smolvlm qwen2-vl
    llm_pretrained: str | None = None  # local folder or hub id for from_pretrained (its own tokenizer)
    llm_hidden_size: int = 128
    llm_num_layers: int = 2
    llm_num_heads: int = 4
    llm_intermediate_size: int = 256
    llm_layers: int = 0  # 0 = all; K = keep the first K decoder layers (SmolVLA does this with SmolVLM)
    max_text_tokens: int = 48
    # "plain": [instruction, observation tokens, learned action query]; "openvla": OpenVLA's prompt
    # [BOS, observation tokens, "In: What action should the robot take to {task}?\nOut:", empty token] with
    # the actions predicted from its last token (no action query); "smolvla": SmolVLA's prefix [image tokens and
    # instruction (+ "\n") scaled by sqrt(hidden), bidirectional; the state token after them], read layer by layer
    # by the smolvla-expert head
    prompt_format: Literal["plain", "openvla", "smolvla"] = "plain"
    # action head
    action_head: str = "mlp"
    head_hidden_dim: int = 256
    head_num_layers: int = 2
    head_num_heads: int = 4  # transformer head
    min_std: float = 0.01  # gaussian head
    max_std: float = 1.0  # gaussian head
    num_diffusion_steps: int = 100  # diffusion head: training noise steps (DDPM)
    num_inference_steps: int = 10  # diffusion head: sampling steps at inference
    use_ddim: bool = True  # diffusion head: DDIM (deterministic, few steps) or DDPM sampling at inference
    prediction_type: Literal["epsilon", "sample"] = "epsilon"  # diffusion head target
    diffusion_beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"
    diffusion_clip_sample: float | None = None  # diffusion: clamp predicted chunks to +-this; None = by normalization, 0 = off
    diffusion_noise_samples: int = 1  # diffusion: (noise, step) draws per example in each batch (Octo's n_diffusion_samples)
    head_causal: bool = True  # transformer head: chunk step k attends to steps <= k only
    temporal_ensemble_coeff: float | None = None  # ACT temporal ensembling at inference (ACT: 0.01; < 0 weighs newer chunks more); None = off
    action_bins: int = 256  # action tokens: bins per action dimension
    # action tokens: "append" = new token ids after the tokenizer's vocabulary (one per bin); "vocab_tail" =
    # OpenVLA's: the last action_bins ids of the tokenizer's own vocabulary, bin edges linspace(-1, 1,
    # action_bins), greedy decoding and cross-entropy over the whole vocabulary
    action_token_ids: Literal["append", "vocab_tail"] = "append"
    # smolvla-expert head (SmolVLA's action expert; head_hidden_dim = its width, head_num_layers = its depth)
    max_action_dim: int = 0  # noise / velocity width, actions zero-padded to it (SmolVLA's max_action_dim); 0 = action_dim
    expert_self_attn_every: int = 2  # every n-th LM layer (from 0) self-attention, the others cross-attention; 1 = all self, 0 = all cross
    flow_min_period: float = 4e-3  # time embedding: shortest sine period
    flow_max_period: float = 4.0  # time embedding: longest sine period
    action_dim: int = 2
    state_dim: int = 0  # 0 = no state input
    chunk_size: int = 1
    n_action_steps: int = 1  # actions executed from each predicted chunk (<= chunk_size)
    n_obs_steps: int = 1
    action_loss: Literal["mse", "l1", "smooth_l1"] = "mse"
    # mlp / transformer heads: chunk step k weighs chunk_loss_decay**k in the loss (1 = every step the same)
    chunk_loss_decay: float = 1.0
    dropout: float = 0.0
    film: bool = False  # cnn, cnn-keypoints: the instruction scales/shifts the feature map (FiLM, as in RT-1 / BC-Z)
    random_shift: int = 4  # training-time image augmentation: random shifts of up to this many pixels (0 = off)
    # inputs and normalisation
    image_keys: list[str] = field(default_factory=lambda: ["observation.images.front"])
    normalization: Literal["mean_std", "min_max", "none"] = "mean_std"
    use_gradient_checkpointing: bool = False

    @classmethod
    def from_dict(cls, data: dict | None, prefix: str | None = None, *, where: str = "") -> "ModelConfig":
        """The config from its fields. Keys an older version wrote into a model config (``freeze_*``,
        ``lora_*``) and a checkpoint's ``adapters`` record are not model fields: they are left out with a
        one-line note (use ``read_model_dict`` to keep the adapters). ``where`` names the file in notes."""
        fields, _ = _split_legacy(data, where)
        return super().from_dict(fields, prefix)

    def validate(self) -> None:
        self._check_choice("vision_encoder", VISION_ENCODERS)
        self._check_choice("projector", PROJECTORS)
        self._check_choice("llm", LANGUAGE_MODELS)
        self._check_choice("action_head", ACTION_HEADS)
        self._check_range("image_size", 16, 1024)
        self._check_range("vision_dim", 1)
        self._check_range("vision_pool", 0, 64)
        self._check_range("vision_num_layers", 1)
        self._check_range("vision_num_heads", 1)
        self._check_range("vision_patch_size", 1)
        self._check_range("vision_feature_layer", -1024, 0)
        if self.vision_feature_layer and self.vision_encoder not in _FEATURE_LAYER_ENCODERS:
            self._fail("vision_feature_layer", f"applies to the {', '.join(_FEATURE_LAYER_ENCODERS)} encoders, "
                                               f"not {self.vision_encoder!r}; set it to 0")
        self._check_range("llm_hidden_size", 8)
        self._check_range("llm_num_layers", 1)
        self._check_range("llm_num_heads", 1)
        self._check_range("llm_intermediate_size", 1)
        self._check_range("llm_layers", 0, 1024)
        self._check_range("max_text_tokens", 1, 4096)
        self._check_range("head_hidden_dim", 1)
        self._check_range("head_num_layers", 1)
        self._check_range("head_num_heads", 1)
        self._check_range("projector_num_tokens", 1, 4096)
        self._check_range("projector_num_layers", 1)
        self._check_range("projector_num_heads", 1)
        self._check_range("min_std", 1e-6, 10.0)
        self._check_range("max_std", self.min_std, 100.0)
        self._check_range("num_diffusion_steps", 2, 10000)
        self._check_range("num_inference_steps", 1, self.num_diffusion_steps)
        self._check_range("diffusion_clip_sample", 0.0)
        self._check_range("diffusion_noise_samples", 1, 64)
        self._check_range("action_bins", 2, 4096)
        if self.action_token_ids == "vocab_tail" and self.action_bins < 3:
            self._fail("action_bins", f"is {self.action_bins} but action_token_ids: vocab_tail needs >= 3 "
                                      f"(action_bins edges give action_bins - 1 bins); OpenVLA uses 256")
        if self.temporal_ensemble_coeff is not None:
            self._check_range("temporal_ensemble_coeff", -10.0, 10.0)
        self._check_range("action_dim", 1)
        if self.max_action_dim and self.max_action_dim < self.action_dim:
            self._fail("max_action_dim", f"is below action_dim ({self.action_dim}); set it >= action_dim, or 0")
        self._check_range("max_action_dim", 0)
        self._check_range("expert_self_attn_every", 0, 1024)
        self._check_range("flow_min_period", 0.0, lo_open=True)
        if self.flow_max_period <= self.flow_min_period:
            self._fail("flow_max_period", f"must be above flow_min_period ({self.flow_min_period})")
        if (self.prompt_format == "smolvla") != (self.action_head == "smolvla-expert"):
            self._fail("prompt_format", f"and action_head {self.action_head!r} do not go together; prompt_format: "
                                        f"smolvla is read by the smolvla-expert head only, and it needs that format")
        self._check_range("state_dim", 0)
        self._check_range("chunk_size", 1)
        self._check_range("n_action_steps", 1)
        if self.n_action_steps > self.chunk_size:
            self._fail("n_action_steps", f"is more than chunk_size ({self.chunk_size}): a chunk holds no more actions "
                                         f"to execute; set it between 1 and {self.chunk_size}")
        self._check_range("n_obs_steps", 1)
        self._check_range("chunk_loss_decay", 0.0, 1.0, lo_open=True)
        if self.chunk_loss_decay != 1.0 and self.action_head not in ("mlp", "transformer"):
            self._fail("chunk_loss_decay", f"applies to the mlp and transformer heads, not {self.action_head!r}; "
                                           f"set it to 1")
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
        if self.vision_encoder in _FEATURE_LAYER_ENCODERS and self.vision_pretrained is None:
            if self.vision_dim % self.vision_num_heads:
                self._fail("vision_dim", f"must be divisible by vision_num_heads ({self.vision_num_heads}) for {self.vision_encoder}")
            if self.image_size % self.vision_patch_size:
                self._fail("image_size", f"must be a multiple of vision_patch_size ({self.vision_patch_size}) "
                                         f"for {self.vision_encoder}")
        if not self.image_keys:
            self._fail("image_keys", "is empty; name at least one camera, e.g. [observation.images.front]")
        for i, k in enumerate(self.image_keys):
            if not k.strip():
                self._fail("image_keys", f"has an empty name at position {i}")
        if len(set(self.image_keys)) != len(self.image_keys):
            self._fail("image_keys", "names a camera twice; list each image key once")


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
    return ModelConfig.from_dict(fields), spec


# The ModelConfig fields that only change how a trained model acts, not what it learned: they can be set on a
# checkpoint at evaluation (VLAModel.configure_inference, `vla eval --set model.n_action_steps=4`)
INFERENCE_FIELDS: tuple[str, ...] = ("n_action_steps", "temporal_ensemble_coeff", "num_inference_steps", "use_ddim")


def parse_inference_overrides(overrides: list[str]) -> dict:
    """``["model.n_action_steps=4", "temporal_ensemble_coeff=-0.5"]`` -> ``{"n_action_steps": 4, ...}``.

    Values are YAML scalars (``null`` turns ensembling off); the ``model.`` prefix is optional."""
    import yaml

    out: dict = {}
    for ov in overrides:
        key, sep, raw = ov.partition("=")
        name = key.strip().removeprefix("model.")
        if not sep or name not in INFERENCE_FIELDS:
            raise ConfigError(f"override {ov!r}: a checkpoint's inference settings are set as model.FIELD=VALUE "
                              f"with FIELD one of {', '.join(INFERENCE_FIELDS)}; the rest is fixed by training")
        out[name] = yaml.safe_load(raw) if raw.strip() else None
    return out
