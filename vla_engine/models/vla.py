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

Around the model: named defaults and ``vlm`` names (``models/vlm_presets.py``), batch parsing
(``models/inputs.py``), the prompt builders (``models/prompts.py``), image augmentation
(``models/augment.py``), checkpoint folders (``models/checkpoint.py``, foreign formats in
``models/formats.py``) and LoRA adapters (``models/lora.py``). Their public names are importable from here too.

Training decisions are applied to a built model, not configured in it: ``freeze_vision()`` /
``freeze_vlm()`` and ``add_lora()`` (the trainer calls them as the training config says). The adapters
a model has are its state, ``model.lora_spec``, saved with its checkpoints.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..config.base import ConfigError
from ..config.model_config import (HEAD_INFERENCE_FIELDS, INFERENCE_FIELDS, SLOTS, LoRASpec, ModelConfig,
                                   read_model_dict)
from ..errors import CheckpointError  # one CheckpointError for the whole engine
from ..registry import ACTION_HEADS, LANGUAGE_MODELS, PROJECTORS, VISION_ENCODERS
from . import checkpoint, lora
from .augment import pad_resize, random_shift
from .configuration_heads import HeadCapabilities
from .ensemble import TemporalEnsembler
from .heads import ACTION_LOSSES, ActionHead
from .inspect import check_buildable
from .inputs import ModelInputError, action_targets, fit_time, image_batch, image_tensor
from .language import TextTokenCache, load_tokenizer
from .normalize import NormalizationError, Normalizer
from .parts import part_config_class
from .prompts import OPENVLA_PROMPT, empty_token_id, input_sequence
from .vlm_presets import PRESET_DESCRIPTIONS, VLM_PRESETS, WELL_KNOWN_VLMS, list_vlm_presets, resolve_vlm

log = logging.getLogger(__name__)

__all__ = ["VLAModel", "create_vla_model", "CheckpointError", "ModelInputError", "VLM_PRESETS",
           "PRESET_DESCRIPTIONS", "WELL_KNOWN_VLMS", "list_vlm_presets", "resolve_vlm", "pad_resize", "random_shift",
           "OPENVLA_PROMPT", "LoRASpec"]


class VLAModel(nn.Module):
    """A vision-language-action policy (see the module docstring for the data flow).

    Args:
        config: a ``ModelConfig`` (or a dict of its fields); default: the "tiny" CPU model.
        vlm_name_or_path: a named default ("tiny", "smolvlm", ...), a well-known hub name (mapped to
            a small offline stand-in with a warning), or a local language-model folder (loaded with
            ``from_pretrained``).
        action_head: an action head module (e.g. ``MLPActionHead(...)``); its sizes go into the config.
        freeze_vision, freeze_vlm: call ``freeze_vision()`` / ``freeze_vlm()`` once built (``None``: not frozen).
        **config_overrides: any ``ModelConfig`` field, e.g. ``action_dim=7, chunk_size=4``.
    """

    def __init__(self, config: ModelConfig | Mapping[str, Any] | None = None, *, vlm_name_or_path: str | None = None,
                 action_head: nn.Module | str | None = None, freeze_vision: bool | None = None,
                 freeze_vlm: bool | None = None, **config_overrides: Any):
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
            fields = _with_part(fields, "action_head", action_head)
            action_head = None
        if action_head is not None:
            fields.update(_head_fields(action_head))
        fields.update(config_overrides)
        # freeze_* in a dict of fields (as earlier versions took them) act as the keywords
        freeze = {k: fields.pop(k) for k in ("freeze_vision", "freeze_vlm") if k in fields}
        freeze_vision = freeze.get("freeze_vision") if freeze_vision is None else freeze_vision
        freeze_vlm = freeze.get("freeze_vlm") if freeze_vlm is None else freeze_vlm
        cfg, adapters = read_model_dict(fields)  # lora_* fields of an earlier version: the adapters to add
        self._build(cfg, action_head=action_head)
        if adapters is not None:
            lora.apply_lora_spec(self, adapters)
        if freeze_vision:
            self.freeze_vision(True)
        if freeze_vlm:
            self.freeze_vlm(True)

    # -- construction ------------------------------------------------------------------------
    def _build(self, cfg: ModelConfig, action_head: nn.Module | None = None, tokenizer: Any = None,
               llm_hf_config: Any = None, vision_hf_config: Any = None, rebuild: bool = False) -> None:
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.llm_pretrained)
        check_buildable(cfg, len(self.tokenizer))  # a size that cannot fit is refused before any allocation
        self.text_cache = TextTokenCache(self.tokenizer, cfg.max_text_tokens)
        self._prompt_end_id = empty_token_id(self.tokenizer) if cfg.prompt_format == "openvla" else None
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
        if cfg.vision is not None and cfg.vision.uses_film:  # the encoder's settings offer FiLM and turn it on
            self.film = nn.Linear(hidden, 2 * self.vision_encoder.film_channels)  # text summary -> (scale, shift)
            nn.init.zeros_(self.film.weight)  # starts as the identity: no conditioning until learned
            nn.init.zeros_(self.film.bias)
        if action_head is None:
            action_head = ACTION_HEADS.get(cfg.action_head).from_config(cfg, input_dim=hidden)
        elif isinstance(action_head, ActionHead):
            action_head.set_input_dim(hidden)
        self.action_head = action_head
        self.head_caps = head_caps(action_head)  # what the head declared it needs
        if self.head_caps.attaches_lm:  # e.g. action tokens: extend the LM's vocabulary (or use its tail)
            action_head.attach_backbone(self.backbone, self.tokenizer)
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
        vision = cfg.vision
        if self.vision_encoder.hf_config is not None and vision.dim != self.vision_encoder.out_dim:
            vision = vision.replace(dim=self.vision_encoder.out_dim)  # transformers towers: their own width
            actual["vision"] = vision
        self.config = cfg.replace(**actual) if actual and any(getattr(cfg, k) != v for k, v in actual.items()) else cfg

        self._action_queue: deque[torch.Tensor] = deque()
        self._obs_history: dict[str, deque] = {}
        self._ensembler: TemporalEnsembler | None = None
        # model state beside the config: which parts are frozen, which adapters there are
        self._freeze_vision = False
        self._freeze_vlm = False
        self.lora_spec: LoRASpec | None = None
        self._apply_freezing()

    # -- freezing, modes ---------------------------------------------------------------------
    @property
    def vision_frozen(self) -> bool:
        """Whether the vision encoder is frozen (``freeze_vision()`` or ``freeze_vlm()``): it then runs
        without gradients and in eval mode."""
        return self._freeze_vision or self._freeze_vlm

    @property
    def vlm_frozen(self) -> bool:
        """Whether the vision encoder and the language model are frozen (``freeze_vlm()``)."""
        return self._freeze_vlm

    def _apply_freezing(self) -> None:
        """``requires_grad`` of every part from the freeze flags and the adapters."""
        vision_frozen = self.vision_frozen
        for p in self.vision_encoder.parameters():
            p.requires_grad_(not vision_frozen)
        spec = self.lora_spec  # LoRA: the LM's base weights stay frozen, only its adapters train
        for name, p in self.backbone.named_parameters():
            p.requires_grad_(("lora_" in name) if spec is not None else not self._freeze_vlm)
        if spec is not None and spec.scope != "lm":  # adapted projector / FiLM / head (/ vision): their bases freeze
            for part in lora.scope_parts(spec.scope):
                mod = getattr(self, part, None)
                if part == "vision_encoder" and vision_frozen:
                    continue  # freeze_vision wins: the vision adapters freeze too
                for name, p in (mod.named_parameters() if isinstance(mod, nn.Module) else ()):
                    p.requires_grad_(lora.policy_part_trainable(name))
        self.train(self.training)

    def freeze_vision(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the vision encoder."""
        self._freeze_vision = bool(frozen)
        self._apply_freezing()

    def freeze_vlm(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the vision encoder and the language model; projector, state and
        action-query tokens and the action head stay trainable."""
        self._freeze_vlm = bool(frozen)
        self._apply_freezing()

    def set_action_loss(self, kind: str) -> None:
        """Train the action head with ``kind`` ("mse", "l1", "smooth_l1"); the config records it, so checkpoints
        say what was trained (a training config given ``action_loss`` calls this)."""
        if kind not in ACTION_LOSSES:
            raise ConfigError(f"action_loss {kind!r} is not known; choose one of: {', '.join(ACTION_LOSSES)}")
        if self.head_caps.regression_loss:
            self.action_head.action_loss = kind
        self.config = self.config.replace(action_loss=kind)

    def gradient_checkpointing_enable(self) -> None:
        """Recompute the language model's activations in the backward pass (saves memory). A training
        decision (``training.gradient_checkpointing``), so it is model state, not part of the config."""
        self.backbone.gradient_checkpointing_enable()

    def add_lora(self, r: int = 16, alpha: int = 32, dropout: float = 0.05,
                 target_modules: list[str] | None = None, scope: str = "lm") -> "VLAModel":
        """LoRA adapters (peft) on the language model's ``target_modules`` (default q/k/v/o projections):
        the LM's base weights freeze, the adapters and the non-LM parts train; ``model.lora_spec`` records them.
        ``scope="policy"``: adapters on the projector, FiLM and action head's linear layers as well;
        ``scope="all"``: on the vision encoder's conv and linear layers too."""
        return lora.apply_lora(self, r, alpha, dropout, target_modules, scope=scope)

    def merge_lora(self) -> "VLAModel":
        """Fold the LoRA adapters into the language model's weights (plain weights, ``lora_spec`` None)."""
        return lora.merge_lora(self)

    def train(self, mode: bool = True) -> "VLAModel":
        super().train(mode)
        if mode and hasattr(self, "_freeze_vlm"):  # frozen parts keep eval behaviour (dropout off, fixed norms)
            if self.vision_frozen:
                self.vision_encoder.eval()
            if self._freeze_vlm and self.lora_spec is None:  # with LoRA its adapters train (dropout, checkpointing on)
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
    def _image_tokens(self, batch: Mapping[str, Any], text_summary: torch.Tensor | None = None) -> torch.Tensor:
        t_obs = self.config.n_obs_steps
        cams = [image_tensor(batch, k, self.device, t_obs) for k in self.config.image_keys]  # K x (B, T, 3, H, W)
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
        if self.vision_frozen and not kw:
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
        s = fit_time(s, 1, key, self.config.n_obs_steps)  # (B, T, S)
        tokens = self.state_proj(self.state_normalizer.normalize(s))  # (B, T, H)
        if self.obs_step_embed is not None:
            tokens = tokens + self.obs_step_embed  # (B, T, H)
        return tokens

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
        for heads that attend over tokens (``capabilities.inputs == "tokens"``)."""
        seq, attn, pos = self.input_sequence(batch)  # (B, N, H), (B, N) | None, (B, N) | None
        hidden = self.backbone(inputs_embeds=seq, attention_mask=attn, position_ids=pos)  # (B, N, H)
        mask = attn.bool() if attn is not None else torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        return hidden[:, -1], {"context": hidden, "context_mask": mask}  # (B, H), (B, N, H), (B, N)

    def input_sequence(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The LM's input for ``config.prompt_format`` (``models/prompts.py``): embeddings (B, N, H), the
        attention mask and position ids (None when nothing is padded)."""
        return input_sequence(self, batch)

    def _head_kwargs(self, ctx: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return ctx if self.head_caps.inputs == "tokens" else {}

    # -- the policy interface ----------------------------------------------------------------
    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on a batch with ``action``: returns ``(loss, {"loss": ..., ...})``."""
        actions, is_pad = action_targets(batch, self.config.action_dim, self.config.chunk_size,
                                         self.device)  # (B, chunk, A), (B, chunk)
        target = self.action_normalizer.normalize(actions)  # (B, chunk, A)
        if self.head_caps.inputs == "lm":  # e.g. action tokens: the LM itself predicts the actions
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
        if self.head_caps.inputs == "lm":
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
        sampling = {k: changes.pop(k) for k in HEAD_INFERENCE_FIELDS if k in changes}
        cfg = self.config.replace(**changes)  # validates (e.g. n_action_steps <= chunk_size)
        if sampling:  # the head declares which sampling settings it has (diffusion: steps and DDIM; flow: steps)
            if not set(sampling) <= set(self.head_caps.sampling_settings):
                raise ModelInputError(f"{', '.join(sampling)} applies to sampling heads (diffusion, flow), not "
                                      f"{cfg.action_head!r}; leave it out")
            cfg = cfg.replace(head=cfg.head.replace(**sampling))  # validates (e.g. steps <= training steps)
            self.action_head.configure_sampling(**sampling)
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
                batch[f"observation.images.{cam}"] = image_batch(img)
        elif pixels is not None:
            batch[self.config.image_keys[0]] = image_batch(pixels)
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

    # -- save / load (models/checkpoint.py) --------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``model.safetensors``, ``config.json`` (the config, and ``"adapters"`` when the model has LoRA
        adapters), the tokenizer files and the backbones' HF configs."""
        return checkpoint.save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                        unnorm_key: str | None = None) -> "VLAModel":
        """Rebuild a model saved with ``save_pretrained`` (no hub, no pretrained files needed), its adapters
        included. A published OpenVLA folder loads too, as an ``OpenVLAWrapper`` (``unnorm_key`` picks its
        dataset statistics), and a LeRobot SmolVLA policy folder as a ``SmolVLAWrapper`` (``models/formats.py``)."""
        return checkpoint.load_pretrained(cls, directory, map_location, unnorm_key=unnorm_key)


def _with_part(fields: dict[str, Any], part: str, name: str) -> dict[str, Any]:
    """``fields`` (a named default's) with ``part`` (e.g. "action_head") set to ``name``: the part settings it
    gives (``head``) carry over where the chosen part has them (e.g. ``hidden_dim``); the others were its own."""
    fields = dict(fields)
    sub, registry = next((s, r) for p, s, r, _, _ in SLOTS if p == part)
    if fields.get(part, ModelConfig.__dataclass_fields__[part].default) != name and isinstance(fields.get(sub), dict):
        cls = part_config_class(registry, name) if name in registry else None
        own = set(cls.field_names()) if cls is not None else set()
        fields[sub] = {k: v for k, v in fields[sub].items() if k in own}
    fields[part] = name
    return fields


def head_caps(head: nn.Module) -> HeadCapabilities:
    """What ``head`` declared it needs; a head that is no ActionHead (only compute_loss / predict) reads the
    pooled feature."""
    return head.capabilities if isinstance(head, ActionHead) else HeadCapabilities()


def _head_fields(head: nn.Module) -> dict[str, Any]:
    """The ModelConfig fields a hand-built action head stands for (so save/load rebuilds it)."""
    if not isinstance(head, ActionHead) and not (hasattr(head, "compute_loss") and hasattr(head, "predict")):
        raise ConfigError(f"action_head {type(head).__name__} lacks compute_loss/predict; subclass "
                          f"vla_engine.models.heads.ActionHead")
    if not isinstance(head, ActionHead):
        log.warning("action head %s is no ActionHead; from_pretrained cannot rebuild it by name", type(head).__name__)
        return {}
    fields = dict(head.config_fields())
    if fields.get("action_head") not in ACTION_HEADS:
        log.warning("action head %s is not in the ACTION_HEADS registry; from_pretrained cannot rebuild it by name",
                    type(head).__name__)
        fields.pop("action_head", None)
        fields.pop("head", None)  # its settings are for a head the config cannot name
    return fields


def create_vla_model(vlm: str = "tiny", action_head: str = "mlp", action_dim: int = 2, state_dim: int = 0,
                     vision_encoder: str | None = None, llm: str | None = None,
                     use_gradient_checkpointing: bool = False, **overrides: Any) -> VLAModel:
    """A VLA from a named default ("tiny", "small", "siglip-tiny", "smolvlm", "qwen2-vl-tiny", "resnet18"),
    a well-known hub name (small offline stand-in) or a local LM folder; any ModelConfig field can be overridden,
    and ``freeze_vision`` / ``freeze_vlm`` are passed to the ``VLAModel`` constructor."""
    fields = _with_part(resolve_vlm(vlm), "action_head", action_head)
    fields.update(action_dim=action_dim, state_dim=state_dim)
    if vision_encoder is not None:
        fields = _with_part(fields, "vision_encoder", vision_encoder)
    if llm is not None:
        fields["llm"] = llm
    fields.update(overrides)
    model = VLAModel(fields)
    if use_gradient_checkpointing:  # the seed's keyword; in a run, training.gradient_checkpointing
        model.gradient_checkpointing_enable()
    return model
