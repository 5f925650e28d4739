"""Two well-known VLA recipes as ``VLAModel`` configurations, built by name with keywords for their parts.

``SmolVLAWrapper`` (Shukor et al. 2025, SmolVLA): a SmolVLM backbone (Idefics3: SigLIP + pixel-shuffle
connector + SmolLM2) cut to its first layers (SmolVLA keeps half), the vision encoder frozen, and an
action expert that turns noise into an action chunk by flow matching, attending to the VLM's hidden
states (``FlowMatchingActionHead``); the diffusion head can stand in for it.

``OpenVLAWrapper`` (Kim et al. 2024, OpenVLA): fused DINOv2 + SigLIP patch features
(``DinoSiglipEncoder``), an MLP projector, a Llama-family LM and discrete action tokens (256 bins
per dimension) predicted through the LM's vocabulary (``ActionTokenHead``); any head can replace the
tokens (e.g. ``DiffusionActionHead``).

Both build small and offline by default, and load real parts from local folders when given (a SmolVLM
folder; DINOv2, SigLIP and Llama folders). They are VLAModels: ``save_pretrained`` / ``from_pretrained``,
trainers, the evaluator and the app use them unchanged; ``from_pretrained`` returns the wrapper class.

What loads:

* ``SmolVLAWrapper(folder)``: a SmolVLM (Idefics3) folder saved with ``save_pretrained``, cut to its first
  layers; the action expert starts fresh.
* ``SmolVLAWrapper.from_lerobot(folder, vlm=None)`` (also ``VLAModel.from_pretrained(folder)``): a LeRobot SmolVLA
  policy folder (the ``lerobot/smolvla_base`` format of lerobot 0.4: ``config.json`` with ``type: smolvla``,
  ``model.safetensors``, the policy processors' normalisation files), every weight mapped and loaded strictly; it
  computes what LeRobot's ``SmolVLAPolicy`` does (padded-resize images, SmolVLM connector tokens and instruction
  scaled by sqrt(H), the state token, the action expert interleaving self- and cross-attention to the VLM's
  keys / values, Euler flow matching from t = 1). The VLM's config and tokenizer come from ``vlm`` or the
  config's ``vlm_model_name`` (local or cached). See ``models/convert_smolvla.py``.
* ``OpenVLAWrapper(dinov2=..., siglip=..., llm=...)``: separate DINOv2, SigLIP and Llama folders (transformers
  format); projector and action rows start fresh.
* ``OpenVLAWrapper.from_openvla(folder, unnorm_key=None)`` (also ``VLAModel.from_pretrained(folder)``): a
  published OpenVLA checkpoint folder, the Hugging Face ``openvla/openvla-7b`` format (``config.json`` with
  ``model_type: openvla``, ``model.safetensors`` or shards, tokenizer files), every weight mapped from its timm
  towers and Llama and loaded strictly; it predicts as OpenVLA's ``predict_action`` does (second-to-last-block
  features, fused-gelu-mlp projector, its prompt, 7 greedy tokens from the vocabulary's tail, q01 / q99
  un-normalisation of the ``unnorm_key`` dataset). See ``models/convert_openvla.py``. Saved again with
  ``save_pretrained``, it reloads as an ordinary vla_engine checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config.base import ConfigError
from .formats import CHECKPOINT_FORMATS
from .inputs import ModelInputError
from .vla import VLAModel
from .vlm_presets import resolve_vlm

log = logging.getLogger(__name__)

SMOLVLA_DEFAULTS: dict[str, Any] = dict(
    vision_encoder="smolvlm", llm="smolvlm", vision={"dim": 64, "num_layers": 2, "num_heads": 4, "patch_size": 16},
    llm_hidden_size=128, llm_num_layers=2, llm_num_heads=4, llm_intermediate_size=256,
    action_head="flow", chunk_size=8, n_action_steps=8, head={"hidden_dim": 128, "num_layers": 2, "num_inference_steps": 10},
)

OPENVLA_DEFAULTS: dict[str, Any] = dict(
    vision_encoder="dinosiglip", vision={"dim": 64, "num_layers": 2, "num_heads": 4, "patch_size": 16},
    projector="mlp", llm="llama", llm_hidden_size=128, llm_num_layers=2, llm_num_heads=4, llm_intermediate_size=256,
    action_head="tokens", head={"bins": 256}, chunk_size=1, n_action_steps=1,
)


def _text_layers(folder: str) -> int | None:
    """Decoder layers of a local VLM / LM folder's language model (None when it cannot be read)."""
    p = Path(folder).expanduser() / "config.json"
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    text = data.get("text_config") or data
    n = text.get("num_hidden_layers")
    return int(n) if n else None


class SmolVLAWrapper(VLAModel):
    """SmolVLA: SmolVLM cut to its first layers + frozen vision + a flow-matching action expert.

    Args:
        vlm_name_or_path: a local SmolVLM folder (saved with ``save_pretrained``) or a cached hub id; None
            (or a hub name that is not available offline) builds the small offline SmolVLM.
        action_head: "flow" (default), "diffusion", or a head module.
        num_vlm_layers: decoder layers kept (default: half of the LM's, as SmolVLA does; 0 keeps all).
        freeze_vision: freeze the vision tower once built (SmolVLA trains with it frozen; a training config's
            ``freeze_vision`` decides it for a run).
        **overrides: any ModelConfig field (``action_dim``, ``chunk_size``, ``state_dim``, ...).
    """

    def __init__(self, vlm_name_or_path: str | None = None, action_head: nn.Module | str | None = None, *,
                 num_vlm_layers: int | None = None, freeze_vision: bool = True, **overrides: Any):
        fields = dict(SMOLVLA_DEFAULTS)
        if vlm_name_or_path is not None:
            resolved = resolve_vlm(str(vlm_name_or_path))
            if resolved.get("llm") != "smolvlm":
                log.warning("%r is not a SmolVLM; SmolVLAWrapper builds the small offline SmolVLM instead",
                            vlm_name_or_path)
            else:
                fields.update(resolved)
        if action_head is None:
            action_head = fields.pop("action_head")
        else:
            fields.pop("action_head")
        fields.update(overrides)
        pretrained = fields.get("llm_pretrained")
        total = _text_layers(pretrained) if pretrained else int(fields["llm_num_layers"])
        if num_vlm_layers is None:
            num_vlm_layers = max(1, (total or 2) // 2)
        if num_vlm_layers < 0:
            raise ConfigError(f"num_vlm_layers must be >= 0 (0 keeps all layers), got {num_vlm_layers}")
        if pretrained:
            fields["llm_layers"] = int(num_vlm_layers)
        elif num_vlm_layers:
            fields["llm_num_layers"] = int(num_vlm_layers)  # from scratch: build only the kept layers
        super().__init__(fields, action_head=action_head, freeze_vision=freeze_vision)

    @classmethod
    def from_lerobot(cls, folder: str, vlm: str | None = None, map_location: str = "cpu") -> "SmolVLAWrapper":
        """A LeRobot SmolVLA policy folder (``lerobot/smolvla_base`` format) as this wrapper, acting like LeRobot's
        ``SmolVLAPolicy``; ``vlm``: the folder of the SmolVLM it was built on (default: its ``vlm_model_name``,
        local or in the HF cache), for the VLM config and tokenizer. Errors are one-line ``CheckpointError``s."""
        return CHECKPOINT_FORMATS.get("smolvla").load(folder, vlm=vlm, cls=cls, map_location=map_location)

    @torch.no_grad()
    def predict_action_chunk(self, obs: Any, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Raw-unit actions (B, chunk, A); ``noise`` (B, chunk, max_action_dim) fixes the flow-matching start
        (the smolvla-expert head; LeRobot's ``noise=``)."""
        if noise is None:
            return super().predict_action_chunk(obs)
        if not self.head_caps.takes_noise:
            raise ModelInputError(f"noise= needs the smolvla-expert head; this model's head is "
                                  f"{type(self.action_head).__name__}")
        pred = self.action_head.predict_lm(self.backbone, *self.input_sequence(obs), noise=noise.to(self.device))
        return self.action_normalizer.unnormalize(pred.float())  # (B, chunk, A)

    @torch.no_grad()
    def select_action(self, obs: Any, noise: torch.Tensor | None = None) -> torch.Tensor:
        """One action (B, A), as ``VLAModel.select_action``; ``noise`` is used when a new chunk is predicted."""
        if noise is not None and not self._action_queue and self.config.n_obs_steps == 1 \
                and self.config.temporal_ensemble_coeff is None:
            chunk = self.predict_action_chunk(obs, noise)  # (B, chunk, A)
            self._action_queue.extend(chunk[:, : self.config.n_action_steps].transpose(0, 1))  # n x (B, A)
        return super().select_action(obs)


class OpenVLAWrapper(VLAModel):
    """OpenVLA: fused DINOv2 + SigLIP -> MLP projector -> Llama -> action tokens.

    Args:
        action_head: "tokens" (default: 256 bins per dimension through the LM's vocabulary), or any head
            name / module, e.g. ``DiffusionActionHead(action_dim=7)``.
        dinov2, siglip: local folders / cached hub ids of the two vision towers (None: small, from scratch).
        llm: a local Llama-family LM folder / cached hub id (None: a small Llama from scratch).
        **overrides: any ModelConfig field.
    """

    def __init__(self, action_head: nn.Module | str | None = None, *, dinov2: str | None = None,
                 siglip: str | None = None, llm: str | None = None, **overrides: Any):
        fields = dict(OPENVLA_DEFAULTS, vision=dict(OPENVLA_DEFAULTS["vision"]))
        if dinov2 is not None:
            fields["vision"]["pretrained"] = str(dinov2)
        if siglip is not None:
            fields["vision"]["siglip_pretrained"] = str(siglip)
        if llm is not None:
            resolved = resolve_vlm(str(llm))
            fields.update(llm=resolved.get("llm", "llama"), llm_pretrained=resolved.get("llm_pretrained", str(llm)))
        if action_head is None:
            action_head = fields.pop("action_head")
        else:
            fields.pop("action_head")
        fields.update(overrides)
        super().__init__(fields, action_head=action_head)

    @classmethod
    def from_openvla(cls, folder: str, unnorm_key: str | None = None,
                     map_location: str = "cpu") -> "OpenVLAWrapper":
        """A published OpenVLA checkpoint folder (``openvla/openvla-7b`` format) as this wrapper, acting like
        OpenVLA; ``unnorm_key`` names the dataset whose action statistics un-normalise the predictions (needed
        when ``norm_stats`` has several). Errors are one-line ``CheckpointError``s."""
        return CHECKPOINT_FORMATS.get("openvla").load(folder, unnorm_key=unnorm_key, cls=cls,
                                                      map_location=map_location)
