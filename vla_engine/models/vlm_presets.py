"""Named model defaults ("tiny", "smolvlm", ...) and how a ``vlm`` name becomes ModelConfig fields.

``resolve_vlm(name)`` takes a named default, a local language-model or VLM folder, a cached hub LM or a
well-known hub name (mapped to a small offline stand-in, with a warning) and returns ModelConfig fields.
Light to import (no torch): the UI lists the presets from here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..config.base import ConfigError
from ..registry import LANGUAGE_MODELS
from ._util import _first_line, cached_hub_config
from .formats import detect_format

log = logging.getLogger(__name__)

__all__ = ["VLM_PRESETS", "PRESET_DESCRIPTIONS", "WELL_KNOWN_VLMS", "list_vlm_presets", "resolve_vlm"]


# ------------------------------------------------------------------------------------------------
# Named defaults: every one trains on a CPU. The well-known hub names map to them offline.
# ------------------------------------------------------------------------------------------------
VLM_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vision_encoder="cnn", vision={"dim": 64, "pool": 6}, llm="qwen2", llm_hidden_size=128,
                 llm_num_layers=2, llm_num_heads=4, llm_intermediate_size=256),
    "small": dict(vision_encoder="cnn", vision={"dim": 128, "pool": 6}, llm="qwen2", llm_hidden_size=256,
                  llm_num_layers=4, llm_num_heads=4, llm_intermediate_size=512),
    "siglip-tiny": dict(vision_encoder="siglip", vision={"dim": 64, "num_layers": 2, "num_heads": 4, "patch_size": 16},
                        llm="llama", llm_hidden_size=128, llm_num_layers=2, llm_num_heads=4,
                        llm_intermediate_size=256),
    "qwen2-vl-tiny": dict(vision_encoder="siglip", vision={"dim": 64, "num_layers": 2, "num_heads": 4,
                                                           "patch_size": 16}, llm="qwen2", llm_hidden_size=128, llm_num_layers=2,
                          llm_num_heads=4, llm_intermediate_size=256),
    "resnet18": dict(vision_encoder="resnet18", llm="qwen2", llm_hidden_size=128, llm_num_layers=2,
                     llm_num_heads=4, llm_intermediate_size=256),
}
VLM_PRESETS["smolvlm"] = dict(VLM_PRESETS["siglip-tiny"])  # SmolVLM = SigLIP + a Llama-style SmolLM
# the real VLM classes (models/vlm.py) at small sizes; a VLM folder of that kind loads through them
VLM_PRESETS["smolvlm-native"] = dict(VLM_PRESETS["siglip-tiny"], vision_encoder="smolvlm", llm="smolvlm")
VLM_PRESETS["qwen2-vl-native"] = dict(VLM_PRESETS["siglip-tiny"], vision_encoder="qwen2-vl", llm="qwen2-vl")

# the two recipes of models/wrappers.py as named defaults (the model builder and the Training tab list them)
# (SmolVLA trains with its vision encoder frozen: a training setting, training.freeze_vision in its run preset)
VLM_PRESETS["smolvla-tiny"] = dict(VLM_PRESETS["smolvlm-native"], llm_num_layers=1, action_head="flow",
                                   chunk_size=8, n_action_steps=8, head={"hidden_dim": 128})
VLM_PRESETS["openvla-tiny"] = dict(VLM_PRESETS["siglip-tiny"], vision_encoder="dinosiglip", llm="llama",
                                   action_head="tokens", head={"bins": 256}, chunk_size=1, n_action_steps=1)

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
            preset = VLM_PRESETS[_NATIVE_VLMS[data["model_type"]]]
            return dict(preset, vision=dict(preset["vision"], pretrained=str(path)), llm_pretrained=str(path))
        fmt = detect_format(data)
        if fmt is not None:
            raise ConfigError(f"vlm {name!r} is {fmt.description}; load it with {fmt.how_to_load} "
                              f"or VLAModel.from_pretrained(folder)")
        if _is_vlm_config(data):
            raise ConfigError(
                f"vlm {name!r} is a full vision-language model (model_type {data.get('model_type')!r}); VLAModel "
                f"loads a language-model folder: set llm_pretrained to its LM and vision.pretrained to its vision tower")
        llm = data.get("model_type") if data.get("model_type") in LANGUAGE_MODELS else "qwen2"
        return dict(VLM_PRESETS["tiny"], llm=llm, llm_pretrained=str(path))
    key = name.lower()
    cached = cached_hub_config(name)
    if cached is not None and cached.get("model_type") in _NATIVE_VLMS:  # a cached SmolVLM / Qwen2-VL: load it
        preset = VLM_PRESETS[_NATIVE_VLMS[cached["model_type"]]]
        return dict(preset, vision=dict(preset["vision"], pretrained=name), llm_pretrained=name)
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
