"""Checkpoint folders of a VLA: write them, read them back (``VLAModel.save_pretrained`` / ``from_pretrained``).

A folder holds ``model.safetensors`` (every weight), ``config.json`` (the ``ModelConfig`` fields, and
``"adapters": {"type": "lora", ...}`` when the model has LoRA adapters), the tokenizer files, and the
backbones' transformers configs in ``llm/`` and ``vision/`` (so a model built from pretrained parts
rebuilds without them). Loading builds the model from the config, adds the recorded adapters (the same
peft structure, so the state-dict names match) and loads the weights strictly. Folders of other projects
(OpenVLA, LeRobot SmolVLA) are recognised by their ``config.json`` and loaded by their converters
(``models/formats.py``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config.base import ConfigError
from ..config.model_config import read_model_dict
from ..errors import CheckpointError
from ._util import _first_line, _import_transformers
from .formats import detect_format
from .language import build_byte_tokenizer
from .lora import apply_lora_spec

log = logging.getLogger(__name__)

__all__ = ["save_pretrained", "load_pretrained", "load_weights", "checkpoint_config"]


def checkpoint_config(model: nn.Module) -> dict[str, Any]:
    """What ``config.json`` holds for ``model``: its config's fields, and its adapters when it has any."""
    data = model.config.to_dict()
    spec = getattr(model, "lora_spec", None)
    if spec is not None:
        data["adapters"] = spec.to_dict()
    return data


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors``, ``config.json``, the tokenizer files and the backbones' HF configs (each
    file written under a temporary name and renamed into place)."""
    from safetensors.torch import save_model

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".model.safetensors.tmp-{os.getpid()}"
    save_model(model, str(tmp), metadata={"format": "pt", "producer": "vla_engine"})
    os.replace(tmp, d / "model.safetensors")
    tmp = d / f".config.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(checkpoint_config(model), indent=2) + "\n")
    os.replace(tmp, d / "config.json")
    model.tokenizer.save_pretrained(str(d))
    model.backbone.hf_config.save_pretrained(str(d / "llm"))
    vision_hf = getattr(model.vision_encoder, "hf_config", None)
    if vision_hf is not None:
        vision_hf.save_pretrained(str(d / "vision"))
    return d


def read_config_json(d: Path) -> tuple[Path, Any]:
    """``d/config.json`` and its parsed content, or a one-line CheckpointError."""
    if not d.is_dir():
        raise CheckpointError(f"checkpoint folder {d} does not exist; give a folder written by save_pretrained")
    cfg_file = d / "config.json"
    if not cfg_file.exists():
        raise CheckpointError(f"checkpoint {d} has no config.json; it was not written by VLAModel.save_pretrained")
    try:
        return cfg_file, json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {cfg_file} is unreadable or not valid JSON ({_first_line(e)})") from None


def load_pretrained(cls: type, directory: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    unnorm_key: str | None = None) -> nn.Module:
    """A ``cls`` (a VLAModel class) rebuilt from a checkpoint folder, in eval mode; see the module docstring."""
    d = Path(directory)
    cfg_file, data = read_config_json(d)
    fmt = detect_format(data)
    if unnorm_key is not None and (fmt is None or "unnorm_key" not in fmt.options):
        what = fmt.description if fmt is not None else "a vla_engine checkpoint"
        raise CheckpointError(f"unnorm_key applies to OpenVLA folders; {d} is {what}")
    if fmt is not None:
        options = {"unnorm_key": unnorm_key} if "unnorm_key" in fmt.options else {}
        return fmt.load(d, cls=cls, map_location=map_location, **options)
    return load_native(cls, d, cfg_file, data, map_location)


def load_native(cls: type, d: Path, cfg_file: Path, data: Any, map_location: str | torch.device = "cpu") -> nn.Module:
    """A ``cls`` rebuilt from a vla_engine checkpoint folder ``d`` whose ``config.json`` (``cfg_file``) holds
    ``data``: the model fields, the tokenizer files, the LM / vision configs and the weights; in eval mode."""
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {cfg_file} holds no mapping of model fields; it was not written by "
                              f"VLAModel.save_pretrained")
    try:
        cfg, adapters = read_model_dict(data, where=str(cfg_file))
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
    if adapters is not None:  # the same peft-wrapped parts, so the adapter weights load by name
        apply_lora_spec(model, adapters)
    load_weights(model, weights, map_location)
    return model.eval()  # like transformers: a loaded model is ready for inference


def load_weights(model: nn.Module, path: Path, map_location: str | torch.device = "cpu") -> None:
    """Load ``model.safetensors`` into ``model`` strictly (every weight, no extra one)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    try:
        load_model(model, str(path), strict=True, device=str(map_location))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {path} is corrupt or does not match the model "
                              f"({_first_line(e)}); re-save it or use another checkpoint") from None
