"""The VLA model: images + state + instruction -> a chunk of actions.

Data flow (one forward):

    images (B, T, 3, H, W) --vision encoder--> (B*T*K, N, Dv) --projector--> (B, T*K*N, H)   "images"
    state  (B, T, S)       --normalise, linear-->                             (B, T, H)       "state"
    other modalities (added with ``add_modality``)                            (B, n, H)
    task   list[str]       --tokenise (cached), LM embeddings-->              (B, L, H)
    a learned action query token                                              (B, 1, H)

The language model runs over ``[text tokens, modality tokens..., action query]`` (text padding
masked out); the final hidden state at the action query (B, H) goes to the action head, which
predicts a chunk (B, chunk, A) in normalised units; the model un-normalises it. With
``prompt_format: openvla`` the sequence is OpenVLA's instead: ``[BOS, modality tokens...,
"In: What action should the robot take to {task}?\nOut:", empty token]`` (the text left-padded so
every row ends at its last prompt token), read at its last token. With ``prompt_format: smolvla`` it is
SmolVLA's prefix ``[image tokens * sqrt(H), instruction + "\n" tokens * sqrt(H), state token]`` with a
(B, N, N) block mask (images and words bidirectional, the state token after them), which the
``smolvla-expert`` head reads layer by layer (``models/smolvla_expert.py``).

The policy interface (what trainers, the evaluator and the UI use): ``forward(batch) -> (loss, info)``,
``predict_action_chunk(obs)``, ``select_action(obs)``, ``reset()``; plus ``save_pretrained`` /
``from_pretrained`` (``model.safetensors`` + ``config.json`` + tokenizer files).
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ..config.base import ConfigError
from ..config.model_config import INFERENCE_FIELDS, ModelConfig
from ..registry import ACTION_HEADS, LANGUAGE_MODELS, PROJECTORS, VISION_ENCODERS
from ..errors import CheckpointError  # one CheckpointError for the whole engine
from .ensemble import TemporalEnsembler
from .heads import ActionHead
from .language import TextTokenCache, _first_line, _import_transformers, build_byte_tokenizer, load_tokenizer
from .normalize import NormalizationError, Normalizer

log = logging.getLogger(__name__)

__all__ = ["VLAModel", "create_vla_model", "CheckpointError", "ModelInputError", "VLM_PRESETS",
           "list_vlm_presets"]


class ModelInputError(ValueError):
    """A batch or observation does not fit the model (missing key, wrong size). One-line message."""


# ------------------------------------------------------------------------------------------------
# Named defaults: every one trains on a CPU. The well-known hub names map to them offline.
# ------------------------------------------------------------------------------------------------
VLM_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vision_encoder="cnn", vision_dim=64, vision_pool=6, llm="qwen2", llm_hidden_size=128,
                 llm_num_layers=2, llm_num_heads=4, llm_intermediate_size=256),
    "small": dict(vision_encoder="cnn", vision_dim=128, vision_pool=6, llm="qwen2", llm_hidden_size=256,
                  llm_num_layers=4, llm_num_heads=4, llm_intermediate_size=512),
    "siglip-tiny": dict(vision_encoder="siglip", vision_dim=64, vision_num_layers=2, vision_num_heads=4,
                        vision_patch_size=16, llm="llama", llm_hidden_size=128, llm_num_layers=2, llm_num_heads=4,
                        llm_intermediate_size=256),
    "qwen2-vl-tiny": dict(vision_encoder="siglip", vision_dim=64, vision_num_layers=2, vision_num_heads=4,
                          vision_patch_size=16, llm="qwen2", llm_hidden_size=128, llm_num_layers=2,
                          llm_num_heads=4, llm_intermediate_size=256),
    "resnet18": dict(vision_encoder="resnet18", llm="qwen2", llm_hidden_size=128, llm_num_layers=2,
                     llm_num_heads=4, llm_intermediate_size=256),
}
VLM_PRESETS["smolvlm"] = dict(VLM_PRESETS["siglip-tiny"])  # SmolVLM = SigLIP + a Llama-style SmolLM
# the real VLM classes (models/vlm.py) at small sizes; a VLM folder of that kind loads through them
VLM_PRESETS["smolvlm-native"] = dict(VLM_PRESETS["siglip-tiny"], vision_encoder="smolvlm", llm="smolvlm")
VLM_PRESETS["qwen2-vl-native"] = dict(VLM_PRESETS["siglip-tiny"], vision_encoder="qwen2-vl", llm="qwen2-vl")

# the two recipes of models/wrappers.py as named defaults (the model builder and the Training tab list them)
VLM_PRESETS["smolvla-tiny"] = dict(VLM_PRESETS["smolvlm-native"], llm_num_layers=1, freeze_vision=True,
                                   action_head="flow", chunk_size=8, n_action_steps=8, head_hidden_dim=128)
VLM_PRESETS["openvla-tiny"] = dict(VLM_PRESETS["siglip-tiny"], vision_encoder="dinosiglip", llm="llama",
                                   action_head="tokens", action_bins=256, chunk_size=1, n_action_steps=1)

PRESET_DESCRIPTIONS = {
    "tiny": "CNN (6x6 = 36 tokens at 96 px) + Qwen2 2x128: the CPU default",
    "small": "CNN 128-d + Qwen2 4x256",
    "siglip-tiny": "SigLIP 2x64 (36 patches) + Llama 2x128",
    "smolvlm": "offline stand-in for SmolVLM: SigLIP 2x64 + Llama 2x128",
    "qwen2-vl-tiny": "offline stand-in for Qwen2-VL: SigLIP 2x64 + Qwen2 2x128",
    "smolvlm-native": "SmolVLM's own classes, small: Idefics3 vision 2x64 + pixel shuffle (9 tokens) + Llama 2x128",
    "smolvla-tiny": "SmolVLA recipe, small: SmolVLM (frozen vision, LM cut to 1 layer) + flow-matching expert, chunks of 8",
    "openvla-tiny": "OpenVLA recipe, small: DINOv2 + SigLIP fused 2x64 + Llama 2x128 + 256-bin action tokens",
    "qwen2-vl-native": "Qwen2-VL's own classes, small: Qwen2-VL vision 2x64 + patch merger (9 tokens) + Qwen2 2x128",
    "resnet18": "ResNet-18 (9 tokens) + Qwen2 2x128 (for GPUs)",
}

# Well-known full-size names -> the small offline stand-in built instead (with a warning).
WELL_KNOWN_VLMS: dict[str, str] = {
    "smolvla": "smolvla-tiny",
    "lerobot/smolvla_base": "smolvla-tiny",
    "huggingfacetb/smolvlm-instruct": "smolvlm",
    "huggingfacetb/smolvlm-256m-instruct": "smolvlm",
    "huggingfacetb/smolvlm-500m-instruct": "smolvlm",
    "huggingfacetb/smolvlm2-256m-video-instruct": "smolvlm",
    "huggingfacetb/smolvlm2-500m-video-instruct": "smolvlm",
    "huggingfacetb/smolvlm2-2.2b-instruct": "smolvlm",
    "llava": "siglip-tiny",
    "llava-hf/llava-1.5-7b-hf": "siglip-tiny",
    "llava-hf/llava-1.5-13b-hf": "siglip-tiny",
    "openvla": "openvla-tiny",
    "openvla/openvla-7b": "openvla-tiny",
    "paligemma": "siglip-tiny",
    "google/paligemma-3b-pt-224": "siglip-tiny",
    "qwen2-vl": "qwen2-vl-tiny",
    "qwen/qwen2-vl-2b-instruct": "qwen2-vl-tiny",
    "qwen/qwen2.5-vl-3b-instruct": "qwen2-vl-tiny",
    "qwen/qwen2-0.5b": "tiny",
    "qwen/qwen2.5-0.5b": "tiny",
    "huggingfacetb/smollm2-135m": "siglip-tiny",
}


def list_vlm_presets() -> dict[str, str]:
    """Named model defaults -> one-line descriptions (for UIs and ``--help``)."""
    return dict(PRESET_DESCRIPTIONS)


def _cached_hub_config(repo_id: str) -> dict | None:
    """The config.json of ``repo_id`` when it is in the local HF cache (never touches the network)."""
    if "/" not in repo_id or repo_id.count("/") != 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # noqa: BLE001 - an odd id or cache: treat as not cached
        return None
    if not isinstance(path, str):
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


# transformers model_type of a VLM folder -> the preset whose classes load it (models/vlm.py)
_NATIVE_VLMS = {"idefics3": "smolvlm-native", "smolvlm": "smolvlm-native", "qwen2_vl": "qwen2-vl-native"}


def _is_vlm_config(data: dict) -> bool:
    return "vision_config" in data or "text_config" in data


def resolve_vlm(name: str) -> dict[str, Any]:
    """Model-config fields for a preset name, a local LM folder, a cached hub LM or a well-known VLM name."""
    if name in VLM_PRESETS:
        return dict(VLM_PRESETS[name])
    path = Path(name).expanduser()
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.exists():
            raise ConfigError(f"vlm {name!r} is a folder without config.json; give a language-model folder "
                              f"saved with save_pretrained")
        try:
            data = json.loads(cfg_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"vlm {name!r}: config.json is not valid JSON ({_first_line(e)})") from None
        if data.get("model_type") in _NATIVE_VLMS:  # SmolVLM / Qwen2-VL: their own vision tower and text model
            return dict(VLM_PRESETS[_NATIVE_VLMS[data["model_type"]]], vision_pretrained=str(path),
                        llm_pretrained=str(path))
        from .convert_openvla import is_openvla_config

        if is_openvla_config(data):
            raise ConfigError(f"vlm {name!r} is an OpenVLA checkpoint; load it with OpenVLAWrapper.from_openvla(folder) "
                              f"or VLAModel.from_pretrained(folder)")
        from .convert_smolvla import is_smolvla_config

        if is_smolvla_config(data):
            raise ConfigError(f"vlm {name!r} is a LeRobot SmolVLA policy; load it with SmolVLAWrapper.from_lerobot(folder) "
                              f"or VLAModel.from_pretrained(folder)")
        if _is_vlm_config(data):
            raise ConfigError(
                f"vlm {name!r} is a full vision-language model (model_type {data.get('model_type')!r}); VLAModel "
                f"loads a language-model folder: set llm_pretrained to its LM and vision_pretrained to its vision tower")
        llm = data.get("model_type") if data.get("model_type") in LANGUAGE_MODELS else "qwen2"
        return dict(VLM_PRESETS["tiny"], llm=llm, llm_pretrained=str(path))
    key = name.lower()
    cached = _cached_hub_config(name)
    if cached is not None and cached.get("model_type") in _NATIVE_VLMS:  # a cached SmolVLM / Qwen2-VL: load it
        return dict(VLM_PRESETS[_NATIVE_VLMS[cached["model_type"]]], vision_pretrained=name, llm_pretrained=name)
    if cached is not None and not _is_vlm_config(cached):
        llm = cached.get("model_type") if cached.get("model_type") in LANGUAGE_MODELS else "qwen2"
        return dict(VLM_PRESETS["tiny"], llm=llm, llm_pretrained=name)
    if key in WELL_KNOWN_VLMS:
        preset = WELL_KNOWN_VLMS[key]
        why = ("is a full-size VLM that this model class does not load" if cached is not None
               else "is not available locally (no hub access)")
        log.warning("%r %s; building the small offline stand-in %r (%s). To use real weights, pass a local "
                    "language-model folder as vlm_name_or_path / llm_pretrained.", name, why, preset,
                    PRESET_DESCRIPTIONS[preset])
        return dict(VLM_PRESETS[preset])
    raise ConfigError(
        f"unknown vlm {name!r}: not a named default ({', '.join(VLM_PRESETS)}), not a local folder and not in the "
        f"local Hugging Face cache; pick a named default or give a folder saved with save_pretrained"
    )


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------
def pad_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """SmolVLA's ``resize_with_pad``: resize (N, C, H, W) keeping the aspect ratio (bilinear) so the longer
    side is ``size``, then pad with 0 at the left / top to (N, C, size, size)."""
    h, w = images.shape[-2:]
    ratio = max(w / size, h / size)
    rh, rw = int(h / ratio), int(w / ratio)
    out = F.interpolate(images, size=(rh, rw), mode="bilinear", align_corners=False)  # (N, C, rh, rw)
    return F.pad(out, (max(0, size - rw), 0, max(0, size - rh), 0), value=0.0)  # (N, C, size, size)


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ-style augmentation: shift each image by up to ``pad`` pixels (edges replicated). (N, C, H, W)."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")  # (N, C, H+2p, W+2p)
    eps_h, eps_w = 1.0 / (h + 2 * pad), 1.0 / (w + 2 * pad)
    ar_h = torch.linspace(-1.0 + eps_h, 1.0 - eps_h, h + 2 * pad, device=images.device)[:h]
    ar_w = torch.linspace(-1.0 + eps_w, 1.0 - eps_w, w + 2 * pad, device=images.device)[:w]
    base = torch.stack(torch.meshgrid(ar_h, ar_w, indexing="ij")[::-1], dim=-1)  # (H, W, 2) as (x, y)
    shift = torch.randint(0, 2 * pad + 1, (n, 1, 1, 2), device=images.device, dtype=images.dtype)
    shift = shift * torch.tensor([2.0 / (w + 2 * pad), 2.0 / (h + 2 * pad)], device=images.device)
    grid = base.unsqueeze(0).to(images.dtype) + shift  # (N, H, W, 2)
    return F.grid_sample(padded, grid, padding_mode="zeros", align_corners=False)  # (N, C, H, W)


class VLAModel(nn.Module):
    """A vision-language-action policy (see the module docstring for the data flow).

    Args:
        config: a ``ModelConfig`` (or a dict of its fields); default: the "tiny" CPU model.
        vlm_name_or_path: a named default ("tiny", "smolvlm", ...), a well-known hub name (mapped to
            a small offline stand-in with a warning), or a local language-model folder (loaded with
            ``from_pretrained``).
        action_head: an action head module (e.g. ``MLPActionHead(...)``); its sizes go into the config.
        freeze_vlm: freeze the vision encoder and language model (``None`` keeps the config's value).
        **config_overrides: any ``ModelConfig`` field, e.g. ``action_dim=7, chunk_size=4``.
    """

    def __init__(self, config: ModelConfig | Mapping[str, Any] | None = None, *, vlm_name_or_path: str | None = None,
                 action_head: nn.Module | str | None = None, freeze_vlm: bool | None = None,
                 **config_overrides: Any):
        super().__init__()
        if isinstance(config, ModelConfig):
            fields = config.to_dict()
        elif isinstance(config, Mapping):
            fields = dict(config)
        elif config is None:
            fields = {}
        else:
            raise ConfigError(f"VLAModel config must be a ModelConfig or a dict, got {type(config).__name__}")
        if vlm_name_or_path is not None:
            fields.update(resolve_vlm(str(vlm_name_or_path)))
        if isinstance(action_head, str):
            fields["action_head"] = action_head
            action_head = None
        if action_head is not None:
            fields.update(_head_fields(action_head))
        fields.update(config_overrides)
        if freeze_vlm is not None:
            fields["freeze_vlm"] = bool(freeze_vlm)
        self._build(ModelConfig.from_dict(fields), action_head=action_head)

    # -- construction ------------------------------------------------------------------------
    def _build(self, cfg: ModelConfig, action_head: nn.Module | None = None, tokenizer: Any = None,
               llm_hf_config: Any = None, vision_hf_config: Any = None, rebuild: bool = False) -> None:
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.llm_pretrained)
        self.text_cache = TextTokenCache(self.tokenizer, cfg.max_text_tokens)
        self._prompt_end_id = _empty_token_id(self.tokenizer) if cfg.prompt_format == "openvla" else None
        self.vision_encoder = VISION_ENCODERS.get(cfg.vision_encoder).from_config(
            cfg, hf_config=vision_hf_config, rebuild=rebuild)
        self.backbone = LANGUAGE_MODELS.get(cfg.llm).from_config(
            cfg, len(self.tokenizer), hf_config=llm_hf_config, rebuild=rebuild)
        hidden = self.backbone.hidden_size
        self.projector = PROJECTORS.get(cfg.projector).from_config(cfg, self.vision_encoder.out_dim, hidden)
        self.state_proj = nn.Linear(cfg.state_dim, hidden) if cfg.state_dim > 0 else None
        n_cams, n_obs = len(cfg.image_keys), cfg.n_obs_steps
        plain_cams = cfg.prompt_format == "smolvla"  # SmolVLA: cameras one after another, no camera embedding
        self.camera_embed = (nn.Parameter(torch.randn(n_cams, hidden) * 0.02) if n_cams > 1 and not plain_cams
                             else None)  # (K, H)
        self.obs_step_embed = nn.Parameter(torch.randn(n_obs, hidden) * 0.02) if n_obs > 1 else None  # (T, H)
        self.action_query = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)  # (1, 1, H)
        self.film = None
        if cfg.film and hasattr(self.vision_encoder, "film_channels"):
            self.film = nn.Linear(hidden, 2 * self.vision_encoder.film_channels)  # text summary -> (scale, shift)
            nn.init.zeros_(self.film.weight)  # starts as the identity: no conditioning until learned
            nn.init.zeros_(self.film.bias)
        elif cfg.film:
            log.warning("model.film applies to the cnn and cnn-keypoints encoders; %s is not conditioned on the "
                        "instruction (the LM still reads it)", cfg.vision_encoder)
        if action_head is None:
            action_head = ACTION_HEADS.get(cfg.action_head).from_config(cfg, input_dim=hidden)
        elif hasattr(action_head, "set_input_dim"):
            action_head.set_input_dim(hidden)
        self.action_head = action_head
        if hasattr(action_head, "attach_backbone"):  # action tokens: extend the LM's vocabulary (or use its tail)
            tail = getattr(action_head, "vocab_tail", False)  # OpenVLA: the tokenizer's own vocabulary, no added ids
            action_head.attach_backbone(self.backbone, int(self.tokenizer.vocab_size) if tail else len(self.tokenizer))
        self.modality_encoders = nn.ModuleDict()  # extra sensors: name -> module(batch) -> (B, n, H)
        self.state_normalizer = Normalizer(cfg.state_dim, cfg.normalization)
        self.action_normalizer = Normalizer(cfg.action_dim, cfg.normalization)

        # the config describes what was built (pretrained parts bring their own sizes)
        actual: dict[str, Any] = {}
        if cfg.llm_pretrained is not None or llm_hf_config is not None:
            hf = self.backbone.hf_config
            actual.update(llm_hidden_size=hidden, llm_num_layers=int(hf.num_hidden_layers),
                          llm_num_heads=int(hf.num_attention_heads),
                          llm_intermediate_size=int(getattr(hf, "intermediate_size", cfg.llm_intermediate_size)))
        if getattr(self.vision_encoder, "hf_config", None) is not None:  # transformers towers: their own width
            actual["vision_dim"] = self.vision_encoder.out_dim
        self.config = cfg.replace(**actual) if actual and any(getattr(cfg, k) != v for k, v in actual.items()) else cfg

        self._action_queue: deque[torch.Tensor] = deque()
        self._obs_history: dict[str, deque] = {}
        self._ensembler: TemporalEnsembler | None = None
        if self.config.lora_r > 0:  # a LoRA checkpoint: the same peft-wrapped LM, so its weights load strictly
            from .lora import apply_lora_from_config
            apply_lora_from_config(self)
        self._apply_freezing()
        if self.config.use_gradient_checkpointing:
            self.backbone.gradient_checkpointing_enable()

    # -- freezing, modes ---------------------------------------------------------------------
    def _apply_freezing(self) -> None:
        vision_frozen = self.config.freeze_vision or self.config.freeze_vlm
        for p in self.vision_encoder.parameters():
            p.requires_grad_(not vision_frozen)
        lora = self.config.lora_r > 0  # LoRA: the LM's base weights stay frozen, only its adapters train
        for name, p in self.backbone.named_parameters():
            p.requires_grad_(("lora_" in name) if lora else not self.config.freeze_vlm)
        if lora and self.config.lora_scope != "lm":  # adapted projector / FiLM / head (/ vision): their bases freeze
            from .lora import policy_part_trainable, scope_parts
            for part in scope_parts(self.config.lora_scope):
                mod = getattr(self, part, None)
                if part == "vision_encoder" and vision_frozen:
                    continue  # freeze_vision wins: the vision adapters freeze too
                for name, p in (mod.named_parameters() if isinstance(mod, nn.Module) else ()):
                    p.requires_grad_(policy_part_trainable(name))
        self.train(self.training)

    def freeze_vision(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the vision encoder."""
        self.config = self.config.replace(freeze_vision=frozen)
        self._apply_freezing()

    def freeze_vlm(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the vision encoder and the language model; projector, state and
        action-query tokens and the action head stay trainable."""
        self.config = self.config.replace(freeze_vlm=frozen)
        self._apply_freezing()

    def gradient_checkpointing_enable(self) -> None:
        """Recompute the language model's activations in the backward pass (saves memory)."""
        self.config = self.config.replace(use_gradient_checkpointing=True)
        self.backbone.gradient_checkpointing_enable()

    def add_lora(self, r: int = 16, alpha: int = 32, dropout: float = 0.05,
                 target_modules: list[str] | None = None, scope: str = "lm") -> "VLAModel":
        """LoRA adapters (peft) on the language model's ``target_modules`` (default q/k/v/o projections):
        the LM's base weights freeze, the adapters and the non-LM parts train; the config records them.
        ``scope="policy"``: adapters on the projector, FiLM and action head's linear layers as well;
        ``scope="all"``: on the vision encoder's conv and linear layers too."""
        from .lora import apply_lora
        return apply_lora(self, r, alpha, dropout, target_modules, scope=scope)

    def merge_lora(self) -> "VLAModel":
        """Fold the LoRA adapters into the language model's weights (plain weights, config lora_r 0)."""
        from .lora import merge_lora
        return merge_lora(self)

    def train(self, mode: bool = True) -> "VLAModel":
        super().train(mode)
        cfg = getattr(self, "config", None)
        if cfg is not None and mode:  # frozen parts keep eval behaviour (dropout off, fixed norms)
            if cfg.freeze_vision or cfg.freeze_vlm:
                self.vision_encoder.eval()
            if cfg.freeze_vlm and cfg.lora_r == 0:  # with LoRA its adapters train (dropout, checkpointing on)
                self.backbone.eval()
        return self

    def add_modality(self, name: str, encoder: nn.Module) -> None:
        """Add a sensor encoder: ``encoder(batch) -> tokens (B, n, H)`` placed before the text tokens.

        The module is saved with the weights; a model with added modalities is rebuilt by the code
        that adds them before ``load_state_dict``.
        """
        if name in ("images", "state", "text", "action_query") or name in self.modality_encoders:
            raise ModelInputError(f"modality name {name!r} is taken; choose another name")
        self.modality_encoders[name] = encoder

    # -- small helpers ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.action_query.device

    def num_parameters(self, trainable_only: bool = False) -> int:
        seen: set[int] = set()
        total = 0
        for p in self.parameters():
            if id(p) in seen or (trainable_only and not p.requires_grad):
                continue
            seen.add(id(p))
            total += p.numel()
        return total

    def summary(self) -> str:
        """One line per part with its parameter count."""
        parts = {"vision_encoder": self.vision_encoder, "projector": self.projector, "backbone": self.backbone,
                 "action_head": self.action_head}
        lines = [f"VLAModel: {self.num_parameters():,} parameters ({self.num_parameters(True):,} trainable)"]
        for name, mod in parts.items():
            n = sum(p.numel() for p in mod.parameters())
            lines.append(f"  {name:15s} {type(mod).__name__:16s} {n:>12,}")
        return "\n".join(lines)

    def set_normalization(self, stats: Mapping[str, Mapping[str, Any]]) -> None:
        """Set state/action statistics: ``{"observation.state": {"mean", "std", "min", "max"}, "action": {...}}``."""
        if self.config.normalization == "none":
            return
        if "action" not in stats:
            raise NormalizationError(f"normalisation stats have no 'action' entry (have {', '.join(stats)}); "
                                     f"pass the dataset's stats")
        self.action_normalizer.set_stats(stats["action"], "action")
        if self.config.state_dim > 0:
            if "observation.state" not in stats:
                raise NormalizationError("normalisation stats have no 'observation.state' entry but the model "
                                         f"reads a {self.config.state_dim}-d state; pass the dataset's stats")
            self.state_normalizer.set_stats(stats["observation.state"], "observation.state")

    def has_normalization(self) -> bool:
        if self.config.normalization == "none":
            return True
        ok = bool(self.action_normalizer.is_set)
        return ok and (self.config.state_dim == 0 or bool(self.state_normalizer.is_set))

    # -- inputs -> tokens ---------------------------------------------------------------------
    def _fit_time(self, x: torch.Tensor, step_ndim: int, key: str) -> torch.Tensor:
        """(B, *step) or (B, T', *step) -> (B, T, *step) with T = n_obs_steps (last steps; repeat the first)."""
        if x.ndim == step_ndim + 1:
            x = x.unsqueeze(1)  # (B, 1, *step)
        elif x.ndim != step_ndim + 2:
            raise ModelInputError(f"batch[{key!r}] has shape {tuple(x.shape)}; expected (B, ...) or (B, T, ...) "
                                  f"with {step_ndim} trailing dimensions")
        t = self.config.n_obs_steps
        if x.shape[1] > t:
            x = x[:, -t:]
        elif x.shape[1] < t:
            pad = x[:, :1].expand(-1, t - x.shape[1], *x.shape[2:])
            x = torch.cat([pad, x], dim=1)
        return x  # (B, T, *step)

    def _image_tensor(self, batch: Mapping[str, Any], key: str) -> torch.Tensor:
        if key not in batch:
            have = [k for k in batch if k.startswith("observation.")]
            raise ModelInputError(f"the batch has no {key!r} (model.image_keys); it has {', '.join(have) or 'no observations'}; "
                                  f"set model.image_keys to the dataset's camera keys")
        x = batch[key]
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        x = x.to(self.device, non_blocking=True)
        if x.ndim >= 4 and x.shape[-1] in (1, 3) and x.shape[-3] not in (1, 3):  # channel-last
            x = x.movedim(-1, -3)
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif x.dtype != torch.float32:
            x = x.float()
        if x.shape[-3] == 1:
            x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
        return self._fit_time(x, 3, key)  # (B, T, 3, H, W)

    def _image_tokens(self, batch: Mapping[str, Any], text_summary: torch.Tensor | None = None) -> torch.Tensor:
        cams = [self._image_tensor(batch, k) for k in self.config.image_keys]  # K x (B, T, 3, H, W)
        if self.config.image_resize == "pad":  # aspect kept, black bars at the left / top (SmolVLA)
            side = int(getattr(self.vision_encoder, "image_size", self.config.image_size))
            cams = [pad_resize(c.flatten(0, 1), side).unflatten(0, c.shape[:2]) for c in cams]
        if len({c.shape[-2:] for c in cams}) > 1:  # cameras of different sizes: resize to stack
            cams = [self.vision_encoder.resize(c.flatten(0, 1)).unflatten(0, c.shape[:2]) for c in cams]
        x = torch.stack(cams, dim=2)  # (B, T, K, 3, H, W)
        b, t, k = x.shape[:3]
        flat = x.flatten(0, 2)  # (B*T*K, 3, H, W)
        if self.training and self.config.random_shift > 0:
            flat = random_shift(flat, self.config.random_shift)  # (B*T*K, 3, H, W)
        kw = {}
        if self.film is not None and text_summary is not None:
            kw["film"] = self.film(text_summary).repeat_interleave(t * k, dim=0)  # (B*T*K, 2*Dv)
        if (self.config.freeze_vision or self.config.freeze_vlm) and not kw:
            with torch.no_grad():
                feats = self.vision_encoder(flat, **kw)  # (B*T*K, N, Dv)
        else:  # trainable, or frozen but FiLM-conditioned: gradients must reach the FiLM generator through it
            feats = self.vision_encoder(flat, **kw)  # (B*T*K, N, Dv)
        tokens = self.projector(feats)  # (B*T*K, N, H)
        tokens = tokens.unflatten(0, (b, t, k))  # (B, T, K, N, H)
        if self.camera_embed is not None:
            tokens = tokens + self.camera_embed[None, None, :, None, :]  # (B, T, K, N, H)
        if self.obs_step_embed is not None:
            tokens = tokens + self.obs_step_embed[None, :, None, None, :]  # (B, T, K, N, H)
        return tokens.flatten(1, 3)  # (B, T*K*N, H)

    def _state_tokens(self, batch: Mapping[str, Any]) -> torch.Tensor:
        key = "observation.state"
        if key not in batch:
            raise ModelInputError(f"the batch has no {key!r} but model.state_dim is {self.config.state_dim}; "
                                  f"give the state or set model.state_dim: 0")
        s = batch[key]
        if not isinstance(s, torch.Tensor):
            s = torch.as_tensor(np.asarray(s, dtype=np.float32))
        s = s.to(self.device, torch.float32, non_blocking=True)
        if s.shape[-1] != self.config.state_dim:
            raise ModelInputError(f"batch['observation.state'] has {s.shape[-1]} values per step but model.state_dim "
                                  f"is {self.config.state_dim}; set model.state_dim: {s.shape[-1]}")
        s = self._fit_time(s, 1, key)  # (B, T, S)
        tokens = self.state_proj(self.state_normalizer.normalize(s))  # (B, T, H)
        if self.obs_step_embed is not None:
            tokens = tokens + self.obs_step_embed  # (B, T, H)
        return tokens

    def _batch_size(self, batch: Mapping[str, Any]) -> int:
        x = batch[self.config.image_keys[0]] if self.config.image_keys[0] in batch else None
        if x is None:
            raise ModelInputError(f"the batch has no {self.config.image_keys[0]!r} (model.image_keys); "
                                  f"set model.image_keys to the dataset's camera keys")
        x = x if isinstance(x, torch.Tensor) else np.asarray(x)
        if x.ndim == 3:  # one unbatched image
            return 1
        return int(x.shape[0])

    def _tasks(self, batch: Mapping[str, Any], b: int) -> list[str]:
        task = batch.get("task")
        if task is None:
            return [""] * b
        if isinstance(task, str):
            return [task] * b
        task = list(task)
        if len(task) == 1 and b > 1:
            return task * b
        if len(task) != b:
            raise ModelInputError(f"batch['task'] has {len(task)} instructions for a batch of {b}; give one per sample")
        return [str(t) for t in task]

    def encode_modalities(self, batch: Mapping[str, Any],
                          text_summary: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every input modality as LM-space tokens: ``{"images": (B, Ni, H), "state": (B, T, H), ...}``.

        ``text_summary`` (B, H) conditions the vision encoder (FiLM) when the model has one.
        """
        tokens = {"images": self._image_tokens(batch, text_summary)}  # (B, Ni, H)
        if self.state_proj is not None:
            tokens["state"] = self._state_tokens(batch)  # (B, T, H)
        for name, enc in self.modality_encoders.items():
            tokens[name] = enc(batch)  # (B, n, H)
        return tokens

    def features(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The LM's final hidden state at the action query: (B, H)."""
        return self.features_and_context(batch)[0]

    def features_and_context(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(feature (B, H), {"context": (B, N, H), "context_mask": (B, N) bool})``: the action-query
        state and the LM's whole final hidden sequence (text, observations, query) with its padding mask,
        for heads that attend over tokens (``head.uses_context``)."""
        seq, attn, pos = self.input_sequence(batch)  # (B, N, H), (B, N) | None, (B, N) | None
        hidden = self.backbone(inputs_embeds=seq, attention_mask=attn, position_ids=pos)  # (B, N, H)
        mask = attn.bool() if attn is not None else torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        return hidden[:, -1], {"context": hidden, "context_mask": mask}  # (B, H), (B, N, H), (B, N)

    def input_sequence(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The LM's input: ``[text, observation tokens, action query]`` embeddings (B, N, H), with the
        attention mask and position ids (both None when no instruction is padded)."""
        if self.config.prompt_format == "openvla":
            return self._openvla_sequence(batch)
        if self.config.prompt_format == "smolvla":
            return self._smolvla_sequence(batch)
        b = self._batch_size(batch)
        ids, text_mask = self.text_cache(self._tasks(batch, b))  # (B, L), (B, L)
        ids, text_mask = ids.to(self.device, non_blocking=True), text_mask.to(self.device, non_blocking=True)
        text = self.backbone.embed(ids)  # (B, L, H)
        summary = None
        if self.film is not None:  # the instruction alone through the LM, mean-pooled: (B, H)
            m = text_mask.unsqueeze(-1).to(text.dtype)  # (B, L, 1)
            h = self.backbone(inputs_embeds=text, attention_mask=None if bool(text_mask.all()) else text_mask.long())
            summary = (h * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, H)
        tokens = self.encode_modalities(batch, summary)
        prefix = torch.cat(list(tokens.values()), dim=1)  # (B, P, H)
        text = text.to(prefix.dtype)  # (B, L, H)
        query = self.action_query.expand(b, -1, -1).to(prefix.dtype)  # (B, 1, H)
        # The instruction comes first: in a causal LM every observation token can then attend to it,
        # so visual features are conditioned on the words (which block?) from the first layer on.
        seq = torch.cat([text, prefix, query], dim=1)  # (B, L + P + 1, H)
        if bool(text_mask.all()):
            attn, pos = None, None  # no padding: plain causal attention
        else:
            ones = torch.ones(b, prefix.shape[1] + 1, dtype=torch.long, device=self.device)  # (B, P + 1)
            attn = torch.cat([text_mask.long(), ones], dim=1)  # (B, L + P + 1)
            pos = (attn.cumsum(dim=1) - 1).clamp_min(0)  # (B, L + P + 1): padding does not shift positions
        return seq, attn, pos

    def _smolvla_sequence(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SmolVLA's prefix: ``[image tokens * sqrt(H), instruction tokens * sqrt(H), state token]`` (B, N, H),
        its (B, N, N) bool attention mask (images and words attend to each other, padding out; the state token
        attends to them all, they not to it) and positions (B, N) (cumsum of the valid tokens - 1). The
        instruction gets a trailing newline and is tokenised as LeRobot's tokenizer step does (the tokenizer's
        special tokens, right padding, at most max_text_tokens)."""
        b = self._batch_size(batch)
        rows = []
        cache = self.__dict__.setdefault("_smolvla_ids", {})
        for task in self._tasks(batch, b):
            text = task if task.endswith("\n") else task + "\n"
            ids = cache.get(text)
            if ids is None:
                ids = list(self.tokenizer(text, truncation=True, max_length=self.config.max_text_tokens)["input_ids"])
                if len(cache) >= 50_000:
                    cache.clear()
                cache[text] = ids
            rows.append(ids)
        length = max(len(r) for r in rows)
        pad = self.text_cache.pad_id
        ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows], dtype=torch.long, device=self.device)
        text_valid = torch.tensor([[True] * len(r) + [False] * (length - len(r)) for r in rows], device=self.device)
        tokens = self.encode_modalities(batch)
        images = tokens.pop("images")  # (B, Ni, H)
        state = tokens.pop("state", None)  # (B, 1, H)
        hidden = images.shape[-1]
        scale = float(hidden) ** 0.5
        text = self.backbone.embed(ids).to(images.dtype) * scale  # (B, L, H)
        parts = [images * torch.tensor(scale, dtype=images.dtype, device=images.device)]
        parts += list(tokens.values())  # added modalities: with the images
        n_obs = sum(p.shape[1] for p in parts)
        parts.append(text)
        if state is not None:
            parts.append(state)
        seq = torch.cat(parts, dim=1)  # (B, N, H)
        n_state = state.shape[1] if state is not None else 0
        valid = torch.cat([torch.ones(b, n_obs, dtype=torch.bool, device=self.device), text_valid,
                           torch.ones(b, n_state, dtype=torch.bool, device=self.device)], dim=1)  # (B, N)
        block = torch.zeros(seq.shape[1], dtype=torch.long, device=self.device)
        block[seq.shape[1] - n_state:] = 1  # the state token starts a block the others cannot see
        block = block.cumsum(0)  # (N,)
        mask = (block[None, :] <= block[:, None])[None] & valid[:, None, :] & valid[:, :, None]  # (B, N, N)
        pos = valid.long().cumsum(dim=1) - 1  # (B, N)
        return seq, mask, pos

    def _openvla_sequence(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """OpenVLA's input: ``[BOS, observation tokens, prompt tokens, empty token]`` (B, N, H). Prompts of
        different lengths are left-padded after the observation tokens (masked out, positions not shifted), so
        every row ends at its own last prompt token, where the actions are read."""
        b = self._batch_size(batch)
        rows = []
        for task in self._tasks(batch, b):
            ids = list(self.text_cache.encode(OPENVLA_PROMPT.format(task=task.lower())))  # BOS first if any
            if self._prompt_end_id is not None and (not ids or ids[-1] != self._prompt_end_id):
                ids.append(self._prompt_end_id)  # OpenVLA's predict_action appends it (29871 for Llama 2)
            rows.append(ids)
        bos = self.text_cache.bos_id
        has_bos = bos is not None and all(r and r[0] == bos for r in rows)
        texts = [r[1:] if has_bos else r for r in rows]
        length = max(len(t) for t in texts)
        pad = self.text_cache.pad_id
        ids = torch.tensor([[pad] * (length - len(t)) + t for t in texts], dtype=torch.long, device=self.device)
        text_mask = torch.tensor([[0] * (length - len(t)) + [1] * len(t) for t in texts], dtype=torch.long,
                                 device=self.device)  # (B, L) left-padded
        tokens = self.encode_modalities(batch)
        prefix = torch.cat(list(tokens.values()), dim=1)  # (B, P, H)
        parts = [self.backbone.embed(ids[:, :1].new_full((b, 1), bos)).to(prefix.dtype)] if has_bos else []
        seq = torch.cat(parts + [prefix, self.backbone.embed(ids).to(prefix.dtype)], dim=1)  # (B, [1] + P + L, H)
        if bool(text_mask.all()):
            return seq, None, None  # no padding: plain causal attention
        ones = torch.ones(b, seq.shape[1] - length, dtype=torch.long, device=self.device)  # (B, [1] + P)
        attn = torch.cat([ones, text_mask], dim=1)  # (B, N)
        pos = (attn.cumsum(dim=1) - 1).clamp_min(0)  # (B, N): padding does not shift positions
        return seq, attn, pos

    def _head_kwargs(self, ctx: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return ctx if getattr(self.action_head, "uses_context", False) else {}

    # -- the policy interface ----------------------------------------------------------------
    def _targets(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if "action" not in batch:
            raise ModelInputError("the batch has no 'action'; training needs demonstrated actions "
                                  "(use predict_action_chunk for inference)")
        a = batch["action"]
        if not isinstance(a, torch.Tensor):
            a = torch.as_tensor(np.asarray(a, dtype=np.float32))
        a = a.to(self.device, torch.float32, non_blocking=True)
        if a.ndim == 2:
            a = a.unsqueeze(1)  # (B, 1, A)
        if a.ndim != 3:
            raise ModelInputError(f"batch['action'] has shape {tuple(a.shape)}; expected (B, chunk, A) or (B, A)")
        if a.shape[-1] != self.config.action_dim:
            raise ModelInputError(f"batch['action'] is {a.shape[-1]}-d but model.action_dim is "
                                  f"{self.config.action_dim}; set model.action_dim: {a.shape[-1]}")
        c = self.config.chunk_size
        if a.shape[1] < c:
            raise ModelInputError(f"batch['action'] has chunks of {a.shape[1]} steps but model.chunk_size is {c}; "
                                  f"load the data with chunk_size {c}")
        pad = batch.get("action_is_pad")
        if pad is not None:
            pad = torch.as_tensor(pad).to(self.device, non_blocking=True)
            if pad.ndim == 1:
                pad = pad.unsqueeze(1)  # (B, 1)
            pad = pad[:, :c].bool()  # (B, chunk)
        return a[:, :c], pad  # (B, chunk, A), (B, chunk)

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on a batch with ``action``: returns ``(loss, {"loss": ..., ...})``."""
        actions, is_pad = self._targets(batch)  # (B, chunk, A), (B, chunk)
        target = self.action_normalizer.normalize(actions)  # (B, chunk, A)
        if getattr(self.action_head, "uses_lm", False):  # action tokens: the LM itself predicts the actions
            loss, info = self.action_head.compute_loss_lm(self.backbone, *self.input_sequence(batch), target, is_pad)
        else:
            feats, ctx = self.features_and_context(batch)  # (B, H), {(B, N, H), (B, N)}
            loss, info = self.action_head.compute_loss(feats, target, is_pad, **self._head_kwargs(ctx))
        out = {"loss": float(loss.detach())}
        out.update({k: float(v) for k, v in info.items()})
        return loss, out

    @torch.no_grad()
    def predict_action_chunk(self, obs: Mapping[str, Any]) -> torch.Tensor:
        """Raw-unit actions (B, chunk, A) for observations (images in [0, 1], raw state, task strings)."""
        if getattr(self.action_head, "uses_lm", False):
            pred = self.action_head.predict_lm(self.backbone, *self.input_sequence(obs))  # (B, chunk, A) normalised
        else:
            feats, ctx = self.features_and_context(obs)  # (B, H), {(B, N, H), (B, N)}
            pred = self.action_head.predict(feats, **self._head_kwargs(ctx))  # (B, chunk, A) normalised
        return self.action_normalizer.unnormalize(pred.float())  # (B, chunk, A)

    @torch.no_grad()
    def select_action(self, obs: Mapping[str, Any]) -> torch.Tensor:
        """One action (B, A): runs ``n_action_steps`` of each predicted chunk before predicting again."""
        if self.config.n_obs_steps > 1:
            obs = self._with_history(obs)
        if self.config.temporal_ensemble_coeff is not None:  # ACT: a new chunk every step, averaged over time
            if self._ensembler is None:
                self._ensembler = TemporalEnsembler(self.config.temporal_ensemble_coeff, self.config.chunk_size)
            return self._ensembler.update(self.predict_action_chunk(obs))  # (B, A)
        if not self._action_queue:
            chunk = self.predict_action_chunk(obs)  # (B, chunk, A)
            self._action_queue.extend(chunk[:, : self.config.n_action_steps].transpose(0, 1))  # n x (B, A)
        return self._action_queue.popleft()  # (B, A)

    def _with_history(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        keys = list(self.config.image_keys) + (["observation.state"] if self.config.state_dim > 0 else [])
        out = dict(obs)
        for key in keys:
            if key not in obs:
                continue
            x = obs[key]
            x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
            hist = self._obs_history.setdefault(key, deque(maxlen=self.config.n_obs_steps))
            if not hist:
                hist.extend([x] * self.config.n_obs_steps)  # the first frame fills the history
            else:
                hist.append(x)
            out[key] = torch.stack(list(hist), dim=1)  # (B, T, ...)
        return out

    def reset(self) -> None:
        """Forget queued actions and observation history (call at the start of each episode)."""
        self._action_queue.clear()
        self._obs_history.clear()
        if self._ensembler is not None:
            self._ensembler.reset()

    def configure_inference(self, **changes: Any) -> "VLAModel":
        """Change how a trained model turns predictions into actions, without retraining (as LeRobot's
        ``--policy.n_action_steps`` / ``temporal_ensemble_coeff`` at evaluation):

        ``n_action_steps`` (actions executed from each chunk), ``temporal_ensemble_coeff`` (ACT's ensembling;
        ``None`` = off; a negative coefficient weighs the newer predictions more), ``num_inference_steps`` and
        ``use_ddim`` (diffusion / flow sampling). The config is validated and saved with the model afterwards.
        """
        unknown = sorted(set(changes) - set(INFERENCE_FIELDS))
        if unknown:
            raise ModelInputError(f"configure_inference cannot change {', '.join(unknown)} of a trained model; "
                                  f"the inference settings are: {', '.join(INFERENCE_FIELDS)}")
        cfg = self.config.replace(**changes)  # validates (e.g. n_action_steps <= chunk_size)
        head = self.action_head
        sampling = {k: changes[k] for k in ("num_inference_steps", "use_ddim") if k in changes}
        if sampling:
            if hasattr(head, "num_inference_steps"):  # diffusion: DDPM / DDIM sampling settings
                if "num_inference_steps" in sampling:
                    head._check_steps(int(sampling["num_inference_steps"]), head.num_diffusion_steps)
                    head.num_inference_steps = int(sampling["num_inference_steps"])
                if "use_ddim" in sampling:
                    head.use_ddim = bool(sampling["use_ddim"])
            elif hasattr(head, "num_steps") and set(sampling) == {"num_inference_steps"}:  # flow: Euler steps
                head.num_steps = int(sampling["num_inference_steps"])
            else:
                raise ModelInputError(f"{', '.join(sampling)} applies to sampling heads (diffusion, flow), not "
                                      f"{cfg.action_head!r}; leave it out")
        self.config = cfg
        self._ensembler = None  # rebuilt with the new coefficient on the next select_action
        self.reset()
        return self

    def prepare_observation(self, env_obs: Mapping[str, Any], instruction: str | list[str] = "") -> dict[str, Any]:
        """An environment observation -> a batch for ``select_action``, on the model's device.

        ``env_obs``: ``{"pixels": uint8 (H, W, 3) or {camera: (H, W, 3)}, "agent_pos": float (S,)}``
        (a leading batch dimension is kept); keys already named ``observation.*`` pass through.
        """
        batch: dict[str, Any] = {}
        pixels = env_obs.get("pixels")
        if isinstance(pixels, Mapping):
            for cam, img in pixels.items():
                batch[f"observation.images.{cam}"] = _image_batch(img)
        elif pixels is not None:
            batch[self.config.image_keys[0]] = _image_batch(pixels)
        state = env_obs.get("agent_pos", env_obs.get("state"))
        if state is not None:
            s = torch.as_tensor(np.asarray(state, dtype=np.float32))
            batch["observation.state"] = s.unsqueeze(0) if s.ndim == 1 else s  # (B, S)
        for k, v in env_obs.items():
            if k.startswith("observation."):
                batch[k] = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
        batch = {k: v.to(self.device) for k, v in batch.items()}
        b = next(iter(batch.values())).shape[0] if batch else 1
        batch["task"] = [instruction] * b if isinstance(instruction, str) else list(instruction)
        return batch

    # -- save / load --------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``model.safetensors``, ``config.json``, the tokenizer files and the backbones' HF configs."""
        from safetensors.torch import save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".model.safetensors.tmp-{os.getpid()}"
        save_model(self, str(tmp), metadata={"format": "pt", "producer": "vla_engine"})
        os.replace(tmp, d / "model.safetensors")
        (d / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        self.tokenizer.save_pretrained(str(d))
        self.backbone.hf_config.save_pretrained(str(d / "llm"))
        vision_hf = getattr(self.vision_encoder, "hf_config", None)
        if vision_hf is not None:
            vision_hf.save_pretrained(str(d / "vision"))
        return d

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                        unnorm_key: str | None = None) -> "VLAModel":
        """Rebuild a model saved with ``save_pretrained`` (no hub, no pretrained files needed).

        A published OpenVLA folder (``openvla/openvla-7b`` format, ``model_type: openvla``) loads too, as an
        ``OpenVLAWrapper`` (``models/convert_openvla.py``); ``unnorm_key`` picks its dataset statistics. So does
        a LeRobot SmolVLA policy folder (``type: smolvla``), as a ``SmolVLAWrapper`` (``models/convert_smolvla.py``)."""
        d = Path(directory)
        if not d.is_dir():
            raise CheckpointError(f"checkpoint folder {d} does not exist; give a folder written by save_pretrained")
        cfg_file = d / "config.json"
        if not cfg_file.exists():
            raise CheckpointError(f"checkpoint {d} has no config.json; it was not written by VLAModel.save_pretrained")
        try:
            data = json.loads(cfg_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"checkpoint {cfg_file} is unreadable or not valid JSON ({_first_line(e)})") from None
        from .convert_openvla import is_openvla_config, load_openvla
        from .convert_smolvla import is_smolvla_config, load_smolvla

        if is_openvla_config(data):
            return load_openvla(d, unnorm_key=unnorm_key, cls=cls, map_location=map_location)
        if is_smolvla_config(data):
            if unnorm_key is not None:
                raise CheckpointError(f"unnorm_key applies to OpenVLA folders; {d} is a LeRobot SmolVLA policy")
            return load_smolvla(d, cls=cls, map_location=map_location)
        if unnorm_key is not None:
            raise CheckpointError(f"unnorm_key applies to OpenVLA folders; {d} is a vla_engine checkpoint")
        try:
            cfg = ModelConfig.from_dict(data)
        except ConfigError as e:
            raise CheckpointError(f"checkpoint {cfg_file} does not fit this version of vla_engine ({e})") from None
        weights = d / "model.safetensors"
        if not weights.exists():
            raise CheckpointError(f"checkpoint {d} has no model.safetensors; the save did not finish, use another checkpoint")
        tf = _import_transformers()
        try:
            tokenizer = tf.AutoTokenizer.from_pretrained(str(d), trust_remote_code=False)
        except Exception as e:  # noqa: BLE001
            if cfg.llm_pretrained is not None:
                raise CheckpointError(f"checkpoint {d} has no readable tokenizer files ({_first_line(e)})") from None
            log.warning("checkpoint %s has no tokenizer files; using the byte-level tokenizer", d)
            tokenizer = build_byte_tokenizer()
        hf = {}
        for part in ("llm", "vision"):
            if (d / part / "config.json").exists():
                try:
                    hf[part] = tf.AutoConfig.from_pretrained(str(d / part), trust_remote_code=False)
                except Exception as e:  # noqa: BLE001
                    raise CheckpointError(f"checkpoint {d}/{part}/config.json is corrupt ({_first_line(e)})") from None
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model._build(cfg, tokenizer=tokenizer, llm_hf_config=hf.get("llm"), vision_hf_config=hf.get("vision"),
                     rebuild=True)
        _load_weights(model, weights, map_location)
        return model.eval()  # like transformers: a loaded model is ready for inference


OPENVLA_PROMPT = "In: What action should the robot take to {task}?\nOut:"


def _empty_token_id(tokenizer: Any) -> int | None:
    """The SentencePiece word-start token alone ("\u2581", id 29871 in Llama 2), which OpenVLA appends to its
    prompt; None when the tokenizer has no such token."""
    try:
        i = tokenizer.convert_tokens_to_ids("\u2581")
    except Exception:  # noqa: BLE001 - a tokenizer without a vocabulary lookup
        return None
    if i is None or i == getattr(tokenizer, "unk_token_id", None):
        return None
    return int(i)


def _image_batch(img: Any) -> torch.Tensor:
    x = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(img))
    if x.ndim == 3:
        x = x.unsqueeze(0)  # (1, H, W, 3) or (1, 3, H, W)
    if x.ndim != 4:
        raise ModelInputError(f"pixels have shape {tuple(x.shape)}; expected (H, W, 3) or (B, H, W, 3)")
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)  # (B, 3, H, W)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()  # (B, 3, H, W) in [0, 1]


def _load_weights(model: nn.Module, path: Path, map_location: str | torch.device = "cpu") -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    try:
        load_model(model, str(path), strict=True, device=str(map_location))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {path} is corrupt or does not match the model "
                              f"({_first_line(e)}); re-save it or use another checkpoint") from None


def _head_fields(head: nn.Module) -> dict[str, Any]:
    """The ModelConfig fields a hand-built action head stands for (so save/load rebuilds it)."""
    if not isinstance(head, ActionHead) and not (hasattr(head, "compute_loss") and hasattr(head, "predict")):
        raise ConfigError(f"action_head {type(head).__name__} lacks compute_loss/predict; subclass "
                          f"vla_engine.models.heads.ActionHead")
    fields = dict(head.config_fields()) if hasattr(head, "config_fields") else {}
    if fields.get("action_head") not in ACTION_HEADS:
        log.warning("action head %s is not in the ACTION_HEADS registry; from_pretrained cannot rebuild it by name",
                    type(head).__name__)
        fields.pop("action_head", None)
    if "action_dim" not in fields and hasattr(head, "action_dim"):
        fields["action_dim"] = int(head.action_dim)
    if "chunk_size" not in fields and hasattr(head, "chunk_size"):
        fields["chunk_size"] = int(head.chunk_size)
    return fields


def create_vla_model(vlm: str = "tiny", action_head: str = "mlp", action_dim: int = 2, state_dim: int = 0,
                     vision_encoder: str | None = None, llm: str | None = None,
                     use_gradient_checkpointing: bool = False, **overrides: Any) -> VLAModel:
    """A VLA from a named default ("tiny", "small", "siglip-tiny", "smolvlm", "qwen2-vl-tiny", "resnet18"),
    a well-known hub name (small offline stand-in) or a local LM folder; any ModelConfig field can be overridden."""
    fields = resolve_vlm(vlm)
    fields.update(action_head=action_head, action_dim=action_dim, state_dim=state_dim,
                  use_gradient_checkpointing=use_gradient_checkpointing)
    if vision_encoder is not None:
        fields["vision_encoder"] = vision_encoder
    if llm is not None:
        fields["llm"] = llm
    fields.update(overrides)
    return VLAModel(ModelConfig.from_dict(fields))
