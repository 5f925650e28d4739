"""The model config: one flat dataclass describing a VLA (vision encoder, projector, language
backbone, action head, normalisation). Every choosable part is a registry name; sizes are plain
numbers. Saved as ``config.json`` next to a checkpoint's ``model.safetensors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .base import ConfigBase, ConfigError


def _registries():
    """The model registries, with the built-in parts registered (a light import: no torch)."""
    from .. import models  # noqa: F401  (registers the built-in parts lazily)
    from ..registry import ACTION_HEADS, LANGUAGE_MODELS, PROJECTORS, VISION_ENCODERS

    return VISION_ENCODERS, PROJECTORS, LANGUAGE_MODELS, ACTION_HEADS


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
    freeze_vision: bool = False
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
    freeze_vlm: bool = False  # freeze vision encoder + language model (projector, tokens, head train)
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
    # LoRA adapters on the language model (peft); a checkpoint of a LoRA model records them so
    # from_pretrained rebuilds the same wrapped structure before loading its weights
    lora_r: int = 0  # adapter rank; 0 = no LoRA
    lora_alpha: int = 32  # scaling = lora_alpha / lora_r
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    # "lm": adapters on the LM only, the projector / FiLM / action head train in full; "policy": adapters on
    # their linear layers too (where an adapter is smaller than the layer), as OpenVLA's all-linear LoRA;
    # "all": the vision encoder's conv / linear layers as well
    lora_scope: Literal["lm", "policy", "all"] = "lm"

    def validate(self) -> None:
        vision, projectors, llms, heads = _registries()
        self._check_choice("vision_encoder", vision)
        self._check_choice("projector", projectors)
        self._check_choice("llm", llms)
        self._check_choice("action_head", heads)
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
        self._check_range("lora_r", 0, 4096)
        self._check_range("lora_alpha", 1)
        self._check_range("lora_dropout", 0.0)
        if self.lora_dropout >= 1.0:
            self._fail("lora_dropout", "is out of range; must be < 1 (e.g. 0.05)")
        if self.lora_r > 0:
            if not self.lora_target_modules:
                self._fail("lora_target_modules", "is empty; name the LM's linear layers, e.g. [q_proj, k_proj, v_proj, o_proj]")
            for i, name in enumerate(self.lora_target_modules):
                if not name.strip():
                    self._fail("lora_target_modules", f"has an empty name at position {i}")
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
