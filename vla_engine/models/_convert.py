"""Shared by the converters of published checkpoints (``convert_openvla.py``, ``convert_smolvla.py``): load
weights mapped by name into a freshly built model, strictly, with one-line errors."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..errors import CheckpointError


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
