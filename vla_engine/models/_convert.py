"""Shared by the converters of published checkpoints (``convert_openvla.py``, ``convert_smolvla.py``): load
weights mapped by name into a freshly built model, strictly, with one-line errors."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from ..config.model_config import ModelConfig
from ..errors import CheckpointError
from ._util import _first_line, _import_transformers


def read_json(f: Path) -> Any:
    """A JSON file of a downloaded checkpoint; a one-line error when it is unreadable."""
    try:
        return json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{f} is unreadable or not valid JSON ({_first_line(e)}); re-download it") from None


def read_folder_config(folder: str | Path, source: str, fix: str) -> tuple[Path, Any]:
    """``(config.json path, its content)`` of a checkpoint folder of kind ``source`` ("OpenVLA"); ``fix`` says
    what folder to give instead."""
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise CheckpointError(f"{source} folder {d} does not exist; {fix}")
    f = d / "config.json"
    if not f.exists():
        raise CheckpointError(f"{source} folder {d} has no config.json; {fix}")
    return f, read_json(f)


def load_mapped_strict(model: nn.Module, mapped: dict[str, torch.Tensor], *, source: str, describes: str,
                       own_prefixes: Iterable[str] = (), tied: Iterable[str] = ()) -> None:
    """Load ``mapped`` (model state-dict name -> tensor) into ``model``: every mapped tensor must have a place of
    the same shape, and every model weight must be filled, except vla_engine's own parts (``own_prefixes``) and
    weights tied to another (``tied``). ``source`` names the checkpoint kind ("OpenVLA"), ``describes`` the files
    whose sizes built the model ("config.json")."""
    own = model.state_dict()
    unknown = [k for k in mapped if k not in own]
    if unknown:
        raise CheckpointError(f"the {source} weights have {len(unknown)} tensors the model has no place for (e.g. "
                              f"{unknown[0]}); {describes} does not describe these weights")
    for k, v in mapped.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{source} weight for {k} has shape {tuple(v.shape)} but {describes} builds "
                                  f"{tuple(own[k].shape)}; {describes} does not describe these weights")
    prefixes, tied = tuple(own_prefixes), set(tied)
    lacking = [k for k in own if k not in mapped and not k.startswith(prefixes) and k not in tied]
    if lacking:
        raise CheckpointError(f"the {source} weights lack {len(lacking)} tensors the model needs (e.g. {lacking[0]}); "
                              f"the download is incomplete")
    model.load_state_dict({k: mapped.get(k, v) for k, v in own.items()}, strict=True)
    for name, p in model.named_parameters():  # the skipped initialisation must not leave garbage behind
        if not torch.isfinite(p).all():
            raise CheckpointError(f"weight {name} is not finite after loading; the checkpoint is corrupt")


def _no_init():
    """Skip random initialisation while building (every weight is overwritten from the checkpoint)."""
    try:
        from transformers.modeling_utils import no_init_weights
    except ImportError:  # pragma: no cover - older / newer transformers
        return contextlib.nullcontext()
    return no_init_weights()


def build_empty(fields: dict[str, Any], cls: type | None, default_cls: type, folder: Path, source: str,
                **build_kw: Any) -> nn.Module:
    """A ``default_cls`` (or ``cls``, a subclass) built from ModelConfig ``fields`` without random initialisation,
    for a converter to fill; ``build_kw`` go to ``VLAModel._build`` (tokenizer, HF configs)."""
    try:
        cfg = ModelConfig.from_dict(fields)
    except ValueError as e:
        raise CheckpointError(f"{folder}/config.json makes no valid model config ({e})") from None
    target = cls if isinstance(cls, type) and issubclass(cls, default_cls) else default_cls
    model = target.__new__(target)
    nn.Module.__init__(model)
    try:
        with _no_init():
            model._build(cfg, rebuild=True, **build_kw)
    except (ValueError, RuntimeError) as e:  # HeadError / ConfigError: sizes that do not fit together
        raise CheckpointError(f"the {source} folder {folder} builds no model ({_first_line(e)})") from None
    return model


def read_tokenizer(folder: Path, what: str, fix: str) -> Any:
    """The tokenizer saved in ``folder`` (no remote code); ``what`` names the folder ("OpenVLA folder"), ``fix``
    the remedy for a missing or broken one."""
    tf = _import_transformers()
    try:
        return tf.AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - missing / broken tokenizer files: one user message
        raise CheckpointError(f"{what} {folder} has no readable tokenizer ({_first_line(e)}); {fix}") from None
