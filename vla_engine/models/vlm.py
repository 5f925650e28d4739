"""Full vision-language models as VLA backbones, their own vision towers used: SmolVLM (transformers
Idefics3 / SmolVLM) and Qwen2-VL.

A VLA is ``vision_encoder -> projector -> language backbone -> head``; a VLM is split into those slots,
each part owning its own weights (nothing is shared between parts):

    SmolVLM   vision  SmolVLMVision   Idefics3 vision transformer + its connector (pixel shuffle,
                                      projection to the text hidden size)             (B, N, H_text)
              text    SmolVLMBackbone the text model (a Llama) + lm_head as a LlamaForCausalLM
    Qwen2-VL  vision  Qwen2VLVision   Qwen2-VL vision transformer incl. its patch merger (B, N, H_text)
              text    Qwen2VLBackbone the text model + lm_head as a Qwen2ForCausalLM (M-RoPE with the three
                                      position components equal, as for text, is 1-D RoPE)

Each part comes from ``model.vision.pretrained`` / ``model.llm_pretrained`` (a folder saved with
``save_pretrained`` or a cached hub id: the whole VLM is loaded, the part kept, the rest freed), or is
built small from the config's sizes (a small VLM config: the connector / merger outputs
``llm_hidden_size``, so vision and text agree). The vision part's ``hf_config`` is the FULL VLM config:
``VLAModel.save_pretrained`` writes it to ``<ckpt>/vision/`` and ``from_pretrained`` rebuilds the part
from it without the original folder.

Preprocessing is done in torch, as each family's image processor does for one fixed-size image:
resize to the model's image size, rescale to [0, 1], normalise with its mean/std (read from the
folder's ``preprocessor_config.json`` when there is one); Qwen2-VL then repeats the still image
``temporal_patch_size`` times and flattens it into the patch rows and ``grid_thw`` its vision model reads.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config.base import ConfigError
from ._util import _first_line, _import_transformers, pretrained_load_error
from .configuration_vision import TowerVisionConfig, VLMVisionConfig
from .language import LanguageBackbone, LlamaBackbone, Qwen2Backbone
from .vision import VisionEncoder

log = logging.getLogger(__name__)

__all__ = ["SmolVLMVision", "Qwen2VLVision", "SmolVLMBackbone", "Qwen2VLBackbone", "load_vlm",
           "small_vlm_config", "VLM_MODEL_TYPES"]

# our family name -> transformers model_type -> (ForConditionalGeneration class, vision tower class, connector class)
VLM_MODEL_TYPES: dict[str, dict[str, tuple[str, str, str | None]]] = {
    "smolvlm": {
        "idefics3": ("Idefics3ForConditionalGeneration", "Idefics3VisionTransformer", "Idefics3Connector"),
        "smolvlm": ("SmolVLMForConditionalGeneration", "SmolVLMVisionTransformer", "SmolVLMConnector"),
    },
    "qwen2-vl": {
        "qwen2_vl": ("Qwen2VLForConditionalGeneration", "Qwen2VisionTransformerPretrainedModel", None),
    },
}
_FAMILY_OF = {mt: fam for fam, types in VLM_MODEL_TYPES.items() for mt in types}
_BYTE_VOCAB = 259  # the byte-level tokenizer's size (the vision part's small config needs some vocabulary)

IDEFICS_MEAN = IDEFICS_STD = (0.5, 0.5, 0.5)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ------------------------------------------------------------------------------------------------
# Loading and small configs
# ------------------------------------------------------------------------------------------------
def _modeling(model_type: str):
    return importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")


def load_vlm(family: str, field: str, ref: str) -> nn.Module:
    """The whole VLM ``ref`` (folder or cached hub id) as its transformers ``...ForConditionalGeneration``
    in float32; ``field`` (vision.pretrained / llm_pretrained) names the config field in errors."""
    tf = _import_transformers()
    what = f"a {family} vision-language model"
    try:
        config = tf.AutoConfig.from_pretrained(ref, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - OSError / ValueError / HF errors: one user message
        raise pretrained_load_error(field, ref, what, e) from None
    model_type = getattr(config, "model_type", None)
    types = VLM_MODEL_TYPES[family]
    if model_type not in types:
        other = _FAMILY_OF.get(model_type)
        hint = (f"set model.vision_encoder and model.llm to {other!r}" if other else
                f"give a folder of a {' / '.join(types)} model")
        raise ConfigError(f"model.{field}: {ref!r} is a {model_type!r} model, not {family} "
                          f"({' / '.join(types)}); {hint}")
    try:
        return getattr(tf, types[model_type][0]).from_pretrained(
            ref, config=config, dtype=torch.float32, attn_implementation="sdpa", trust_remote_code=False)
    except Exception as e:  # noqa: BLE001
        raise pretrained_load_error(field, ref, what, e) from None


def _mrope_section(head_dim: int) -> list[int]:
    """Qwen2-VL's split of the rotary frequencies into (temporal, height, width); 128 -> [16, 24, 24]."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def small_vlm_config(family: str, cfg: Any, vocab_size: int = _BYTE_VOCAB) -> Any:
    """A small VLM config from the ModelConfig sizes (offline, trained from scratch); the connector /
    patch merger outputs ``llm_hidden_size`` tokens, so the vision part feeds the text part's width."""
    tf = _import_transformers()
    # the vision sizes: the chosen encoder's when it has them (a VLM's LM beside another encoder: the defaults)
    v = cfg.vision if isinstance(cfg.vision, (VLMVisionConfig, TowerVisionConfig)) else VLMVisionConfig()
    if v.dim % v.num_heads:
        raise ConfigError(f"model.vision.dim ({v.dim}) must be divisible by vision.num_heads "
                          f"({v.num_heads}) for {family}")
    grid = cfg.image_size // v.patch_size
    if family == "smolvlm":
        if grid < 1:
            raise ConfigError(f"model.image_size ({cfg.image_size}) is smaller than vision.patch_size "
                              f"({v.patch_size}); raise image_size or lower vision.patch_size")
        vision = tf.Idefics3VisionConfig(
            hidden_size=v.dim, intermediate_size=4 * v.dim, num_hidden_layers=v.num_layers,
            num_attention_heads=v.num_heads, image_size=cfg.image_size, patch_size=v.patch_size,
            attention_dropout=cfg.dropout)
        text = LlamaBackbone.small_config(cfg, vocab_size)
        scale = 2 if grid % 2 == 0 else 1  # pixel shuffle: 4x fewer tokens when the patch grid allows it
        return tf.Idefics3Config(vision_config=vision.to_dict(), text_config=text.to_dict(), scale_factor=scale,
                                 image_token_id=vocab_size - 1, pad_token_id=text.pad_token_id,
                                 tie_word_embeddings=bool(text.tie_word_embeddings))
    head = v.dim // v.num_heads
    if head % 4:
        raise ConfigError(f"model.vision.dim / vision.num_heads ({head}) must be a multiple of 4 for qwen2-vl "
                          f"(2-D rotary positions); e.g. dim 64 with 4 heads")
    vision = tf.Qwen2VLConfig.sub_configs["vision_config"](
        depth=v.num_layers, embed_dim=v.dim, hidden_size=cfg.llm_hidden_size, mlp_ratio=4,
        num_heads=v.num_heads, patch_size=v.patch_size, spatial_merge_size=2, temporal_patch_size=2)
    small = Qwen2Backbone.small_config(cfg, vocab_size)
    text = dict(vocab_size=vocab_size, hidden_size=cfg.llm_hidden_size, intermediate_size=cfg.llm_intermediate_size,
                num_hidden_layers=cfg.llm_num_layers, num_attention_heads=cfg.llm_num_heads,
                num_key_value_heads=cfg.llm_num_heads, max_position_embeddings=2048, attention_dropout=cfg.dropout,
                rope_theta=10000.0, tie_word_embeddings=True, pad_token_id=small.pad_token_id,
                bos_token_id=small.bos_token_id, eos_token_id=small.eos_token_id,
                rope_scaling={"type": "mrope",
                              "mrope_section": _mrope_section(cfg.llm_hidden_size // cfg.llm_num_heads)})
    return tf.Qwen2VLConfig(text_config=text, vision_config=vision.to_dict(), image_token_id=vocab_size - 1,
                            tie_word_embeddings=True)


def _vlm_for(family: str, field: str, ref: str | None, cfg: Any, vocab_size: int = _BYTE_VOCAB) -> nn.Module:
    """The whole VLM: loaded from ``ref``, or small from the config's sizes (HF's own initialisation)."""
    if ref is not None:
        return load_vlm(family, field, ref)
    tf = _import_transformers()
    config = small_vlm_config(family, cfg, vocab_size)
    cls_name = VLM_MODEL_TYPES[family][config.model_type][0]
    return getattr(tf, cls_name)._from_config(config, attn_implementation="sdpa")


def _preprocessor_stats(ref: str | None, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[list, list]:
    """image_mean / image_std from a folder's preprocessor_config.json (plain JSON), else the family's."""
    if ref is not None and (Path(ref) / "preprocessor_config.json").is_file():
        try:
            data = json.loads((Path(ref) / "preprocessor_config.json").read_text())
            m, s = data.get("image_mean", mean), data.get("image_std", std)
            if len(m) == 3 and len(s) == 3:
                return [float(v) for v in m], [float(v) for v in s]
        except (OSError, json.JSONDecodeError, TypeError, ValueError) as e:
            log.warning("%s/preprocessor_config.json is unreadable (%s); using the default image mean/std", ref,
                        _first_line(e))
    return list(mean), list(std)


# ------------------------------------------------------------------------------------------------
# Vision parts
# ------------------------------------------------------------------------------------------------
class _VLMVision(VisionEncoder):
    """Shared: the full VLM config as ``hf_config`` (with the image mean/std recorded in it), normalisation."""

    family: str = ""
    default_mean: tuple[float, ...] = IDEFICS_MEAN
    default_std: tuple[float, ...] = IDEFICS_STD

    def _set_config(self, hf_config: Any, mean: list[float] | None = None, std: list[float] | None = None) -> None:
        self.hf_config = copy.deepcopy(hf_config)
        mean = mean if mean is not None else getattr(hf_config, "vla_image_mean", None) or list(self.default_mean)
        std = std if std is not None else getattr(hf_config, "vla_image_std", None) or list(self.default_std)
        self.hf_config.vla_image_mean, self.hf_config.vla_image_std = list(mean), list(std)  # saved with the config
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, cfg, *, hf_config: Any = None, rebuild: bool = False) -> "_VLMVision":
        if hf_config is not None:  # a saved checkpoint: the structure only, its weights are loaded after
            if getattr(hf_config, "model_type", None) not in VLM_MODEL_TYPES[cls.family]:
                raise ConfigError(f"the saved vision config is a {getattr(hf_config, 'model_type', '?')!r} model, "
                                  f"not {cls.family}; the checkpoint does not match model.vision_encoder")
            return cls(hf_config, cfg)
        vlm = _vlm_for(cls.family, "vision.pretrained", cfg.vision.pretrained, cfg)
        mean, std = _preprocessor_stats(cfg.vision.pretrained, cls.default_mean, cls.default_std)
        return cls(vlm.config, cfg, vlm=vlm, mean=mean, std=std)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (self.resize(images) - self.mean) / self.std  # (B, 3, S, S)


class SmolVLMVision(_VLMVision):
    """SmolVLM / Idefics3's own vision tower: the SigLIP-style vision transformer at its image size, then the
    connector (pixel shuffle by ``scale_factor``, linear projection) to text-hidden-size tokens."""

    name = family = "smolvlm"

    def __init__(self, hf_config: Any, cfg: Any = None, *, vlm: nn.Module | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None):
        super().__init__()
        model_type = hf_config.model_type
        if vlm is not None:  # keep the parts, the rest of the VLM is freed with it
            self.vision_model, self.connector = vlm.model.vision_model, vlm.model.connector
        else:
            _, tower, connector = VLM_MODEL_TYPES["smolvlm"][model_type]
            mod = _modeling(model_type)
            self.vision_model = getattr(mod, tower)._from_config(hf_config.vision_config, attn_implementation="sdpa")
            self.connector = getattr(mod, connector)(hf_config)
        self._set_config(hf_config, mean, std)
        vc = hf_config.vision_config
        self.image_size = int(vc.image_size)
        self.scale_factor = int(hf_config.scale_factor)
        grid = self.image_size // int(vc.patch_size)
        if grid % self.scale_factor:
            raise ConfigError(f"smolvlm: the {grid}x{grid} patch grid is not divisible by the connector's scale "
                              f"factor {self.scale_factor}; use an image size that is a multiple of "
                              f"{int(vc.patch_size) * self.scale_factor}")
        self.num_tokens = (grid // self.scale_factor) ** 2
        self.out_dim = int(hf_config.text_config.hidden_size)

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """What the Idefics3 image processor gives for one fixed-size image (no splitting): (B, 3, S, S)."""
        return self.normalize(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.pixel_values(images)  # (B, 3, S, S)
        vm = self.vision_model
        emb = vm.embeddings
        h = emb.patch_embedding(x.to(emb.patch_embedding.weight.dtype))  # (B, Dv, g, g)
        h = h.flatten(2).transpose(1, 2)  # (B, P, Dv), P = g * g
        # every image fills the model's grid, so the patch positions are 0..P-1, as SmolVLM was trained
        # (transformers <= 4.54, and bf16 runs). The tower's own forward gets there with a per-image bucketing
        # loop and an all-ones padding mask; in float32 transformers 4.55+ buckets a full grid one row/column
        # low (a transformers bug), so its own forward is not used here.
        h = h + emb.position_embedding.weight[None, : h.shape[1]]  # (B, P, Dv)
        h = vm.post_layernorm(vm.encoder(inputs_embeds=h).last_hidden_state)  # (B, P, Dv)
        return self.connector(h)  # (B, P / scale^2, H_text)


class Qwen2VLVision(_VLMVision):
    """Qwen2-VL's own vision tower: patch embedding over ``temporal_patch_size`` frames (a still image
    repeated), 2-D rotary ViT blocks, and the patch merger (2x2 patches -> one text-hidden-size token)."""

    name = family = "qwen2-vl"
    default_mean, default_std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    def __init__(self, hf_config: Any, cfg: Any = None, *, vlm: nn.Module | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None):
        super().__init__()
        if vlm is not None:
            self.visual = vlm.model.visual
        else:
            _, tower, _ = VLM_MODEL_TYPES["qwen2-vl"][hf_config.model_type]
            self.visual = getattr(_modeling(hf_config.model_type), tower)._from_config(
                hf_config.vision_config, attn_implementation="sdpa")
        self._set_config(hf_config, mean, std)
        vc = hf_config.vision_config
        self.patch_size, self.merge_size = int(vc.patch_size), int(vc.spatial_merge_size)
        self.temporal_patch_size = int(vc.temporal_patch_size)
        factor = self.patch_size * self.merge_size
        want = cfg.image_size if cfg is not None else 224
        self.image_size = max(factor, round(want / factor) * factor)  # a multiple of patch x merge (Qwen2-VL's resize)
        if self.image_size != want:
            log.info("qwen2-vl: images are resized to %d px (a multiple of %d) instead of model.image_size %d",
                     self.image_size, factor, want)
        self.grid = self.image_size // self.patch_size
        self.num_tokens = (self.grid // self.merge_size) ** 2
        self.out_dim = int(vc.hidden_size)  # the merger's output width = the text hidden size

    def pixel_inputs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the Qwen2-VL image processor gives for fixed-size still images: the flattened patch rows
        (B*gh*gw, 3*tp*p*p) and ``grid_thw`` (B, 3), each image repeated over tp frames."""
        x = self.normalize(images)  # (B, 3, S, S)
        b, c = x.shape[:2]
        p, m, tp, g = self.patch_size, self.merge_size, self.temporal_patch_size, self.grid
        x = x.unsqueeze(1).expand(b, tp, c, self.image_size, self.image_size)  # (B, tp, 3, S, S)
        x = x.reshape(b, tp, c, g // m, m, p, g // m, m, p)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (B, gh/m, gw/m, m, m, 3, tp, p, p): the processor's order
        rows = x.reshape(b * g * g, c * tp * p * p)  # (B*gh*gw, 3*tp*p*p)
        grid_thw = torch.tensor([[1, g, g]], device=x.device).expand(b, 3)  # (B, 3)
        return rows, grid_thw

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        rows, _ = self.pixel_inputs(images)  # (B*g*g, 3*tp*p*p)
        # B images of one size == one "video" of B frames: the same per-frame 2-D positions and
        # per-frame attention blocks (cu_seqlens), with one pass over the grid instead of B
        grid_thw = torch.tensor([[b, self.grid, self.grid]], device=rows.device)  # (1, 3)
        tokens = self.visual(rows, grid_thw=grid_thw)  # (B*N, H_text)
        return tokens.view(b, self.num_tokens, self.out_dim)  # (B, N, H_text)


# ------------------------------------------------------------------------------------------------
# Language parts
# ------------------------------------------------------------------------------------------------
def _tied(vlm: nn.Module) -> bool:
    out = vlm.get_output_embeddings()
    return out is not None and out.weight is vlm.get_input_embeddings().weight


def _causal_lm_from(text_config: Any, text_model: nn.Module, lm_head: nn.Module, tied: bool) -> nn.Module:
    """A plain transformers causal LM (``text_config``'s class) holding copies of the VLM's text weights."""
    tf = _import_transformers()
    text_config.tie_word_embeddings = tied
    lm = tf.AutoModelForCausalLM.from_config(text_config, attn_implementation="sdpa", dtype=torch.float32)
    lm.get_decoder().load_state_dict(text_model.state_dict(), strict=True)
    if not tied:
        lm.get_output_embeddings().load_state_dict(lm_head.state_dict(), strict=True)
    return lm


class SmolVLMBackbone(LanguageBackbone):
    """SmolVLM's text model (a Llama) with its lm_head, as a plain ``LlamaForCausalLM``."""

    name = "smolvlm"

    @classmethod
    def build_lm(cls, cfg: Any, vocab_size: int) -> nn.Module:
        vlm = _vlm_for("smolvlm", "llm_pretrained", cfg.llm_pretrained, cfg, vocab_size)
        text_config = copy.deepcopy(vlm.config.text_config)
        return _causal_lm_from(text_config, vlm.model.text_model, vlm.lm_head, _tied(vlm))


class Qwen2VLBackbone(LanguageBackbone):
    """Qwen2-VL's text model with its lm_head, as a plain ``Qwen2ForCausalLM``: the same weights; its
    M-RoPE with equal (temporal, height, width) positions (all text and our 1-D token sequence) is 1-D RoPE."""

    name = "qwen2-vl"

    @staticmethod
    def qwen2_config(text_config: Any) -> Any:
        """The Qwen2Config of a Qwen2-VL text config (M-RoPE dropped: 1-D positions)."""
        tf = _import_transformers()
        keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps",
                "use_cache", "rope_theta", "use_sliding_window", "sliding_window", "max_window_layers",
                "layer_types", "attention_dropout", "pad_token_id", "bos_token_id", "eos_token_id")
        d = text_config.to_dict()
        kw = {k: d[k] for k in keys if k in d}
        if kw.get("sliding_window") is None:
            kw.pop("sliding_window", None)
        rope = d.get("rope_scaling")
        if rope and rope.get("rope_type", rope.get("type")) not in (None, "default", "mrope"):
            kw["rope_scaling"] = {k: v for k, v in rope.items() if k != "mrope_section"}
        return tf.Qwen2Config(**kw)

    @classmethod
    def build_lm(cls, cfg: Any, vocab_size: int) -> nn.Module:
        vlm = _vlm_for("qwen2-vl", "llm_pretrained", cfg.llm_pretrained, cfg, vocab_size)
        text_config = cls.qwen2_config(vlm.config.text_config)
        return _causal_lm_from(text_config, vlm.model.language_model, vlm.lm_head, _tied(vlm))
